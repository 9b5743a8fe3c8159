"""Everything that can be deleted and rebuilt: the functions, their event wiring, the two
workflows and the API. Access is granted per function, on the exact buckets, tables,
collection, vector indexes and state machine it uses (docs/contract.md), and nowhere else.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EnvironmentConfig, FunctionSettings
from infra.face_function import WEIGHTS_PATH, FaceFunction
from infra.identify_api import IdentifyApi
from infra.stateful_stack import DataResources
from infra.workflows import ReindexWorkflow, TrainingWorkflow


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
        "WEIGHTS_PATH": WEIGHTS_PATH,
        "CROP_METHOD": config.crop_method,
        "REKOGNITION_MIN_SIMILARITY": f"{config.rekognition_min_similarity:g}",
        "FACENET_MIN_PROBABILITY": f"{config.facenet_min_probability:g}",
        "LOG_LEVEL": config.log_level,
    }


class StatelessStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        **kw,
    ):
        super().__init__(scope, construct_id, **kw)
        self.config = config
        self.data = data = DataResources.imported(self, config)
        self._environment = function_environment(config, data)

        # Asynchronous invocations that still fail after Lambda's retries, and events that
        # EventBridge could not deliver, land here with their error attributes.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )

        # --- The event chain: ingest photo -> align; face crop -> embed and index.
        self.align_faces = self._function(
            "AlignFacesFunction",
            "functions.align_faces.handler.handler",
            config.align_faces,
            "Ingest photo -> every face cropped into the faces bucket and catalogued.",
            asynchronous=True,
        )
        self.align_faces.read(data.ingest_bucket)
        self.align_faces.put(data.faces_bucket)
        self.align_faces.put(data.quarantine_bucket)
        self.align_faces.read_write_table(data.catalog_table)

        self.embed_faces = self._function(
            "EmbedFacesFunction",
            "functions.embed_faces.handler.handler",
            config.embed_faces,
            "Face crop -> its FaceNet embedding in the catalog.",
            asynchronous=True,
        )
        self.embed_faces.read(data.faces_bucket)
        self.embed_faces.read_write_table(data.catalog_table)
        # The face's vector, then its person's centroid rewritten from the catalog's faces.
        self.embed_faces.vectors(data.vector_index_arns, "PutVectors")

        self.index_faces = self._function(
            "IndexFacesFunction",
            "functions.index_faces.handler.handler",
            config.index_faces,
            "Face crop -> Rekognition IndexFaces and its FaceId -> person row.",
            asynchronous=True,
        )
        self.index_faces.read(data.faces_bucket)
        # The catalog holds the idempotency claim per collection, crop and ETag.
        self.index_faces.read_write_table(data.catalog_table)
        self.index_faces.read_write_table(data.face_index_table)
        # DeleteFaces: a newer version of a crop replaces the FaceId of the older one.
        self.index_faces.rekognition(data.collection_arn, "IndexFaces", "DeleteFaces")

        self._route_object_created(
            "IngestObjectCreatedRule",
            data.ingest_bucket,
            [self.align_faces],
            "Ingest bucket Object Created -> align faces.",
        )
        self._route_object_created(
            "FacesObjectCreatedRule",
            data.faces_bucket,
            [self.embed_faces, self.index_faces],
            "Faces bucket Object Created (.png crops) -> embed and index.",
            key_suffix=".png",
        )

        # --- Identify, behind the API.
        self.identify_faces = self._function(
            "IdentifyFacesFunction",
            "functions.identify_faces.handler.handler",
            config.identify_faces,
            "POST /identify: every face with its box and each engine's answer.",
        )
        self.identify_faces.read(data.ingest_bucket)
        self.identify_faces.read(data.models_bucket)
        self.identify_faces.read_table(data.catalog_table)
        self.identify_faces.read_table(data.face_index_table)
        self.identify_faces.rekognition(data.collection_arn, "SearchFacesByImage")
        # QueryVectors with returnMetadata needs GetVectors too; GetVectors reads centroids.
        self.identify_faces.vectors(data.vector_index_arns, "QueryVectors", "GetVectors")

        # --- Training workflow: one function per step, each with only what its step uses.
        training = config.training
        self.gather_embeddings = self._function(
            "GatherEmbeddingsFunction",
            "functions.training.handler.gather_embeddings",
            training,
            "Training step 1: every labelled embedding from the catalog into one S3 object.",
        )
        self.gather_embeddings.read_table(data.catalog_table)
        self.gather_embeddings.put(data.models_bucket)

        self.train_classifier = self._function(
            "TrainClassifierFunction",
            "functions.training.handler.train_classifier",
            training,
            "Training step 2: seeded stratified split, SVC with cross-validation.",
        )
        self.train_classifier.read(data.models_bucket)
        self.train_classifier.put(data.models_bucket)

        self.evaluate_facenet = self._function(
            "EvaluateFaceNetFunction",
            "functions.training.handler.evaluate_facenet",
            training,
            "Training step 3: FaceNet and the nearest-neighbour engine on the held-out split.",
        )
        self.evaluate_facenet.read(data.models_bucket)
        self.evaluate_facenet.put(data.reports_bucket)

        self.evaluate_rekognition = self._function(
            "EvaluateRekognitionFunction",
            "functions.training.handler.evaluate_rekognition",
            training,
            "Training step 4: Rekognition SearchFacesByImage on the same held-out crops.",
        )
        self.evaluate_rekognition.read(data.models_bucket)
        self.evaluate_rekognition.read(data.faces_bucket)
        self.evaluate_rekognition.read_table(data.face_index_table)
        self.evaluate_rekognition.put(data.reports_bucket)
        self.evaluate_rekognition.rekognition(
            data.collection_arn, "SearchFacesByImage", "DescribeCollection"
        )

        self.publish_model = self._function(
            "PublishModelFunction",
            "functions.training.handler.publish_model",
            training,
            "Training step 5: write the report, publish the model, promote it if not worse.",
        )
        self.publish_model.read(data.models_bucket)
        self.publish_model.put(data.models_bucket)
        self.publish_model.read(data.reports_bucket)
        self.publish_model.put(data.reports_bucket)
        self.publish_model.read_write_table(data.catalog_table)

        self.write_report = self._function(
            "WriteReportFunction",
            "functions.training.handler.write_report",
            config.report,
            "Training step 6: FaceNet and Rekognition on the held-out faces, as an HTML report.",
        )
        # facerec.comparison.compare: the model and every model's metadata (training history),
        # the held-out photos (FaceNet's identify path) and crops (Rekognition), the
        # quarantined photos' reasons, the catalog's faces, the collection's FaceIds.
        self.write_report.read(data.models_bucket)
        self.write_report.read(data.ingest_bucket)
        self.write_report.read(data.faces_bucket)
        self.write_report.read(data.quarantine_bucket)
        self.write_report.read_table(data.catalog_table)
        self.write_report.read_table(data.face_index_table)
        self.write_report.put(data.reports_bucket)
        self.write_report.rekognition(
            data.collection_arn, "SearchFacesByImage", "DescribeCollection"
        )

        self.training = TrainingWorkflow(
            self,
            "TrainingWorkflow",
            steps=[
                step.function
                for step in (
                    self.gather_embeddings,
                    self.train_classifier,
                    self.evaluate_facenet,
                    self.evaluate_rekognition,
                    self.publish_model,
                    self.write_report,
                )
            ],
            reports_bucket=data.reports_bucket,
            config=config,
        )

        # --- Re-index workflow.
        self.reindex = self._function(
            "ReindexFunction",
            "functions.reindex.handler.handler",
            config.reindex,
            "Re-index batch: re-embed and re-index a batch of face crops.",
        )
        self.reindex.read(data.faces_bucket)
        self.reindex.read_write_table(data.catalog_table)
        self.reindex.read_write_table(data.face_index_table)
        self.reindex.rekognition(data.collection_arn, "IndexFaces", "DeleteFaces")
        self.reindex.vectors(data.vector_index_arns, "PutVectors")
        self.reindex_workflow = ReindexWorkflow(
            self,
            "ReindexWorkflow",
            reindex_function=self.reindex.function,
            faces_bucket=data.faces_bucket,
            reports_bucket=data.reports_bucket,
            config=config,
        )

        # --- Forget a person, behind the API: every trace of them, then a retraining.
        self.forget_person = self._function(
            "ForgetPersonFunction",
            "functions.forget_person.handler.handler",
            config.forget_person,
            "DELETE /people/{name}: the person's photos, crops, faces, vectors, then retrain.",
        )
        for bucket in (
            data.ingest_bucket,
            data.faces_bucket,
            data.quarantine_bucket,
            data.models_bucket,
            data.reports_bucket,
        ):
            self.forget_person.read(bucket)
            self.forget_person.delete(bucket)
        # Model metadata and reports may be rewritten without the person.
        self.forget_person.put(data.models_bucket)
        self.forget_person.put(data.reports_bucket)
        self.forget_person.read_write_table(data.catalog_table)
        self.forget_person.read_write_table(data.face_index_table)
        self.forget_person.rekognition(data.collection_arn, "DeleteFaces")
        self.forget_person.vectors(data.vector_index_arns, "DeleteVectors")
        self.forget_person.start(self.training.state_machine)
        self.forget_person.function.add_environment(
            "TRAINING_STATE_MACHINE_ARN", self.training.state_machine.state_machine_arn
        )

        self.api = IdentifyApi(
            self,
            "IdentifyApi",
            identify_function=self.identify_faces.function,
            forget_function=self.forget_person.function,
            config=config,
        )

        for function in self.functions:
            function.acknowledge_grants()

        CfnOutput(self, "IdentifyUrl", value=self.api.url)
        CfnOutput(
            self, "TrainingStateMachineArn", value=self.training.state_machine.state_machine_arn
        )
        CfnOutput(
            self,
            "ReindexStateMachineArn",
            value=self.reindex_workflow.state_machine.state_machine_arn,
        )
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dead_letter_queue.queue_url)

    @property
    def functions(self) -> tuple[FaceFunction, ...]:
        return tuple(child for child in self.node.children if isinstance(child, FaceFunction))

    def _function(
        self,
        construct_id: str,
        handler: str,
        settings: FunctionSettings,
        description: str,
        *,
        asynchronous: bool = False,
    ) -> FaceFunction:
        return FaceFunction(
            self,
            construct_id,
            handler=handler,
            description=description,
            settings=settings,
            config=self.config,
            environment=self._environment,
            dead_letter_queue=self.dead_letter_queue if asynchronous else None,
        )

    def _route_object_created(
        self,
        construct_id: str,
        bucket: s3.IBucket,
        functions: list[FaceFunction],
        description: str,
        key_suffix: str | None = None,
    ) -> events.Rule:
        detail: dict = {"bucket": {"name": [bucket.bucket_name]}}
        if key_suffix:
            detail["object"] = {"key": [{"suffix": key_suffix}]}
        rule = events.Rule(
            self,
            construct_id,
            description=description,
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"], detail=detail
            ),
        )
        for function in functions:
            rule.add_target(
                targets.LambdaFunction(
                    function.function,
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=self.config.event_retry_attempts,
                    max_event_age=self.config.event_max_age,
                )
            )
        return rule
