"""API Gateway (REST, proxy) POST /identify -> every face with its box and, per engine, the
person (or "unknown") and its score. The contract is docs/openapi.yaml; facerec.interfaces.http
shapes it for this handler and the local server alike. Bad input gets 4xx, never 500.

An environment that Lambda initialises ahead of requests (provisioned concurrency on the
``live`` alias) loads MTCNN, FaceNet and the current model at import (``Services.warm``), so
no request pays for them. An on-demand environment is initialised when a request arrives and
may spend only 10 s on it (a longer init is run again inside the request): it loads the
networks at import (``load_at_init``) and the current model in its first request.
"""

from __future__ import annotations

import os

from facerec.interfaces.http import ApiError, handle_identify, parse_body
from functions.events import api_gateway, http_response
from functions.logs import get_logger, log
from functions.services import load_at_init, services

logger = get_logger(__name__)

# AWS_LAMBDA_INITIALIZATION_TYPE of an environment initialised for provisioned concurrency.
PROVISIONED = "provisioned-concurrency"


def handler(event: dict, context=None) -> dict:
    request = api_gateway(event)
    try:
        body = parse_body(request.body, request.is_base64)
    except ApiError as error:
        status, answer = error.status, error.body()
    else:
        try:
            status, answer = handle_identify(body, services().identify_service)
        except Exception:  # a fault of ours or of a service, never of the input
            logger.exception("identify failed", extra={"fields": {"id": request.request_id}})
            status, answer = 500, {"code": "internal_error", "message": "internal error"}
    fields = {"request_id": request.request_id, "status": status, "code": answer.get("code")}
    log(logger, "identify", **fields, faces=len(answer.get("faces", [])))
    return http_response(status, answer, request.request_id)


if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == PROVISIONED:
    log(logger, "warm", model_id=services().warm())
else:
    load_at_init()
