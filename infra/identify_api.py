"""The identify API: the identify and forget functions behind a REST API Gateway,
``POST /identify`` and ``DELETE /people/{name}``, signed requests only (AWS_IAM). The identify
body is validated against a JSON-schema model, and the person's name must be in the path,
before either function is invoked.

Both come from docs/openapi.yaml (read at synth, ``OpenApi``): the model is its
``IdentifyRequest`` in draft 4, the required parameters are its parameters. Identify is served
by its ``live`` alias, with the config's provisioned concurrency.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.function_environment import FunctionDefaults
from infra.nag import acknowledge
from infra.rest_api import OpenApi, rest_api
from infra.stateful_stack import DataResources

IDENTIFY_PATH = "/identify"
PEOPLE_PATH = "/people/{name}"
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
    """The identify and forget functions, each granted only what it uses, and their routes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        defaults: FunctionDefaults,
        training: sfn.IStateMachine,
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

        # Forget a person: every trace of them, then a retraining.
        self.forget_person = defaults.create(
            self,
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
        # The person's faces (gsi1), the models (a scan), then every item naming the person's
        # keys (a parallel scan of the keys, deleted in batches).
        self.forget_person.table(
            data.catalog_table,
            *("GetItem", "Scan", "DeleteItem", "BatchWriteItem"),
            query_indexes=("gsi1",),
        )
        self.forget_person.table(
            data.face_index_table, "DeleteItem", query_indexes=("person-index",)
        )
        self.forget_person.rekognition(data.collection_arn, "DeleteFaces")
        self.forget_person.vectors(data.vector_index_arns, "DeleteVectors")
        self.forget_person.start(training)
        self.forget_person.function.add_environment(
            "TRAINING_STATE_MACHINE_ARN", training.state_machine_arn
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

        # DELETE /people/{name}: no body; the name (URL-encoded) is the path's last segment.
        self.people_validator = self.api.add_request_validator(
            "PeopleRequestValidator",
            request_validator_name="people-path",
            validate_request_body=False,
            validate_request_parameters=True,
        )
        self.forget_method = self.api.root.resource_for_path(PEOPLE_PATH).add_method(
            "DELETE",
            apigw.LambdaIntegration(self.forget_person.function, proxy=True),
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=self.people_validator,
            request_parameters=spec.request_parameters(PEOPLE_PATH, "delete"),
        )

        for method in (self.method, self.forget_method):
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "The API is for IAM principals (signed requests, AuthorizationType AWS_IAM), "
                "not for end users of a Cognito user pool.",
            )

    @property
    def url(self) -> str:
        return self.api.url_for_path(IDENTIFY_PATH)
