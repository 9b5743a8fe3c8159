"""The functions' composition root, built once per container and lazily: AWS clients, the
storage adapters as one ``Stores`` bundle, the engines and the networks. Handlers take what
they need from ``services()``; a handler that detects or embeds calls ``load_at_init()`` at
import, so that in Lambda the networks load in the init phase, once per environment.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from functools import cached_property

import boto3
import numpy as np
from botocore.config import Config

from facerec.interfaces.http import forget_status, new_forget_id
from functions.settings import Settings

RETRIES = Config(retries={"max_attempts": 8, "mode": "adaptive"})  # backs off on throttling


class Services:
    """The container's adapters, each built on first use. ``analyser`` may be passed in
    (tests share one); otherwise MTCNN and FaceNet load from ``settings.models_dir`` (FaceNet
    at ``settings.precision``) the first time something needs them."""

    def __init__(self, settings: Settings, session=None, analyser=None):
        self.settings = settings
        self.session = session or boto3.session.Session()
        if analyser is not None:
            self.__dict__["analyser"] = analyser

    def client(self, name: str):
        return self.session.client(name, config=RETRIES)

    @cached_property
    def rekognition(self):
        return self.client("rekognition")

    @cached_property
    def s3vectors(self):
        return self.client("s3vectors")

    @cached_property
    def stepfunctions(self):
        return self.client("stepfunctions")

    @cached_property
    def model_files(self):
        """The converted networks (``ModelFiles`` of ``settings.models_dir``)."""
        from facerec.vision.runtime import ModelFiles

        return ModelFiles(self.settings.models_dir)

    @cached_property
    def embedding_stamp(self) -> str:
        """Which network makes this container's embeddings: the loaded embedder's stamp once
        the analyser is loaded (or passed in), else the manifest's, without loading it."""
        if "analyser" in self.__dict__:
            return self.analyser.embedder.stamp
        from facerec.vision.embedding import describe_embedding, embedding_stamp

        return embedding_stamp(describe_embedding(self.model_files, self.settings.precision))

    @cached_property
    def catalog(self):
        """The catalog table; every face it writes is stamped with the network that made
        its embedding (``embedding_stamp``)."""
        from facerec.storage.aws import DynamoCatalog

        resource = self.session.resource("dynamodb", config=RETRIES)
        return DynamoCatalog(resource, self.settings.catalog_table, self.embedding_stamp)

    @cached_property
    def stores(self):
        from facerec.storage.aws import S3BlobStore
        from facerec.storage.ports import Stores
        from facerec.storage.rekognition import FaceCollection, FaceIndexTable
        from facerec.storage.vectors import VectorGallery

        settings, s3 = self.settings, self.client("s3")
        dynamodb = self.session.resource("dynamodb", config=RETRIES)
        return Stores(
            self.catalog,
            *(
                S3BlobStore(s3, name)
                for name in (
                    settings.ingest_bucket,
                    settings.faces_bucket,
                    settings.quarantine_bucket,
                    settings.models_bucket,
                    settings.reports_bucket,
                )
            ),
            collections=lambda collection_id: FaceCollection(self.rekognition, collection_id),
            face_index=FaceIndexTable(dynamodb, settings.face_index_table),
            vectors=VectorGallery(
                self.s3vectors,
                settings.vector_bucket,
                settings.face_vector_index,
                settings.centroid_vector_index,
            ),
        )

    @cached_property
    def collection(self):
        """The deployment's current Rekognition collection."""
        return self.stores.collections(self.settings.collection_id)

    @cached_property
    def analysis_settings(self):
        from facerec.core.settings import AnalysisSettings

        return AnalysisSettings(
            crop_method=self.settings.crop_method, precision=self.settings.precision
        )

    @cached_property
    def analyser(self):
        from facerec.vision.analyser import build_analyser

        return build_analyser(self.settings.models_dir, self.analysis_settings)

    def analysis(self) -> dict:
        """How faces are made, for a model's metadata, from the models' manifest (no network
        loaded)."""
        from facerec.vision.analyser import describe_analysis

        return describe_analysis(self.analysis_settings, self.model_files)

    @cached_property
    def enrolment(self):
        from facerec.flows.enrol import Enrolment

        return Enrolment(self.analyser, self.stores)

    @cached_property
    def current_model(self):
        from facerec.flows.train import CurrentModel

        return CurrentModel(self.catalog, self.stores.models)

    def rekognition_engine(self, min_similarity: float | None = None):
        from facerec.engines.rekognition import RekognitionEngine

        threshold = self.settings.rekognition_min_similarity
        similarity = threshold if min_similarity is None else min_similarity
        return RekognitionEngine(self.collection, self.stores.face_index, similarity)

    @cached_property
    def engines(self) -> dict:
        from facerec.engines.facenet import FaceNetEngine
        from facerec.engines.hybrid import HybridEngine
        from facerec.engines.nearest import VectorNearest

        facenet = FaceNetEngine(
            self.current_model, self.settings.facenet_min_probability, self.embedding_stamp
        )
        rekognition = self.rekognition_engine()

        def metadata() -> dict:
            return self.current_model().metadata

        return {
            "facenet": facenet,
            "nearest": VectorNearest(self.stores.vectors, self.current_model),
            "rekognition": rekognition,
            "hybrid": HybridEngine(facenet, rekognition, metadata),
        }

    def warm(self) -> str | None:
        """Load what an identify request needs: the analyser, each network run once
        (``run_once``), the engines and the current model. Returns its id, None before the
        first training (FaceNet answers 503 until one is published)."""
        from facerec.core.errors import ModelNotFound

        run_once(self.identify_service.analyser)
        try:
            return self.current_model().model_id
        except ModelNotFound:
            return None

    @cached_property
    def identify_service(self):
        from facerec.interfaces.http import IdentifyService

        return IdentifyService(self.analyser, self.engines, self.stores.ingest)

    def retrain(self, options) -> dict:
        """Start the training workflow with ``options`` (TrainOptions) after stopping the
        executions still running (they may hold a forgotten person's faces, and one holds the
        training lock, released here so the new one can take it at once). ``retraining``:
        the new execution's ARN; ``stopped_trainings``: the names of those stopped."""
        machine = self.settings.training_state_machine_arn
        stopped = []
        pages = self.stepfunctions.get_paginator("list_executions").paginate(
            stateMachineArn=machine, statusFilter="RUNNING"
        )
        for execution in (execution for page in pages for execution in page["executions"]):
            self.stepfunctions.stop_execution(
                executionArn=execution["executionArn"],
                error="Superseded",
                cause="a person was forgotten; a new training without them replaces this one",
            )
            self.catalog.unlock_training(execution["name"])
            stopped.append(execution["name"])
        started = self.stepfunctions.start_execution(
            stateMachineArn=machine, input=json.dumps(asdict(options))
        )
        return {"retraining": started["executionArn"], "stopped_trainings": stopped}

    def start_forget(self, person: str) -> str:
        """Start the forget workflow for ``person`` (a valid name); the forget's id, which is
        the execution's name."""
        forget_id = new_forget_id()
        self.stepfunctions.start_execution(
            stateMachineArn=self.settings.forget_state_machine_arn,
            name=forget_id,
            input=json.dumps({"person": person}),
        )
        return forget_id

    def forget_status(self, forget_id: str) -> dict | None:
        """The forget's ``GET /forgets/{forget_id}`` body (http.forget_status) from its
        execution, or None when there is no such execution."""
        machine = self.settings.forget_state_machine_arn
        arn = f"{machine.replace(':stateMachine:', ':execution:', 1)}:{forget_id}"
        try:
            execution = self.stepfunctions.describe_execution(executionArn=arn)
        except self.stepfunctions.exceptions.ExecutionDoesNotExist:
            return None
        person = json.loads(execution.get("input") or "{}").get("person", "")
        status = execution["status"]
        if status == "SUCCEEDED":
            output = json.loads(execution.get("output") or "{}")
            return forget_status(forget_id, person, status, deleted=output.get("deleted", {}))
        if status in ("RUNNING", "PENDING_REDRIVE"):
            return forget_status(forget_id, person, "RUNNING")
        error = {
            "code": execution.get("error") or f"States.{status}",
            "message": f"the forget ended {status}; it is safe to send DELETE again",
        }
        return forget_status(forget_id, person, "FAILED", error=error)


def run_once(analyser) -> None:
    """Run MTCNN on a blank photo and FaceNet on a blank crop, so that ONNX Runtime's first
    runs (buffer allocation) happen before any event."""
    size = analyser.settings.crop_size
    analyser.analyse([np.zeros((size, size, 3), np.uint8)])
    analyser.embedder.embed(np.zeros((1, size, size, 3), np.uint8))


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


def load_at_init() -> None:
    """In Lambda (``AWS_LAMBDA_FUNCTION_NAME`` is set), load and run the networks now: a
    handler that detects or embeds calls this at import, so Lambda's init phase pays for them
    once per environment, not its first event. Elsewhere (tests, the CLI) it does nothing."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        run_once(services().analyser)


def install(instance: Services | None) -> None:
    """Replace the container's Services (tests: moto clients and a shared analyser)."""
    global _current
    _current = instance
