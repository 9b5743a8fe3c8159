"""API Gateway (REST, proxy): ``DELETE /people/{name}`` starts the forget workflow and answers
202 with the forget's id and where to follow it; ``GET /forgets/{forget_id}`` answers its
status (RUNNING, SUCCEEDED with the counts per store, or FAILED). The work itself runs in Step
Functions (functions/forget/group_faces, person, retrain), never behind API Gateway's 29 s.
Logs carry a hash of the name, never the name."""

from __future__ import annotations

from facerec.interfaces.http import (
    ApiError,
    forget_accepted,
    forget_request,
    valid_forget_id,
)
from functions.events import api_gateway, http_response
from functions.logs import get_logger, key_ref, log
from functions.services import services

logger = get_logger(__name__)


def handler(event: dict, context=None) -> dict:
    request = api_gateway(event)
    try:
        if request.method == "DELETE":
            person = forget_request(request.path_parameters.get("name", ""))
            status, answer = forget_accepted(services().start_forget(person), person)
            log(logger, "forget started", request_id=request.request_id, person_ref=key_ref(person))
        else:
            status, answer = 200, _status(request.path_parameters.get("forget_id", ""))
    except ApiError as error:
        status, answer = error.status, error.body()
    headers = {"Location": answer["status_url"]} if status == 202 else {}
    return http_response(status, answer, request.request_id, headers)


def _status(forget_id: str) -> dict:
    answer = services().forget_status(forget_id) if valid_forget_id(forget_id) else None
    if answer is None:
        raise ApiError(404, "not_found", "no forget with that id")
    return answer
