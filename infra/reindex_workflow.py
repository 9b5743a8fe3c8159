"""The re-index workflow: the re-index function and a Distributed Map over the faces bucket
that runs it on batches of crops."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.function_environment import FunctionDefaults
from infra.nag import finding
from infra.stateful_stack import CATALOG_INDEX, DataResources
from infra.workflows import LambdaStep, acknowledge_role_findings, standard_state_machine

REINDEX_RESULTS_PREFIX = "reindex/"


class PrefixResultWriter(sfn.ResultWriterV2):
    """A ResultWriterV2 whose grant names the objects under its prefix only (CDK's names
    every object of the bucket): the actions CDK grants, on ``<bucket>/<prefix>*``."""

    def __init__(self, bucket: s3.IBucket, prefix: str):
        super().__init__(bucket=bucket, prefix=prefix)
        self.objects = bucket.arn_for_objects(f"{prefix}*")

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[self.objects],
            )
        ]


class ReindexWorkflow(Construct):
    """A Distributed Map over every object of the faces bucket, in batches, each batch one
    invocation of the re-index function. Concurrency and the tolerated share of failed
    batches come from the config; a batch with a crop that failed for good fails (after
    trying the rest: BatchFailed, with the reasons), throttling is retried with back-off, and
    the map writes every batch's output and failure to the reports bucket
    (``reindex/<map run>/``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        defaults: FunctionDefaults,
    ):
        super().__init__(scope, construct_id)
        config = defaults.config
        self.function = defaults.create(
            self,
            "ReindexFunction",
            "functions.reindex.handler.handler",
            config.reindex,
            "Re-index batch: re-embed and re-index a batch of face crops.",
        )
        self.function.read(data.faces_bucket)
        # The crop's face, its embedding rewritten, the person's faces (GSI) for the
        # centroid, the indexing claim (conditional puts); the FaceId rows put, and deleted
        # when a newer crop version replaces one.
        self.function.table(
            data.catalog_table, "GetItem", "PutItem", "UpdateItem", query_indexes=[CATALOG_INDEX]
        )
        self.function.table(data.face_index_table, "PutItem", "DeleteItem")
        self.function.rekognition(data.collection_arn, "IndexFaces", "DeleteFaces")
        self.function.vectors(data.vector_index_arns, "PutVectors")

        # The batch's answer is its own output; the state machine's state is the map's.
        results = PrefixResultWriter(data.reports_bucket, REINDEX_RESULTS_PREFIX)
        self.map = sfn.DistributedMap(
            self,
            "ReindexFaces",
            state_name="ReindexFaces",
            comment="Re-embed and re-index every crop of the faces bucket.",
            item_reader=sfn.S3ObjectsItemReader(bucket=data.faces_bucket),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=config.reindex_items_per_batch,
                batch_input={"bucket": data.faces_bucket.bucket_name},
            ),
            max_concurrency=config.reindex_max_concurrency,
            tolerated_failure_percentage=config.reindex_tolerated_failure_percentage,
            result_writer_v2=results,
            map_execution_type=sfn.StateMachineType.STANDARD,
        )
        self.map.item_processor(LambdaStep(self, "ReindexBatch", self.function.function))
        failed = sfn.Fail(
            self,
            "ReindexFailed",
            state_name="ReindexFailed",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
        )
        self.map.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        definition = self.map.next(sfn.Succeed(self, "Reindexed", state_name="Reindexed"))

        self.state_machine = standard_state_machine(
            self,
            definition,
            purpose="reindex",
            comment="Re-embed and re-index every face crop (new FaceNet weights, a new "
            "Rekognition collection, or a large archive enrolled at once).",
            config=config,
            timeout=config.reindex_timeout,
        )
        # The map runs' child executions: `execution:<state machine name>:*` (and `/*:*` for
        # redrive), the name taken from this state machine's own ARN.
        stack = Stack.of(self)
        own_name = {
            "Fn::Select": [
                6,
                {"Fn::Split": [":", stack.resolve(self.state_machine.state_machine_arn)]},
            ]
        }
        executions = (
            f"arn:{finding(self, stack.partition)}:states:{config.region}:{config.account}:"
            f"execution:{finding(self, own_name)}"
        )
        acknowledge_role_findings(
            self.state_machine,
            [self.function.function],
            # The ResultWriter's objects: those under its prefix of the reports bucket.
            f"Resource::{finding(self, results.objects)}",
            f"Resource::{executions}:*",
            f"Resource::{executions}/*:*",
        )
