"""The /identify contract (docs/openapi.yaml), shared by the Lambda handler behind API Gateway
and the local server: parse and validate the request, run the engines, shape the answer.

Bad input never gets a 5xx: 400 with a specific ``code`` and ``message`` for a bad request or
photo, 404 for an ``s3_key`` that does not exist, 413 for a photo that is too large; 503 when
the current model is missing or damaged.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from facerec.core.errors import (
    EngineUnavailable,
    FaceRecError,
    ImageError,
    ImageTooLarge,
    InvalidLabel,
    ModelIntegrityError,
    ModelNotFound,
    NotEnoughData,
)
from facerec.core.naming import validate_person_name
from facerec.engines.base import Engine
from facerec.flows.identify import identify_photo
from facerec.storage.ports import BlobStore
from facerec.vision.analyser import FaceAnalyser

ENGINES = ("facenet", "nearest", "rekognition", "hybrid")
ENGINE_CHOICES = {
    **{name: (name,) for name in ENGINES},
    "both": ("facenet", "rekognition"),
    "all": ENGINES,
}
DEFAULT_ENGINES = "facenet"
# API Gateway hands Lambda at most 6 MB; base64 makes bytes 4/3 larger.
MAX_IMAGE_BASE64 = 5 * 1024 * 1024
MAX_BODY_BYTES = MAX_IMAGE_BASE64 + 64 * 1024
# A request is an object of strings and one list: anything nested deeper is refused before
# it can exhaust the parser's stack.
MAX_JSON_DEPTH = 32
REQUEST_FIELDS = ("image", "s3_key", "engines")
FORGETS_PATH = "/forgets/{forget_id}"
FORGET_ID = re.compile(r"[0-9a-f]{32}")
FORGET_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED")


class ApiError(Exception):
    """A request the API refuses, with its HTTP status, ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class IdentifyRequest:
    """Exactly one of ``image`` (photo bytes) and ``s3_key`` (an ingest-bucket key)."""

    image: bytes | None = field(default=None, repr=False)
    s3_key: str | None = None
    engines: tuple[str, ...] = ENGINE_CHOICES[DEFAULT_ENGINES]

    @classmethod
    def from_dict(cls, body) -> IdentifyRequest:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        unknown = sorted(set(body) - set(REQUEST_FIELDS))
        if unknown:
            raise ApiError(
                400,
                "invalid_request",
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(REQUEST_FIELDS)}",
            )
        engines = _engines(body.get("engines", DEFAULT_ENGINES))
        if "image" in body and body["image"] is None:
            raise ApiError(400, "invalid_image", "image must be a base64 string, not null")
        if "s3_key" in body and body["s3_key"] is None:
            raise ApiError(400, "invalid_s3_key", "s3_key must be a key string, not null")
        image, s3_key = body.get("image"), body.get("s3_key")
        if (image is None) == (s3_key is None):
            raise ApiError(
                400, "invalid_request", "give exactly one of 'image' (base64) and 's3_key'"
            )
        if s3_key is not None:
            if not isinstance(s3_key, str) or not s3_key or len(s3_key) > 1024:
                raise ApiError(400, "invalid_s3_key", "s3_key must be a non-empty key string")
            if any(char < " " or char == "\x7f" for char in s3_key):
                raise ApiError(400, "invalid_s3_key", "s3_key holds control characters")
            return cls(None, s3_key, engines)
        if not isinstance(image, str):
            raise ApiError(400, "invalid_image", "image must be a base64 string")
        if len(image) > MAX_IMAGE_BASE64:
            raise ApiError(
                413,
                ImageTooLarge.code,
                f"the base64 image is {len(image) / 2**20:.1f} MB; the limit is "
                f"{MAX_IMAGE_BASE64 / 2**20:.0f} MB (about 3.7 MB of photo); "
                "upload larger photos to the ingest bucket and pass s3_key",
            )
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_base64", "image is not valid base64") from None
        return cls(data, None, engines)


def _engines(value) -> tuple[str, ...]:
    """A name of ENGINE_CHOICES, or a list of distinct engine names -> engine names (ENGINES
    order)."""
    if isinstance(value, str) and value in ENGINE_CHOICES:
        return ENGINE_CHOICES[value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(name, str) and name in ENGINES for name in value)
        and len(set(value)) == len(value)
    ):
        return tuple(name for name in ENGINES if name in value)
    raise ApiError(
        400,
        "invalid_engines",
        f"engines must be one of {', '.join(ENGINE_CHOICES)} (or a list of distinct "
        f"{', '.join(ENGINES)}); got {str(value)[:200]!r}",
    )


