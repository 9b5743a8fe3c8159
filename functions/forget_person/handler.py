"""API Gateway (REST, proxy) DELETE /people/{name} -> the person removed from every store
(flows.forget): photos, crops, quarantined photos, catalog records, FaceIds and their rows,
vectors and centroid, and every model that knew them. When the current model was one of
those, the training workflow is started on the people who remain (``retraining``: its
execution ARN); until it finishes, identify answers 503 for FaceNet. Logs carry a hash of the
name, never the name."""

from __future__ import annotations

from facerec.flows.forget import forget
from facerec.interfaces.http import handle_forget
from functions.events import api_gateway, http_response
from functions.logs import get_logger, key_ref, log
from functions.services import services

logger = get_logger(__name__)


def handler(event: dict, context=None) -> dict:
    request = api_gateway(event)
    name = request.path_parameters.get("name", "")

    def forget_everywhere(person: str) -> dict:
        app = services()
        return forget(app.stores, person, app.start_training)

    try:
        status, answer = handle_forget(name, forget_everywhere)
    except Exception:  # a fault of ours or of a service, never of the input
        logger.exception("forget failed", extra={"fields": {"id": request.request_id}})
        status, answer = 500, {"code": "internal_error", "message": "internal error"}
    counts = {key: value for key, value in answer.items() if isinstance(value, int)}
    log(logger, "forget", request_id=request.request_id, person_ref=key_ref(name), **counts)
    return http_response(status, answer, request.request_id)
