"""The REST API itself: regional, its stage logged (never the bodies), traced and throttled
per environment, API Gateway's own answers in the contract's error shape, and the contract
(docs/openapi.yaml) read at synth as API Gateway validates requests: JSON Schema draft 4
models and required parameters. Infra reads the file; it never imports the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.face_function import REPO_ROOT
from infra.nag import acknowledge

OPENAPI = REPO_ROOT / "docs" / "openapi.yaml"

API_DESCRIPTION = (
    "Face identification: POST /identify with a base64 photo (image) or an ingest-bucket key "
    "(s3_key), and optionally the engines that answer (docs/openapi.yaml). Requests are "
    "SigV4-signed (IAM). Size limits: a Lambda invocation carries at most 6 MB, so the request "
    "model refuses (400) an image too large for it, and API Gateway answers 413 to a body over "
    "its own 10 MB. Larger photos: upload them to the ingest bucket and send their s3_key. "
    "DELETE /people/{name} forgets a person: their photos, faces and vectors, then retrains."
)

TOO_LARGE_TEMPLATE = json.dumps(
    {
        "code": "payload_too_large",
        "message": "The request body is over API Gateway's 10 MB limit; upload the photo to "
        "the ingest bucket and send its s3_key.",
    }
)

# OpenAPI 3.0 schema keywords that mean the same in JSON Schema draft 4, by their name in
# CDK's JsonSchema; any other keyword in a request schema fails the synth.
DRAFT4_KEYWORDS = {
    "type": "type",
    "description": "description",
    "default": "default",
    "enum": "enum",
    "properties": "properties",
    "required": "required",
    "additionalProperties": "additional_properties",
    "items": "items",
    "oneOf": "one_of",
    "minItems": "min_items",
    "maxItems": "max_items",
    "uniqueItems": "unique_items",
    "minLength": "min_length",
    "maxLength": "max_length",
}
# OpenAPI's own annotation, left out of the models: its "byte" (base64) is no draft-4 format;
# the function decodes the base64 itself (400 invalid_base64).
OPENAPI_ONLY = {"format"}
# OpenAPI's parameter locations -> API Gateway's names for them.
PARAMETER_LOCATIONS = {"path": "path", "query": "querystring", "header": "header"}


class OpenApi:
    """docs/openapi.yaml as API Gateway can check it before a function runs: an operation's
    JSON body as a draft-4 model, and its required parameters."""

    def __init__(self, document: dict):
        self.document = document

    @classmethod
    def load(cls, path: Path = OPENAPI) -> OpenApi:
        return cls(yaml.safe_load(path.read_text()))

    def schema(self, name: str) -> dict:
        """The component schema ``name`` as the file writes it."""
        return self.document["components"]["schemas"][name]

    def request_model(self, path: str, method: str) -> apigw.JsonSchema:
        """The ``application/json`` body of ``method path`` as a draft-4 JsonSchema: ``$ref``s
        inlined (the referenced name is the title), OpenAPI-only keywords left out."""
        body = self.document["paths"][path][method]["requestBody"]["content"]["application/json"]
        reference = body["schema"].get("$ref", "")
        return self._json_schema(
            body["schema"],
            schema=apigw.JsonSchemaVersion.DRAFT4,
            title=reference.rpartition("/")[2] or None,
        )

    def request_parameters(self, path: str, method: str) -> dict[str, bool]:
        """``method.request.<location>.<name>`` -> required, for each parameter of the
        operation (API Gateway checks only that a required one is present)."""
        return {
            f"method.request.{PARAMETER_LOCATIONS[parameter['in']]}.{parameter['name']}": bool(
                parameter.get("required")
            )
            for parameter in self.document["paths"][path][method].get("parameters", [])
        }

    def _json_schema(self, source: dict, **top) -> apigw.JsonSchema:
        if "$ref" in source:
            *_, name = source["$ref"].split("/")
            return self._json_schema(self.schema(name), **top)
        arguments = dict(top)
        for keyword, value in source.items():
            if keyword in OPENAPI_ONLY:
                continue
            if keyword not in DRAFT4_KEYWORDS:
                raise ValueError(f"{OPENAPI}: {keyword!r} has no draft-4 translation here")
            if keyword == "type":
                value = apigw.JsonSchemaType[value.upper()]
            elif keyword == "properties":
                value = {name: self._json_schema(item) for name, item in value.items()}
            elif keyword == "oneOf":
                value = [self._json_schema(item) for item in value]
            elif keyword in ("items", "additionalProperties") and isinstance(value, dict):
                value = self._json_schema(value)
            arguments[DRAFT4_KEYWORDS[keyword]] = value
        return apigw.JsonSchema(**arguments)


def rest_api(scope: Construct, config: EnvironmentConfig, invalid_body: str) -> apigw.RestApi:
    """The API and its access logs in ``scope``, with no resource or method yet; a body that
    fails its method's model is answered 400 with the message ``invalid_body``."""
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
        templates={
            "application/json": json.dumps({"code": "invalid_request", "message": invalid_body})
        },
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
