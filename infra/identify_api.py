"""The identify API: the identify and forget-request functions behind a REST API Gateway,
``POST /identify``, ``DELETE /people/{name}`` (202: the forget workflow started) and
``GET /forgets/{forget_id}`` (its status), signed requests only (AWS_IAM). The identify
body is validated against a JSON-schema model, and the person's name must be in the path,
before either function is invoked.

Both come from docs/openapi.yaml (read at synth, ``OpenApi``): the model is its
``IdentifyRequest`` in draft 4, the required parameters are its parameters. Identify is served
by its ``live`` alias, with the config's provisioned concurrency.
"""

from __future__ import annotations

from dataclasses import replace

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.forget_workflow import execution_arns
from infra.function_environment import FunctionDefaults
from infra.nag import acknowledge, finding
from infra.rest_api import OpenApi, rest_api
from infra.stateful_stack import DataResources

IDENTIFY_PATH = "/identify"
PEOPLE_PATH = "/people/{name}"
FORGETS_PATH = "/forgets/{forget_id}"
LIVE_ALIAS = "live"


def invalid_body_message(request: dict) -> str:
    """What API Gateway answers (400) to a body that fails ``request`` (the spec's
    IdentifyRequest), in words drawn from its limits and engine names."""
    image, s3_key, engines = (
        request["properties"][name] for name in ("image", "s3_key", "engines")
    )
    single, listed = engines["oneOf"]
    return (
        "The request body must be a JSON object with exactly one of image (the photo, base64, "
        f"at most {image['maxLength']} characters; upload a larger photo to the ingest bucket "
        f"and send its s3_key) and s3_key ({s3_key['minLength']} to {s3_key['maxLength']} "
        f"characters), and optionally engines: one of {', '.join(single['enum'])}, or a list "
        f"of {', '.join(listed['items']['enum'])}."
    )


class IdentifyApi(Construct):
    """The identify and forget-request functions, each granted only what it uses, and their
    routes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        defaults: FunctionDefaults,
        forget: sfn.StateMachine,
    ):
        super().__init__(scope, construct_id)
        config = defaults.config
        self.identify_faces = defaults.create(
            self,
            "IdentifyFacesFunction",
            "functions.identify_faces.handler.handler",
            config.identify_faces,
            "POST /identify: every face with its box and each engine's answer.",
        )
        self.identify_faces.read(data.ingest_bucket)
        self.identify_faces.read(data.models_bucket)
        self.identify_faces.table(data.catalog_table, "GetItem")  # the current model's pointer
        self.identify_faces.table(data.face_index_table, "BatchGetItem")  # FaceId -> person
        self.identify_faces.rekognition(data.collection_arn, "SearchFacesByImage")
        # QueryVectors with returnMetadata needs GetVectors too; GetVectors reads centroids.
        self.identify_faces.vectors(data.vector_index_arns, "QueryVectors", "GetVectors")

        # Forget a person: the request starts the forget workflow; its status is read back.
        self.forget_request = defaults.create(
            self,
            "ForgetRequestFunction",
            "functions.forget.request.handler",
            replace(config.forget, memory_mb=512, timeout=Duration.seconds(29)),
            "DELETE /people/{name} starts the forget workflow; GET /forgets/{id} its status.",
        )
        self.forget_request.start(forget)
        forgets = execution_arns(forget)
        self.forget_request.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[forgets])
        )
        acknowledge(
            self.forget_request.role,
            "AwsSolutions-IAM5",
            "DescribeExecution on the executions of the forget state machine only (each "
            "forget's id is its execution's name, made at run time).",
            f"Resource::{finding(self, forgets)}",
        )
        self.forget_request.function.add_environment(
            "FORGET_STATE_MACHINE_ARN", forget.state_machine_arn
        )

        # Published as a version behind an alias, so that provisioned concurrency keeps
        # environments initialised (handler.py loads the models at import there).
        self.identify_alias = lambda_.Alias(
            self,
            "IdentifyFacesLive",
            alias_name=LIVE_ALIAS,
            version=self.identify_faces.function.current_version,
            provisioned_concurrent_executions=config.identify_provisioned_concurrency or None,
        )

        spec = OpenApi.load()
        self.api = rest_api(self, config, invalid_body_message(spec.schema("IdentifyRequest")))
        self.request_model = self.api.add_model(
            "IdentifyRequest",
            model_name="IdentifyRequest",
            content_type="application/json",
            description="POST /identify request body (docs/openapi.yaml).",
            schema=spec.request_model(IDENTIFY_PATH, "post"),
        )
        self.validator = self.api.add_request_validator(
            "IdentifyRequestValidator",
            request_validator_name="identify-body",
            validate_request_body=True,
            validate_request_parameters=True,
        )
        self.method = self.api.root.resource_for_path(IDENTIFY_PATH).add_method(
            "POST",
            apigw.LambdaIntegration(self.identify_alias, proxy=True),
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=self.validator,
            # Every content type: a body API Gateway would pass on unchecked could be one
            # Lambda's 6 MB invocation limit refuses.
            request_models={"$default": self.request_model},
            request_parameters=spec.request_parameters(IDENTIFY_PATH, "post"),
        )

        # DELETE /people/{name} and GET /forgets/{forget_id}: no body; the path parameter
        # must be there (its form is checked by the function: API Gateway checks presence).
        self.people_validator = self.api.add_request_validator(
            "PeopleRequestValidator",
            request_validator_name="people-path",
            validate_request_body=False,
            validate_request_parameters=True,
        )
        forget_integration = apigw.LambdaIntegration(self.forget_request.function, proxy=True)
        self.forget_method = self.api.root.resource_for_path(PEOPLE_PATH).add_method(
            "DELETE",
            forget_integration,
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=self.people_validator,
            request_parameters=spec.request_parameters(PEOPLE_PATH, "delete"),
        )
        self.forget_status_method = self.api.root.resource_for_path(FORGETS_PATH).add_method(
            "GET",
            forget_integration,
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=self.people_validator,
            request_parameters=spec.request_parameters(FORGETS_PATH, "get"),
        )

        for method in (self.method, self.forget_method, self.forget_status_method):
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "The API is for IAM principals (signed requests, AuthorizationType AWS_IAM), "
                "not for end users of a Cognito user pool.",
            )

    @property
    def url(self) -> str:
        return self.api.url_for_path(IDENTIFY_PATH)