def parse_body(raw: str | bytes | None, is_base64: bool = False) -> dict:
    """The HTTP body -> a JSON object, or ApiError (400 not JSON or nested deeper than
    MAX_JSON_DEPTH, 413 too large)."""
    if raw is None or raw in ("", b""):
        raise ApiError(400, "invalid_request", "the body is empty; send a JSON object")
    if isinstance(raw, str):
        raw = raw.encode()
    if is_base64:
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_request", "the body is not valid base64") from None
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, ImageTooLarge.code, f"the body is over {MAX_BODY_BYTES / 2**20:.1f} MB")
    try:
        body = json.loads(raw)
        too_deep = _nesting(body) > MAX_JSON_DEPTH
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, "invalid_json", f"the body is not JSON ({error})") from None
    except RecursionError:  # far deeper than the limit
        too_deep = True
    if too_deep:
        raise ApiError(
            400,
            "invalid_json",
            f"the body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep",
        )
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return body


def _nesting(value) -> int:
    """How many levels of arrays and objects ``value`` holds (a scalar: 0), counted without
    recursion and only up to one level past MAX_JSON_DEPTH."""
    deepest, pending = 0, [(value, 1)]
    while pending and deepest <= MAX_JSON_DEPTH:
        item, level = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in item)
    return deepest


@dataclass(frozen=True)
class IdentifyService:
    """What /identify runs on: the face analyser, the engines by name (``ENGINES``; one may
    be an UnavailableEngine that says why) and the ingest store for ``s3_key``."""

    analyser: FaceAnalyser
    engines: Mapping[str, Engine]
    ingest: BlobStore


def handle_identify(request: dict, service: IdentifyService) -> tuple[int, dict]:
    """A parsed request body -> (HTTP status, JSON body)."""
    try:
        parsed = IdentifyRequest.from_dict(request)
        data = (
            parsed.image if parsed.image is not None else _read_key(service.ingest, parsed.s3_key)
        )
        try:
            answer = identify_photo(service.analyser, service.engines, parsed.engines, data)
        except OSError as error:  # past _read_key, the only files read are the model's
            raise ModelIntegrityError(
                f"the current model cannot be read from the models store "
                f"({error.strerror or error}); restore it or retrain (`facerec train`)"
            ) from error
        return 200, answer
    except ApiError as error:
        return error.status, error.body()
    except ImageTooLarge as error:
        return 413, {"code": error.code, "message": str(error)}
    except (ImageError, InvalidLabel) as error:
        return 400, {"code": error.code, "message": str(error)}
    except (ModelNotFound, ModelIntegrityError, NotEnoughData) as error:
        return 503, {"code": error.code, "message": str(error)}
    except EngineUnavailable as error:
        return 501, {"code": error.code, "message": str(error)}


def forget_request(raw_name: str) -> str:
    """``DELETE /people/{name}``: the name as it came in the path (percent-encoding undone)
    -> the person to forget, or ApiError 400 ``invalid_label`` for a name no photo could
    carry. The forget itself runs off the request path (``forget_accepted``)."""
    try:
        return validate_person_name(unquote(raw_name))
    except InvalidLabel as error:
        raise ApiError(400, error.code, str(error)) from None


def new_forget_id() -> str:
    """A forget's id: 32 hex digits (the workflow execution's name in the cloud)."""
    return uuid.uuid4().hex


def valid_forget_id(value: str) -> bool:
    return bool(FORGET_ID.fullmatch(value))


def forget_accepted(forget_id: str, person: str) -> tuple[int, dict]:
    """The 202 answer to ``DELETE /people/{name}``: where to follow the forget."""
    return 202, {
        "forget_id": forget_id,
        "person": person,
        "status": "RUNNING",
        "status_url": FORGETS_PATH.format(forget_id=forget_id),
    }


def forget_status(
    forget_id: str,
    person: str,
    status: str,
    deleted: dict | None = None,
    error: dict | None = None,
) -> dict:
    """``GET /forgets/{forget_id}``: ``status`` RUNNING, SUCCEEDED (with what was ``deleted``,
    counts per store) or FAILED (with the ``error``'s code and message)."""
    if status not in FORGET_STATUSES:
        raise ValueError(f"a forget's status is one of {FORGET_STATUSES}; got {status!r}")
    body = {"forget_id": forget_id, "person": person, "status": status}
    if status == "SUCCEEDED":
        body["deleted"] = deleted or {}
    if status == "FAILED":
        body["error"] = error or {"code": "forget_failed", "message": "the forget failed"}
    return body


def _read_key(ingest: BlobStore, key: str) -> bytes:
    try:
        return ingest.get(key)
    except IsADirectoryError:
        raise ApiError(400, "invalid_s3_key", "s3_key names a folder, not a photo") from None
    except (FileNotFoundError, NotADirectoryError):
        raise ApiError(
            404, "photo_not_found", "no photo with that s3_key in the ingest bucket"
        ) from None
    except OSError as error:
        if error.errno != errno.ENAMETOOLONG:
            raise
        raise ApiError(
            400, "invalid_s3_key", "s3_key is longer than this store's file names allow"
        ) from None
    except FaceRecError as error:
        raise ApiError(400, "invalid_s3_key", str(error)) from None
