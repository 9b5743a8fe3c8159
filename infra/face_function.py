"""One Lambda function of the shared container image: its own role, log group and limits, and
the grants it gets (on exact buckets, tables, the collection, the vector indexes and the
training state machine, each recorded so its cdk-nag wildcard findings can be acknowledged
one by one).

Every function runs the same image (functions/Dockerfile, built from the repo root so it holds
`layers/facerec` and the converted networks, MTCNN and FaceNet as ONNX); only the image's CMD
names the handler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import EnvironmentConfig, FunctionSettings
from infra.nag import acknowledge, finding

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = "functions/Dockerfile"
MODELS_DIR = "/opt/facerec/models"  # where functions/Dockerfile copies .cache/onnx

# Kept out of the image's build context (and so out of the asset staged into cdk.out at every
# synth). `.dockerignore` already admits only what the image needs; this list names the big
# folders again so that synth stays fast even if someone loosens `.dockerignore`.
ASSET_EXCLUDE = (
    ".git",
    ".venv",
    "node_modules",
    "cdk.out",
    "workspace",
    ".cache/sample-set",
    ".cache/facenet",
    "tests",
    "bench",
    "**/__pycache__",
)

# What CDK's grant_read / grant_put write besides exact ARNs.
S3_READ_ACTION_GROUPS = ("s3:GetObject*", "s3:GetBucket*", "s3:List*")
S3_PUT_ACTION_GROUPS = ("s3:Abort*",)


def image_code(handler: str) -> lambda_.DockerImageCode:
    """The shared image with ``handler`` (``functions.<module>.<function>``) as CMD.

    Every call names the same directory, Dockerfile and options, so CDK stages, and the CLI
    builds, one image asset; the CMD lives in each function's ImageConfig."""
    return lambda_.DockerImageCode.from_image_asset(
        str(REPO_ROOT),
        file=DOCKERFILE,
        cmd=[handler],
        platform=ecr_assets.Platform.LINUX_AMD64,
        exclude=list(ASSET_EXCLUDE),
    )


class FaceFunction(Construct):
    """A DockerImageFunction with a role of its own (no managed policy: it may write to its own
    log group and nothing else until granted more), a log group with retention, X-Ray tracing,
    and, for asynchronous invocations, retries and then a dead-letter queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        description: str,
        settings: FunctionSettings,
        config: EnvironmentConfig,
        environment: Mapping[str, str],
        dead_letter_queue: sqs.IQueue | None = None,
    ):
        super().__init__(scope, construct_id)
        self.handler = handler
        self._wildcards: dict[str, None] = {}  # cdk-nag findings the grants produce, in order
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{construct_id} ({handler})",
        )
        asynchronous = dead_letter_queue is not None
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            code=image_code(handler),
            description=description,
            role=self.role,
            architecture=lambda_.Architecture.X86_64,
            memory_size=settings.memory_mb,
            timeout=settings.timeout,
            reserved_concurrent_executions=settings.reserved_concurrency,
            environment=dict(environment),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            dead_letter_queue=dead_letter_queue,
            retry_attempts=config.async_retry_attempts if asynchronous else None,
            max_event_age=config.async_max_event_age if asynchronous else None,
        )
        self.log_group.grant_write(self.role)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level "
            "permissions; AWS requires Resource '*' for them (the tests check that '*' is "
            "used for nothing else).",
            "Resource::*",
        )

    # --- Grants: each on one exact resource.

    def read(self, bucket: s3.IBucket) -> None:
        """Get and list the objects of ``bucket`` (HeadObject of a missing key needs the list
        permission to answer 404 rather than 403)."""
        bucket.grant_read(self.function)
        self._note(*(f"Action::{group}" for group in S3_READ_ACTION_GROUPS))
        self._note(f"Resource::{finding(self, bucket.arn_for_objects('*'))}")

    def put(self, bucket: s3.IBucket) -> None:
        """Put objects into ``bucket`` (no delete)."""
        bucket.grant_put(self.function)
        self._note(*(f"Action::{group}" for group in S3_PUT_ACTION_GROUPS))
        self._note(f"Resource::{finding(self, bucket.arn_for_objects('*'))}")

    def delete(self, bucket: s3.IBucket) -> None:
        """List every object version of ``bucket`` and delete objects and versions (a
        versioned bucket keeps a deleted object's data until each version is deleted)."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucketVersions"], resources=[bucket.bucket_arn])
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:DeleteObject", "s3:DeleteObjectVersion"],
                resources=[bucket.arn_for_objects("*")],
            )
        )
        self._note(f"Resource::{finding(self, bucket.arn_for_objects('*'))}")

    def delete_objects(self, bucket: s3.IBucket) -> None:
        """Delete objects of ``bucket`` (s3:DeleteObject only: no versions, no listing)."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:DeleteObject"], resources=[bucket.arn_for_objects("*")]
            )
        )
        self._note(f"Resource::{finding(self, bucket.arn_for_objects('*'))}")

    def table(
        self, table: dynamodb.ITable, *actions: str, query_indexes: Sequence[str] = ()
    ) -> None:
        """Exactly the DynamoDB ``actions`` (``"GetItem"``, ...) on ``table``, and Query on
        each of its indexes named in ``query_indexes``: none of the Scan, DeleteItem or
        BatchWriteItem that grant_read_write_data adds unless named, no index wildcard."""
        if actions:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=[f"dynamodb:{action}" for action in actions],
                    resources=[table.table_arn],
                )
            )
        if query_indexes:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["dynamodb:Query"],
                    resources=[f"{table.table_arn}/index/{index}" for index in query_indexes],
                )
            )

    def items(
        self, table: dynamodb.ITable, actions: Sequence[str], partition_keys: Sequence[str]
    ) -> None:
        """DynamoDB ``actions`` on ``table``, only on items whose partition key matches one of
        ``partition_keys`` (``dynamodb:LeadingKeys``; ``*`` as in StringLike)."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[f"dynamodb:{action}" for action in actions],
                resources=[table.table_arn],
                conditions={
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(partition_keys)}
                },
            )
        )

    def rekognition(self, collection_arn: str, *actions: str) -> None:
        """Rekognition ``actions`` on the one collection, never on '*'."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[f"rekognition:{action}" for action in actions],
                resources=[collection_arn],
            )
        )

    def vectors(self, index_arns: Sequence[str], *actions: str) -> None:
        """S3 Vectors ``actions`` on exactly these indexes, never on the bucket or '*'."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[f"s3vectors:{action}" for action in actions],
                resources=list(index_arns),
            )
        )

    def start(self, state_machine: sfn.IStateMachine) -> None:
        """Start executions of ``state_machine`` (nothing else on it)."""
        state_machine.grant_start_execution(self.function)

    def acknowledge_grants(self) -> None:
        """Acknowledge exactly the wildcard findings this function's grants produced."""
        if self._wildcards:
            acknowledge(
                self.role,
                "AwsSolutions-IAM5",
                "grant_* on the exact buckets and tables this function uses: the objects of "
                "those buckets, the indexes of those tables, and CDK's S3 read/put action "
                "groups. No other resource is named (the tests check every ARN).",
                *self._wildcards,
            )

    def _note(self, *findings: str) -> None:
        self._wildcards.update(dict.fromkeys(findings))
