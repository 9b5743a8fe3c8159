"""What the handlers work with, built once per container and lazily: AWS clients, the storage
adapters, the face collection and (only when a handler needs it) the models.

Logs are JSON lines carrying object keys only as hashes (``key_ref``): keys hold person names,
which are personal data, and neither names nor image bytes are ever logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import cached_property

import boto3
from botocore.config import Config

from functions.settings import Settings

RETRIES = Config(retries={"max_attempts": 8, "mode": "adaptive"})  # backs off on throttling


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``.
    Exceptions are logged by type only (their messages may name people)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info and record.exc_info[0] is not None:
            payload["error_type"] = record.exc_info[0].__name__
        return json.dumps(payload, default=str)


def get_logger(name: str, level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger


def log(logger: logging.Logger, message: str, **fields) -> None:
    logger.info(message, extra={"fields": fields})


def key_ref(key: str) -> str:
    """A stable, non-reversible reference to an object key for logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Services:
    """The container's adapters, each built on first use. ``analyser`` may be passed in
    (tests share one); otherwise MTCNN and FaceNet load from ``settings.weights_path`` the
    first time a handler needs them."""

    def __init__(self, settings: Settings, session=None, analyser=None):
        self.settings = settings
        self.session = session or boto3.session.Session()
        if analyser is not None:
            self.__dict__["analyser"] = analyser

    @cached_property
    def s3(self):
        return self.session.client("s3", config=RETRIES)

    @cached_property
    def dynamodb(self):
        return self.session.resource("dynamodb", config=RETRIES)

    @cached_property
    def rekognition(self):
        return self.session.client("rekognition", config=RETRIES)

    @cached_property
    def s3vectors(self):
        return self.session.client("s3vectors", config=RETRIES)

    @cached_property
    def stepfunctions(self):
        return self.session.client("stepfunctions", config=RETRIES)

    def _bucket(self, name: str):
        from facerec.storage.aws import S3BlobStore

        return S3BlobStore(self.s3, name)

    @cached_property
    def ingest(self):
        return self._bucket(self.settings.ingest_bucket)

    @cached_property
    def faces(self):
        return self._bucket(self.settings.faces_bucket)

    @cached_property
    def models(self):
        return self._bucket(self.settings.models_bucket)

    @cached_property
    def reports(self):
        return self._bucket(self.settings.reports_bucket)

    @cached_property
    def quarantine(self):
        return self._bucket(self.settings.quarantine_bucket)

    @cached_property
    def weights_sha256(self) -> str:
        if "analyser" in self.__dict__:
            return self.analyser.embedder.weights_sha256
        from facerec.assets import verify_weights

        return verify_weights(self.settings.weights_path)

    @cached_property
    def embedding_model(self) -> str:
        """Which weights made an embedding: stamped on every face the catalog writes."""
        from facerec.embedding import MODEL_ID

        return f"{MODEL_ID}@{self.weights_sha256[:12]}"

    @cached_property
    def catalog(self):
        from facerec.storage.aws import DynamoCatalog

        return DynamoCatalog(self.dynamodb, self.settings.catalog_table, self.embedding_model)

    @cached_property
    def pipeline_settings(self):
        from facerec.pipeline import PipelineSettings

        return PipelineSettings(crop_method=self.settings.crop_method)

    @cached_property
    def analyser(self):
        from facerec.runtime import build_analyser

        return build_analyser(self.settings.weights_path, self.pipeline_settings)

    @cached_property
    def pipeline(self):
        from facerec.pipeline import Pipeline
        from facerec.storage.aws import KeepExisting

        return Pipeline(
            self.analyser,
            self.catalog,
            KeepExisting(self.ingest),
            self.faces,
            self.quarantine,
            self.models,
            self.reports,
        )

    @cached_property
    def collection(self):
        from facerec.rekognition import FaceCollection

        return FaceCollection(self.rekognition, self.settings.collection_id)

    @cached_property
    def face_index(self):
        from facerec.rekognition import FaceIndexTable

        return FaceIndexTable(self.dynamodb, self.settings.face_index_table)

    @cached_property
    def vector_gallery(self):
        from facerec.vectors import VectorGallery

        return VectorGallery(
            self.s3vectors,
            self.settings.vector_bucket,
            self.settings.face_vector_index,
            self.settings.centroid_vector_index,
        )

    def rekognition_engine(self, min_similarity: float | None = None):
        from facerec.rekognition import RekognitionEngine

        threshold = self.settings.rekognition_min_similarity
        return RekognitionEngine(
            self.collection,
            self.face_index,
            threshold if min_similarity is None else min_similarity,
        )

    @cached_property
    def identify_services(self):
        from facerec.api import IdentifyServices
        from facerec.nearest import VectorNearest

        return IdentifyServices(
            self.pipeline,
            VectorNearest(self.vector_gallery, self.pipeline.current_model),
            self.rekognition_engine(),
            self.settings.facenet_min_probability,
        )


_current: Services | None = None


def services() -> Services:
    """The container's Services, built from the environment on the first call."""
    global _current
    if _current is None:
        settings = Settings.from_env()
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("functions."):
                logging.getLogger(name).setLevel(settings.log_level)
        _current = Services(settings)
    return _current


def install(instance: Services | None) -> None:
    """Replace the container's Services (tests: moto clients and a shared analyser)."""
    global _current
    _current = instance
