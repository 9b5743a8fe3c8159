"""The /identify contract (docs/openapi.yaml), shared by the Lambda handler behind API Gateway
and the local server: parse and validate the request, run the engines, shape the answer.

Bad input never gets a 5xx: 400 with a specific ``code`` and ``message`` for a bad request or
photo, 404 for an ``s3_key`` that does not exist, 413 for a photo that is too large.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
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
REQUEST_FIELDS = ("image", "s3_key", "engines")


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
    """The HTTP body -> a JSON object, or ApiError (400 not JSON, 413 too large)."""
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
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, "invalid_json", f"the body is not JSON ({error})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return body


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
        return 200, identify_photo(service.analyser, service.engines, parsed.engines, data)
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


def handle_forget(raw_name: str, forget: Callable[[str], dict]) -> tuple[int, dict]:
    """``DELETE /people/{name}``: the name as it came in the path (percent-encoding is
    undone) -> (200, what ``forget(name)`` deleted) or (400, why the name is not valid).
    Idempotent: forgetting someone already forgotten deletes nothing and still answers 200."""
    try:
        return 200, forget(unquote(raw_name))
    except InvalidLabel as error:
        return 400, {"code": error.code, "message": str(error)}


def _read_key(ingest: BlobStore, key: str) -> bytes:
    try:
        return ingest.get(key)
    except FileNotFoundError:
        raise ApiError(
            404, "photo_not_found", "no photo with that s3_key in the ingest bucket"
        ) from None
    except FaceRecError as error:
        raise ApiError(400, "invalid_s3_key", str(error)) from None
