"""The /identify contract (docs/openapi.yaml), shared by the Lambda handler behind API Gateway
and the local server: parse and validate the request, run the engines, shape the answer.

Bad input never gets a 5xx: 400 with a specific ``code`` and ``message`` for a bad request or
photo, 404 for an ``s3_key`` that does not exist, 413 for a photo that is too large.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import numpy as np

from facerec.errors import (
    FaceRecError,
    ImageError,
    ImageTooLarge,
    InvalidLabel,
    ModelNotFound,
    NotEnoughData,
)
from facerec.images import encode_png
from facerec.rekognition import UNKNOWN, EngineUnavailable
from facerec.routing import encode_threshold, route

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
    """A name of ENGINE_CHOICES, or a list of engine names -> engine names (ENGINES order)."""
    if isinstance(value, str) and value in ENGINE_CHOICES:
        return ENGINE_CHOICES[value]
    if isinstance(value, list) and value and all(name in ENGINES for name in value):
        return tuple(name for name in ENGINES if name in value)
    raise ApiError(
        400,
        "invalid_engines",
        f"engines must be one of {', '.join(ENGINE_CHOICES)} (or a list of "
        f"{', '.join(ENGINES)}); got {value!r}",
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
    """What /identify runs on: the pipeline (its analyser, model and ingest store), the
    nearest-neighbour engine (facerec.nearest), and the Rekognition engine (a
    RekognitionEngine, or an UnavailableEngine that says why not).
    ``facenet_min_probability``: FaceNet answers under it are "unknown" (0 = never);
    ``routing_threshold``: the hybrid engine's, overriding the model's (None = the model's)."""

    pipeline: object
    nearest: object
    rekognition: object
    facenet_min_probability: float = 0.0
    routing_threshold: float | None = None


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
    except (ModelNotFound, NotEnoughData) as error:
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
    its scores: FaceNet ``probability`` (0-1) and open-set ``score``, nearest ``score``,
    Rekognition ``similarity`` (0-100); hybrid says which engine answered. Rekognition
    searches the largest face of an image only, so each face crop is sent alone."""
    pipeline, rekognition = services.pipeline, services.rekognition
    if engines == ("rekognition",) and not rekognition.available:
        rekognition.identify([])  # raises EngineUnavailable, before any work
    image, analysed = pipeline.analyse_photo(data)
    embeddings = np.stack([item.embedding for item in analysed])
    faces = [item.face.to_dict() for item in analysed]
    result = {"width": image.shape[1], "height": image.shape[0], "engines": {}, "faces": faces}
    if "facenet" in engines or "hybrid" in engines:
        model = pipeline.current_model()
        facenet = model.identify(embeddings)
        floor = services.facenet_min_probability
        facenet_labels = np.where(facenet.probabilities >= floor, facenet.labels, UNKNOWN)
        result["model_id"] = model.model_id
    if "facenet" in engines:
        result["engines"]["facenet"] = {
            "model_id": model.model_id,
            "min_probability": floor,
            "unknown_threshold": _number(facenet.threshold, 6),
        }
        for n, face in enumerate(faces):
            face["facenet"] = {
                "person": str(facenet_labels[n]),
                "probability": round(float(facenet.probabilities[n]), 4),
                "score": _number(facenet.scores[n]),
            }
    if "nearest" in engines:
        nearest = services.nearest.identify(embeddings)
        result["engines"]["nearest"] = {
            **services.nearest.describe(),
            "unknown_threshold": _number(nearest.threshold, 6),
        }
        for n, face in enumerate(faces):
            face["nearest"] = {
                "person": str(nearest.labels[n]),
                "score": _number(nearest.scores[n]),
            }
    asked = {}  # face index -> Rekognition's answer
    if "rekognition" in engines:
        asked = _ask_rekognition(rekognition, analysed, range(len(analysed)))
        result["engines"]["rekognition"] = _rekognition_summary(rekognition)
        for n, face in enumerate(faces):
            if n in asked:
                face["rekognition"] = asked[n]
    if "hybrid" in engines:
        threshold = routing_threshold(model, services.routing_threshold)
        routed = route(facenet_labels, facenet.scores, threshold)
        missing = [n for n in np.flatnonzero(routed) if n not in asked]
        asked.update(_ask_rekognition(rekognition, analysed, missing))
        result["engines"]["hybrid"] = {
            "routing_threshold": encode_threshold(round(threshold, 6)),
            "routed": int(routed.sum()),
            "rekognition": _rekognition_summary(rekognition),
        }
        for n, face in enumerate(faces):
            face["hybrid"] = _hybrid_answer(
                str(facenet_labels[n]), float(facenet.scores[n]), asked.get(n), bool(routed[n])
            )
    return result


def _number(value: float, digits: int = 4) -> float | None:
    """A score for JSON: rounded, or None when it is not finite (-inf: nobody to compare
    with), which JSON cannot carry."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def routing_threshold(model, override: float | None) -> float:
    """The hybrid engine's threshold: ``override``, else the one the training workflow chose
    from both engines' held-out answers, else the model's "unknown" threshold (only unknown
    faces are routed)."""
    if override is not None:
        return float(override)
    chosen = (model.metadata.get("routing") or {}).get("threshold")
    if chosen is not None:
        return float(chosen)
    return float((model.metadata.get("open_set") or {}).get("threshold", 0.0))


def _ask_rekognition(engine, analysed, indices) -> dict[int, dict]:
    """face index -> Rekognition's answer for each of ``indices`` (none when unavailable)."""
    indices = [int(n) for n in indices]
    if not engine.available or not indices:
        return {}
    answers = engine.identify([encode_png(analysed[n].crop) for n in indices])
    return {
        n: {key: answer[key] for key in ("person", "similarity", "reason") if key in answer}
        for n, answer in zip(indices, answers, strict=True)
    }


def _rekognition_summary(engine) -> dict:
    if not engine.available:
        return {"available": False, "reason": engine.reason}
    return {
        "available": True,
        "collection_id": engine.collection.collection_id,
        "min_similarity": engine.min_similarity,
    }


def _hybrid_answer(label: str, score: float, asked: dict | None, routed: bool) -> dict:
    """FaceNet's answer unless the face was routed and Rekognition answered it."""
    answer = {"person": label, "engine": "facenet", "routed": routed, "score": _number(score)}
    if routed and asked is not None:
        answer.update(person=asked["person"], engine="rekognition")
        answer.update({key: asked[key] for key in ("similarity", "reason") if key in asked})
    elif routed:
        answer["reason"] = "Rekognition is not available here; FaceNet's answer is kept"
    return answer
