"""The /identify contract (docs/openapi.yaml), shared by the Lambda handler behind API Gateway
and the local server: parse and validate the request, run the engines, shape the answer.

Bad input never gets a 5xx: 400 with a specific ``code`` and ``message`` for a bad request or
photo, 404 for an ``s3_key`` that does not exist, 413 for a photo that is too large.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

import numpy as np

from facerec.errors import (
    FaceRecError,
    ImageError,
    ImageTooLarge,
    InvalidLabel,
    ModelNotFound,
)
from facerec.images import encode_png
from facerec.rekognition import UNKNOWN, EngineUnavailable

ENGINE_CHOICES = {
    "facenet": ("facenet",),
    "rekognition": ("rekognition",),
    "both": ("facenet", "rekognition"),
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
    """One of "facenet", "rekognition", "both", or a list of engine names -> engine names."""
    if isinstance(value, str) and value in ENGINE_CHOICES:
        return ENGINE_CHOICES[value]
    names = ENGINE_CHOICES["both"]
    if isinstance(value, list) and value and all(name in names for name in value):
        return tuple(name for name in names if name in value)
    raise ApiError(
        400,
        "invalid_engines",
        f"engines must be one of {', '.join(ENGINE_CHOICES)} (or a list of "
        f"{' and '.join(names)}); got {value!r}",
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


@dataclass
class IdentifyServices:
    """What /identify runs on: the pipeline (its analyser, model and ingest store) and the
    Rekognition engine (a RekognitionEngine, or an UnavailableEngine that says why not).
    ``facenet_min_probability``: FaceNet answers under it are "unknown" (0 = never)."""

    pipeline: object
    rekognition: object
    facenet_min_probability: float = 0.0


def handle_identify(request: dict, services: IdentifyServices) -> tuple[int, dict]:
    """A parsed request body -> (HTTP status, JSON body)."""
    try:
        parsed = IdentifyRequest.from_dict(request)
        data = parsed.image if parsed.image is not None else _read_key(services, parsed.s3_key)
        return 200, identify(services, data, parsed.engines)
    except ApiError as error:
        return error.status, error.body()
    except ImageTooLarge as error:
        return 413, {"code": error.code, "message": str(error)}
    except (ImageError, InvalidLabel) as error:
        return 400, {"code": error.code, "message": str(error)}
    except ModelNotFound as error:
        return 503, {"code": error.code, "message": str(error)}
    except EngineUnavailable as error:
        return 501, {"code": error.code, "message": str(error)}


def _read_key(services: IdentifyServices, key: str) -> bytes:
    try:
        return services.pipeline.ingest.get(key)
    except FileNotFoundError:
        raise ApiError(
            404, "photo_not_found", "no photo with that s3_key in the ingest bucket"
        ) from None
    except FaceRecError as error:
        raise ApiError(400, "invalid_s3_key", str(error)) from None


def identify(services: IdentifyServices, data: bytes, engines: tuple[str, ...]) -> dict:
    """Photo bytes -> every face with its box and, per engine, the person (or "unknown") and
    its score: ``probability`` (FaceNet, 0-1) or ``similarity`` (Rekognition, 0-100).
    Rekognition searches the largest face of an image only, so each face crop is sent alone."""
    pipeline = services.pipeline
    if engines == ("rekognition",) and not services.rekognition.available:
        services.rekognition.identify([])  # raises EngineUnavailable, before any work
    image, analysed = pipeline.analyse_photo(data)
    faces = [item.face.to_dict() for item in analysed]
    result = {"width": image.shape[1], "height": image.shape[0], "engines": {}, "faces": faces}
    if "facenet" in engines:
        model = pipeline.current_model()
        labels, scores = model.classifier.predict_with_probability(
            np.stack([item.embedding for item in analysed])
        )
        threshold = services.facenet_min_probability
        result["model_id"] = model.model_id
        result["engines"]["facenet"] = {"model_id": model.model_id, "min_probability": threshold}
        for face, label, probability in zip(faces, labels, scores, strict=True):
            face["facenet"] = {
                "person": str(label) if probability >= threshold else UNKNOWN,
                "probability": round(float(probability), 4),
            }
    if "rekognition" in engines:
        engine = services.rekognition
        if not engine.available:
            result["engines"]["rekognition"] = {"available": False, "reason": engine.reason}
        else:
            answers = engine.identify([encode_png(item.crop) for item in analysed])
            result["engines"]["rekognition"] = {
                "available": True,
                "collection_id": engine.collection.collection_id,
                "min_similarity": engine.min_similarity,
            }
            for face, answer in zip(faces, answers, strict=True):
                face["rekognition"] = {
                    key: answer[key] for key in ("person", "similarity", "reason") if key in answer
                }
    return result
