"""The two Step Functions workflows: training (six Lambda steps in order) and re-index (a
Distributed Map over the faces bucket)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Duration, Fn, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge, finding

# Error names a Lambda step surfaces when it is throttled: Lambda's own, and the modelled
# boto3 exceptions (their class name becomes the Lambda errorType) of Rekognition and
# DynamoDB once the SDK's adaptive retries gave up.
THROTTLING_ERRORS = (
    "Lambda.TooManyRequestsException",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
)

TRAINING_FAILURES_PREFIX = "training/failures/"
REINDEX_RESULTS_PREFIX = "reindex/"


def _lambda_step(
    scope: Construct, state_name: str, function: lambda_.IFunction
) -> tasks.LambdaInvoke:
    """A task that passes the whole state to ``function`` and takes its answer as the new
    state (docs/contract.md), retried with backoff when Lambda or a service throttles."""
    task = tasks.LambdaInvoke(
        scope,
        state_name,
        state_name=state_name,
        lambda_function=function,
        payload_response_only=True,
        result_path="$",
        # Adds Retry on Lambda.ServiceException, AWSLambdaException, SdkClientException and
        # ClientExecutionTimeoutException (2 s, x2, 6 attempts).
        retry_on_service_exceptions=True,
    )
    task.add_retry(
        errors=list(THROTTLING_ERRORS),
        interval=Duration.seconds(5),
        backoff_rate=2,
        max_attempts=6,
        max_delay=Duration.minutes(2),
        jitter_strategy=sfn.JitterType.FULL,
    )
    return task


def _log_options(scope: Construct, config: EnvironmentConfig) -> sfn.LogOptions:
    log_group = logs.LogGroup(
        scope,
        "LogGroup",
        retention=config.log_retention,
        removal_policy=config.removal_policy,
    )
    # ALL events, but without execution data: states carry object keys, and keys name people.
    return sfn.LogOptions(
        destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False
    )


def _acknowledge_role_findings(
    state_machine: sfn.StateMachine, invoked: Sequence[lambda_.IFunction], *extra: str
) -> None:
    """The wildcard findings of the state machine's policies, each with its reason."""
    acknowledge(
        state_machine,
        "AwsSolutions-IAM5",
        "Resource '*' only for actions that support no resource-level permissions: X-Ray "
        "tracing and CloudWatch Logs vended log delivery (logs:CreateLogDelivery, "
        "logs:DescribeResourcePolicies, ...), which Step Functions logging requires.",
        "Resource::*",
    )
    acknowledge(
        state_machine,
        "AwsSolutions-IAM5",
        "lambda:InvokeFunction on this workflow's own functions and their versions (ARN + "
        "':*'), the form the Step Functions Lambda integration grants.",
        *(f"Resource::{finding(state_machine, fn.function_arn)}:*" for fn in invoked),
    )
    if extra:
        acknowledge(
            state_machine,
            "AwsSolutions-IAM5",
            "Objects under one prefix of the reports bucket, or the executions of this state "
            "machine's own map runs: the narrowest resources these actions accept.",
            *extra,
        )


