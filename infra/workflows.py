"""What the two Step Functions workflows share: the Lambda step fragment, the state machine
with its logging and tracing, and the acknowledgments of its role's wildcard findings."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge, finding

# Error names a Lambda step surfaces when it is throttled: Lambda's own, and the modelled
# boto3 exceptions (their class name becomes the Lambda errorType) of Rekognition, DynamoDB
# and S3 Vectors once the SDK's adaptive retries gave up: throttling and passing service
# errors (the codes facerec.storage.aws.TRANSIENT_CODES treats as transient).
THROTTLING_ERRORS = (
    "Lambda.TooManyRequestsException",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "TooManyRequestsException",
    "ServiceUnavailableException",
    "InternalServerException",
    "RequestTimeoutException",
    "InternalServerError",
    "RequestLimitExceeded",
)


# A task gives up on its function this long after the function's own timeout (which ends a
# run that overruns with a Lambda error first), so a lost invocation cannot hold a workflow.
TASK_TIMEOUT_MARGIN = Duration.minutes(1)


class LambdaStep(sfn.StateMachineFragment):
    """One task that passes the whole state to ``function`` and takes its answer as the new
    state (docs/contract.md), retried with backoff when Lambda or a service throttles, and
    timed out (States.Timeout) TASK_TIMEOUT_MARGIN after the function's own timeout."""

    def __init__(self, scope: Construct, state_name: str, function: lambda_.Function):
        super().__init__(scope, state_name)
        timeout = function.timeout.to_seconds() + TASK_TIMEOUT_MARGIN.to_seconds()
        self.task = tasks.LambdaInvoke(
            self,
            "Invoke",
            state_name=state_name,
            lambda_function=function,
            payload_response_only=True,
            result_path="$",
            task_timeout=sfn.Timeout.duration(Duration.seconds(timeout)),
            # Adds Retry on Lambda.ServiceException, AWSLambdaException, SdkClientException
            # and ClientExecutionTimeoutException (2 s, x2, 6 attempts).
            retry_on_service_exceptions=True,
        )
        self.task.add_retry(
            errors=list(THROTTLING_ERRORS),
            interval=Duration.seconds(5),
            backoff_rate=2,
            max_attempts=6,
            max_delay=Duration.minutes(2),
            jitter_strategy=sfn.JitterType.FULL,
        )

    @property
    def start_state(self) -> sfn.State:
        return self.task

    @property
    def end_states(self) -> list[sfn.INextable]:
        return [self.task]

    def on_failure(self, handler: sfn.IChainable) -> LambdaStep:
        """Any error left after the retries goes to ``handler``, under ``$.error``."""
        self.task.add_catch(handler, errors=["States.ALL"], result_path="$.error")
        return self


def standard_state_machine(
    scope: Construct,
    definition: sfn.IChainable,
    *,
    purpose: str,
    comment: str,
    config: EnvironmentConfig,
    timeout: Duration,
) -> sfn.StateMachine:
    """A traced STANDARD state machine ``facerec-<env>-<purpose>`` that logs to its own group."""
    log_group = logs.LogGroup(
        scope,
        "LogGroup",
        retention=config.log_retention,
        removal_policy=config.removal_policy,
    )
    return sfn.StateMachine(
        scope,
        "StateMachine",
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        state_machine_type=sfn.StateMachineType.STANDARD,
        timeout=timeout,
        state_machine_name=config.resource_name(purpose),
        tracing_enabled=True,
        # ALL events, but no execution data: states carry object keys, and keys name people.
        logs=sfn.LogOptions(
            destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False
        ),
    )


def acknowledge_role_findings(
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
