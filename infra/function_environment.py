"""What every function of the service shares: the contract's environment (docs/contract.md;
tests/infra checks it against what ``functions/settings.py`` reads), the config and the
dead-letter queue of EventBridge's deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EnvironmentConfig, FunctionSettings
from infra.face_function import MODELS_DIR, FaceFunction
from infra.stateful_stack import DataResources


def function_environment(config: EnvironmentConfig, data: DataResources) -> dict[str, str]:
    """The environment every function gets (docs/contract.md)."""
    return {
        "INGEST_BUCKET": data.ingest_bucket.bucket_name,
        "FACES_BUCKET": data.faces_bucket.bucket_name,
        "MODELS_BUCKET": data.models_bucket.bucket_name,
        "REPORTS_BUCKET": data.reports_bucket.bucket_name,
        "QUARANTINE_BUCKET": data.quarantine_bucket.bucket_name,
        "CATALOG_TABLE": data.catalog_table.table_name,
        "FACE_INDEX_TABLE": data.face_index_table.table_name,
        "COLLECTION_ID": data.collection_id,
        "VECTOR_BUCKET": data.vector_bucket_name,
        "FACE_VECTOR_INDEX": data.face_vector_index,
        "CENTROID_VECTOR_INDEX": data.centroid_vector_index,
        "MODELS_DIR": MODELS_DIR,
        "CROP_METHOD": config.crop_method,
        "EMBEDDING_PRECISION": config.embedding_precision,
        "REKOGNITION_MIN_SIMILARITY": f"{config.rekognition_min_similarity:g}",
        "FACENET_MIN_PROBABILITY": f"{config.facenet_min_probability:g}",
        "REKOGNITION_EVALUATION_FACES": str(config.rekognition_evaluation_faces),
        "REPORT_TIMED_PHOTOS": str(config.report_timed_photos),
        "LOG_LEVEL": config.log_level,
    }


@dataclass(frozen=True)
class FunctionDefaults:
    """The config and the environment every FaceFunction of the service is built with, and
    the queue where events that could not be delivered end."""

    config: EnvironmentConfig
    environment: Mapping[str, str]
    dead_letter_queue: sqs.IQueue

    def event_target(self, function: FaceFunction) -> targets.LambdaFunction:
        """``function`` as an EventBridge target: EventBridge's retries, then the queue."""
        return targets.LambdaFunction(
            function.function,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=self.config.event_retry_attempts,
            max_event_age=self.config.event_max_age,
        )

    def create(
        self,
        scope: Construct,
        construct_id: str,
        handler: str,
        settings: FunctionSettings,
        description: str,
        *,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> FaceFunction:
        """A function running ``handler``; with a ``dead_letter_queue``, invoked asynchronously."""
        return FaceFunction(
            scope,
            construct_id,
            handler=handler,
            description=description,
            settings=settings,
            config=self.config,
            environment=self.environment,
            dead_letter_queue=dead_letter_queue,
        )