class TrainingWorkflow(Construct):
    """gather_embeddings -> train_classifier -> evaluate_facenet -> evaluate_rekognition
    -> publish_model -> write_report. The comparison report comes last: it is the slowest step
    and the promotion needs nothing from it, so its failure never holds a model back, and the
    report says whether the model was promoted. Any step that still fails after its retries
    is caught: the error and its cause are written to the reports bucket
    (``training/failures/<execution>.json``) and the execution ends in a Fail state that
    carries the same error and cause."""

    STEP_NAMES = (
        "GatherEmbeddings",
        "TrainClassifier",
        "EvaluateFaceNet",
        "EvaluateRekognition",
        "PublishModel",
        "WriteReport",
    )

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        steps: Sequence[lambda_.IFunction],
        reports_bucket: s3.IBucket,
        config: EnvironmentConfig,
    ):
        super().__init__(scope, construct_id)
        if len(steps) != len(self.STEP_NAMES):
            raise ValueError(f"expected {len(self.STEP_NAMES)} step functions, got {len(steps)}")

        failed = sfn.Fail(
            self,
            "TrainingFailed",
            state_name="TrainingFailed",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
        )
        record_failure = tasks.CallAwsService(
            self,
            "RecordFailure",
            state_name="RecordFailure",
            service="s3",
            action="putObject",
            parameters={
                "Bucket": reports_bucket.bucket_name,
                "Key": sfn.JsonPath.format(
                    f"{TRAINING_FAILURES_PREFIX}{{}}.json", sfn.JsonPath.execution_name
                ),
                "Body": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.error")),
                "ContentType": "application/json",
            },
            iam_resources=[reports_bucket.arn_for_objects(f"{TRAINING_FAILURES_PREFIX}*")],
            result_path=sfn.JsonPath.DISCARD,
        )
        # If even the record cannot be written, still fail with the step's own error.
        record_failure.add_catch(failed, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        record_failure.next(failed)

        self.tasks = [
            _lambda_step(self, name, function)
            for name, function in zip(self.STEP_NAMES, steps, strict=True)
        ]
        for task in self.tasks:
            task.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")

        definition = sfn.Chain.start(self.tasks[0])
        for task in self.tasks[1:]:
            definition = definition.next(task)
        definition = definition.next(sfn.Succeed(self, "Trained", state_name="Trained"))

        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="Train the FaceNet classifier, evaluate FaceNet and Rekognition on the same "
            "held-out split, publish the model (promoted only if at least as good), write the "
            "comparison report. "
            'Input: {"seed": 42, "test_size": 0.25} (both optional).',
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=config.training_timeout,
            state_machine_name=config.resource_name("training"),
            tracing_enabled=True,
            logs=_log_options(self, config),
        )
        _acknowledge_role_findings(
            self.state_machine,
            steps,
            f"Resource::{finding(self, reports_bucket.arn_for_objects(TRAINING_FAILURES_PREFIX))}*",
        )


class ReindexWorkflow(Construct):
    """A Distributed Map over every object of the faces bucket, in batches, each batch one
    invocation of ``functions/reindex/handler.py``. Concurrency and the tolerated share of
    failed batches come from the config; per-item failures (with reasons) come back in each
    batch's output, and the map writes all outputs and failures to the reports bucket
    (``reindex/<map run>/``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        reindex_function: lambda_.IFunction,
        faces_bucket: s3.IBucket,
        reports_bucket: s3.IBucket,
        config: EnvironmentConfig,
    ):
        super().__init__(scope, construct_id)
        batch = _lambda_step(self, "ReindexBatch", reindex_function)
        # The batch's answer is its own output; the state machine's state is the map's.
        self.map = sfn.DistributedMap(
            self,
            "ReindexFaces",
            state_name="ReindexFaces",
            comment="Re-embed and re-index every crop of the faces bucket.",
            item_reader=sfn.S3ObjectsItemReader(bucket=faces_bucket),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=config.reindex_items_per_batch,
                batch_input={"bucket": faces_bucket.bucket_name},
            ),
            max_concurrency=config.reindex_max_concurrency,
            tolerated_failure_percentage=config.reindex_tolerated_failure_percentage,
            result_writer_v2=sfn.ResultWriterV2(
                bucket=reports_bucket, prefix=REINDEX_RESULTS_PREFIX
            ),
            map_execution_type=sfn.StateMachineType.STANDARD,
        )
        self.map.item_processor(batch)
        failed = sfn.Fail(
            self,
            "ReindexFailed",
            state_name="ReindexFailed",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
        )
        self.map.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        definition = self.map.next(sfn.Succeed(self, "Reindexed", state_name="Reindexed"))

        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="Re-embed and re-index every face crop (new FaceNet weights, a new "
            "Rekognition collection, or a large archive enrolled at once).",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=config.reindex_timeout,
            state_machine_name=config.resource_name("reindex"),
            tracing_enabled=True,
            logs=_log_options(self, config),
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
        _acknowledge_role_findings(
            self.state_machine,
            [reindex_function],
            # The ResultWriter's own form of the reports bucket's objects.
            "Resource::"
            + finding(
                self,
                Fn.join("", ["arn:", Aws.PARTITION, ":s3:::", reports_bucket.bucket_name, "/*"]),
            ),
            f"Resource::{executions}:*",
            f"Resource::{executions}/*:*",
        )
