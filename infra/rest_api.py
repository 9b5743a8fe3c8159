"""The REST API itself: regional, its stage logged (never the bodies), traced and throttled
per environment, and API Gateway's own answers in the contract's error shape."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge

API_DESCRIPTION = (
    "Face identification: POST /identify with a base64 photo (image) or an ingest-bucket key "
    "(s3_key) and engines: facenet, rekognition or both. Requests are SigV4-signed (IAM). "
    "Size limit: a Lambda invocation carries at most 6 MB, so a base64 image over 5 MiB "
    "(about 3.7 MB of photo) is answered 413 by the identify handler, and a body Lambda "
    "cannot receive at all is answered 413 by API Gateway. Larger photos: upload them to the "
    "ingest bucket and send their s3_key. DELETE /people/{name} forgets a person: their "
    "photos, faces and vectors, then retrains."
)

# API Gateway's own answer to a body that fails the model: the contract's error shape.
INVALID_BODY_TEMPLATE = (
    '{"code": "invalid_request", "message": "The request body must be a JSON object with '
    "exactly one of image (base64) or s3_key, and optionally engines (facenet, "
    'rekognition or both): $util.escapeJavaScript($context.error.validationErrorString)"}'
)
TOO_LARGE_TEMPLATE = (
    '{"code": "payload_too_large", "message": "The request body is over API Gateway\'s '
    '10 MB limit; upload the photo to the ingest bucket and send its s3_key."}'
)


def rest_api(scope: Construct, config: EnvironmentConfig) -> apigw.RestApi:
    """The API and its access logs in ``scope``, with no resource or method yet."""
    access_logs = logs.LogGroup(
        scope,
        "AccessLogs",
        retention=config.log_retention,
        removal_policy=config.removal_policy,
    )
    api = apigw.RestApi(
        scope,
        "RestApi",
        rest_api_name=f"facerec-{config.name}",
        description=API_DESCRIPTION,
        endpoint_types=[apigw.EndpointType.REGIONAL],
        # Execution logging needs the account-level CloudWatch role. It is an account
        # setting that dev and prod share when they share an account: never delete it
        # with a stack, or the other environment's API logging breaks.
        cloud_watch_role=True,
        cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
        deploy_options=apigw.StageOptions(
            stage_name=config.name,
            access_log_destination=apigw.LogGroupLogDestination(access_logs),
            access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                caller=True,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=True,
            ),
            logging_level=apigw.MethodLoggingLevel.ERROR,
            data_trace_enabled=False,  # bodies hold photos: never log them
            metrics_enabled=True,
            tracing_enabled=True,
            throttling_rate_limit=config.api_rate_limit,
            throttling_burst_limit=config.api_burst_limit,
        ),
    )
    api.add_gateway_response(
        "InvalidBody",
        type=apigw.ResponseType.BAD_REQUEST_BODY,
        status_code="400",
        templates={"application/json": INVALID_BODY_TEMPLATE},
    )
    api.add_gateway_response(
        "TooLarge",
        type=apigw.ResponseType.REQUEST_TOO_LARGE,
        status_code="413",
        templates={"application/json": TOO_LARGE_TEMPLATE},
    )
    acknowledge(
        api.deployment_stage,
        "AwsSolutions-APIG3",
        "Every request must be SigV4-signed by an IAM principal of the account and the "
        "stage is throttled; a WAF web ACL (about 6 USD a month at rest) is left to "
        "deployments that expose the API more widely.",
    )
    acknowledge(
        api,
        "AwsSolutions-IAM4",
        "API Gateway's account-level logging role needs the AWS-managed "
        "AmazonAPIGatewayPushToCloudWatchLogs policy: it writes to log groups that API "
        "Gateway names at run time.",
        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs",
    )
    return api
