"""REST API Gateway: ``POST /identify`` and ``DELETE /people/{name}``, signed requests only
(AWS_IAM). The identify body is validated against a JSON-schema model, and the person's name
must be in the path, before either function is invoked.

The request model mirrors docs/contract.md (and docs/openapi.yaml): exactly one of ``image``
(base64) or ``s3_key`` (an ingest-bucket key), and optionally ``engines``.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge

ENGINES = ("facenet", "rekognition", "both")

API_DESCRIPTION = (
    "Face identification: POST /identify with a base64 photo (image) or an ingest-bucket key "
    "(s3_key) and engines: facenet, rekognition or both. Requests are SigV4-signed (IAM). "
    "Size limit: a Lambda invocation carries at most 6 MB, so a base64 image over 5 MiB "
    "(about 3.7 MB of photo) is answered 413 by the identify handler, and a body Lambda "
    "cannot receive at all is answered 413 by API Gateway. Larger photos: upload them to the "
    "ingest bucket and send their s3_key. DELETE /people/{name} forgets a person: their "
    "photos, faces and vectors, then retrains."
)

REQUEST_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="IdentifyRequest",
    type=apigw.JsonSchemaType.OBJECT,
    properties={
        "image": apigw.JsonSchema(
            type=apigw.JsonSchemaType.STRING,
            min_length=1,
            description="The photo's bytes (JPEG, PNG, ...), base64-encoded.",
        ),
        "s3_key": apigw.JsonSchema(
            type=apigw.JsonSchemaType.STRING,
            min_length=1,
            max_length=1024,
            description="The key of a photo in the ingest bucket.",
        ),
        "engines": apigw.JsonSchema(
            type=apigw.JsonSchemaType.STRING,
            enum=list(ENGINES),
            description="Which engines answer: facenet (the default), rekognition or both.",
        ),
    },
    additional_properties=False,
    one_of=[
        apigw.JsonSchema(required=["image"]),
        apigw.JsonSchema(required=["s3_key"]),
    ],
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


class IdentifyApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        identify_function: lambda_.IFunction,
        forget_function: lambda_.IFunction,
        config: EnvironmentConfig,
    ):
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        self.api = apigw.RestApi(
            self,
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
        self.api.add_gateway_response(
            "InvalidBody",
            type=apigw.ResponseType.BAD_REQUEST_BODY,
            status_code="400",
            templates={"application/json": INVALID_BODY_TEMPLATE},
        )
        self.api.add_gateway_response(
            "TooLarge",
            type=apigw.ResponseType.REQUEST_TOO_LARGE,
            status_code="413",
            templates={"application/json": TOO_LARGE_TEMPLATE},
        )

        self.request_model = self.api.add_model(
            "IdentifyRequest",
            model_name="IdentifyRequest",
            content_type="application/json",
            description="POST /identify request body (docs/openapi.yaml).",
            schema=REQUEST_SCHEMA,
        )
        self.validator = self.api.add_request_validator(
            "IdentifyRequestValidator",
            request_validator_name="identify-body",
            validate_request_body=True,
            validate_request_parameters=True,
        )
        identify = self.api.root.add_resource("identify")
        self.method = identify.add_method(
            "POST",
            apigw.LambdaIntegration(identify_function, proxy=True),
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=self.validator,
            request_models={"application/json": self.request_model},
        )

        # DELETE /people/{name}: no body; the name (URL-encoded) is the path's last segment.
        self.people_validator = self.api.add_request_validator(
            "PeopleRequestValidator",
            request_validator_name="people-path",
            validate_request_body=False,
            validate_request_parameters=True,
        )
        person = self.api.root.add_resource("people").add_resource("{name}")
        self.forget_method = person.add_method(
            "DELETE",
            apigw.LambdaIntegration(forget_function, proxy=True),
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=self.people_validator,
            request_parameters={"method.request.path.name": True},
        )

        acknowledge(
            self.api.deployment_stage,
            "AwsSolutions-APIG3",
            "Every request must be SigV4-signed by an IAM principal of the account and the "
            "stage is throttled; a WAF web ACL (about 6 USD a month at rest) is left to "
            "deployments that expose the API more widely.",
        )
        for method in (self.method, self.forget_method):
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "The API is for IAM principals (signed requests, AuthorizationType AWS_IAM), "
                "not for end users of a Cognito user pool.",
            )
        acknowledge(
            self.api,
            "AwsSolutions-IAM4",
            "API Gateway's account-level logging role needs the AWS-managed "
            "AmazonAPIGatewayPushToCloudWatchLogs policy: it writes to log groups that API "
            "Gateway names at run time.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs",
        )

    @property
    def url(self) -> str:
        return self.api.url_for_path("/identify")
