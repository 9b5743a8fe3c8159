"""The environment every function gets, read once into a typed, frozen settings object (the
facerec package itself never reads the environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facerec.core.settings import (
    CROP_METHODS,
    DEFAULT_CROP_METHOD,
    DEFAULT_PRECISION,
    PRECISIONS,
)

MODELS_DIR = "/opt/facerec/models"  # where the image bakes in the converted networks

REQUIRED = (
    "INGEST_BUCKET",
    "FACES_BUCKET",
    "MODELS_BUCKET",
    "REPORTS_BUCKET",
    "QUARANTINE_BUCKET",
    "CATALOG_TABLE",
    "FACE_INDEX_TABLE",
    "COLLECTION_ID",
    "VECTOR_BUCKET",
    "FACE_VECTOR_INDEX",
    "CENTROID_VECTOR_INDEX",
)


class SettingsError(RuntimeError):
    """The function's environment is incomplete or wrong (a deployment error, not input)."""


@dataclass(frozen=True)
class Settings:
    ingest_bucket: str
    faces_bucket: str
    models_bucket: str
    reports_bucket: str
    quarantine_bucket: str
    catalog_table: str
    face_index_table: str
    collection_id: str
    vector_bucket: str
    face_vector_index: str
    centroid_vector_index: str
    models_dir: Path = Path(MODELS_DIR)
    crop_method: str = DEFAULT_CROP_METHOD
    precision: str = DEFAULT_PRECISION
    rekognition_min_similarity: float = 90.0
    facenet_min_probability: float = 0.0
    # The training workflow: Rekognition searched for at most this many held-out faces (a
    # seeded sample), FaceNet's identify path timed on at most this many held-out photos.
    rekognition_evaluation_faces: int = 1000
    report_timed_photos: int = 200
    log_level: str = "INFO"
    # Lambda sets AWS_LAMBDA_FUNCTION_MEMORY_SIZE in every function; None outside Lambda.
    function_memory_mb: int | None = None
    # Only the forget workflow's Retrain step gets it: it restarts training without a person.
    training_state_machine_arn: str = ""
    # Only the forget API function gets it: DELETE /people/{name} starts the forget workflow.
    forget_state_machine_arn: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        missing = [name for name in REQUIRED if not environ.get(name)]
        if missing:
            raise SettingsError(f"missing environment variables: {', '.join(missing)}")
        try:
            similarity = float(environ.get("REKOGNITION_MIN_SIMILARITY", "90"))
            probability = float(environ.get("FACENET_MIN_PROBABILITY", "0"))
        except ValueError as error:
            raise SettingsError(f"a threshold is not a number: {error}") from None
        if not 0 <= similarity <= 100:
            raise SettingsError(f"REKOGNITION_MIN_SIMILARITY is 0-100; got {similarity}")
        if not 0 <= probability <= 1:
            raise SettingsError(f"FACENET_MIN_PROBABILITY is 0-1; got {probability}")
        crop_method = environ.get("CROP_METHOD", DEFAULT_CROP_METHOD)
        if crop_method not in CROP_METHODS:
            raise SettingsError(f"CROP_METHOD is one of {CROP_METHODS}; got {crop_method!r}")
        limits = {
            name: environ.get(name, str(getattr(cls, name.lower())))
            for name in ("REKOGNITION_EVALUATION_FACES", "REPORT_TIMED_PHOTOS")
        }
        if not all(value.isdigit() and int(value) > 0 for value in limits.values()):
            raise SettingsError(f"the training limits are positive whole numbers; got {limits}")
        precision = environ.get("EMBEDDING_PRECISION", DEFAULT_PRECISION)
        if precision not in PRECISIONS:
            raise SettingsError(f"EMBEDDING_PRECISION is one of {PRECISIONS}; got {precision!r}")
        return cls(
            *(environ[name] for name in REQUIRED),
            models_dir=Path(environ.get("MODELS_DIR", MODELS_DIR)),
            crop_method=crop_method,
            precision=precision,
            rekognition_min_similarity=similarity,
            facenet_min_probability=probability,
            rekognition_evaluation_faces=int(limits["REKOGNITION_EVALUATION_FACES"]),
            report_timed_photos=int(limits["REPORT_TIMED_PHOTOS"]),
            log_level=environ.get("LOG_LEVEL", "INFO").upper(),
            function_memory_mb=int(environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
            if environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            else None,
            training_state_machine_arn=environ.get("TRAINING_STATE_MACHINE_ARN", ""),
            forget_state_machine_arn=environ.get("FORGET_STATE_MACHINE_ARN", ""),
        )
