"""API Gateway (REST, proxy) DELETE /people/{name} -> the person removed from every store
(facerec.forget): photos, crops, quarantined photos, catalog records, FaceIds in the
collection and their rows, vectors and centroid, and every model that knew them. When the
current model was one of those, the training workflow is started on the people who remain
(``retraining``: its execution ARN); until it finishes, identify answers 503 for FaceNet.
Logs carry a hash of the name, never the name."""

from __future__ import annotations

import json
from dataclasses import asdict

from facerec.api import handle_forget
from facerec.forget import forget_person
from facerec.workflow import TrainOptions
from functions.events import api_gateway, http_response
from functions.services import get_logger, key_ref, log, services

logger = get_logger(__name__)


def forget(name: str) -> dict:
    """Delete ``name`` everywhere; start retraining when the current model knew them."""
    app = services()
    current = app.catalog.current_model()
    deleted = forget_person(
        name,
        app.catalog,
        app.ingest,
        app.faces,
        app.quarantine,
        app.models,
        app.reports,
        face_index=app.face_index,
        collection_client=app.rekognition,
        vectors=app.vector_gallery,
    )
    if deleted["current_model"]:
        execution = app.stepfunctions.start_execution(
            stateMachineArn=app.settings.training_state_machine_arn,
            input=json.dumps(asdict(TrainOptions.of(current.metadata))),
        )
        deleted["retraining"] = execution["executionArn"]
    return deleted


def handler(event: dict, context=None) -> dict:
    request = api_gateway(event)
    name = request.path_parameters.get("name", "")
    try:
        status, answer = handle_forget(name, forget)
    except Exception:  # a fault of ours or of a service, never of the input
        logger.exception("forget failed", extra={"fields": {"id": request.request_id}})
        status, answer = 500, {"code": "internal_error", "message": "internal error"}
    counts = {key: value for key, value in answer.items() if isinstance(value, int)}
    log(logger, "forget", request_id=request.request_id, person_ref=key_ref(name), **counts)
    return http_response(status, answer, request.request_id)
