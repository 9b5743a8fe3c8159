"""The identify API: the identify and forget functions behind a REST API Gateway,
``POST /identify`` and ``DELETE /people/{name}``, signed requests only (AWS_IAM). The identify
body is validated against a JSON-schema model, and the person's name must be in the path,
before either function is invoked.

The request model mirrors docs/contract.md (and docs/openapi.yaml): exactly one of ``image``
(base64) or ``s3_key`` (an ingest-bucket key), and optionally ``engines``.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.function_environment import FunctionDefaults
from infra.nag import acknowledge
from infra.rest_api import rest_api
from infra.stateful_stack import DataResources

ENGINES = ("facenet", "rekognition", "both")

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
        self.identify_faces.read_table(data.catalog_table)
        self.identify_faces.read_table(data.face_index_table)
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
        self.forget_person.read_write_table(data.catalog_table)
        self.forget_person.read_write_table(data.face_index_table)
        self.forget_person.rekognition(data.collection_arn, "DeleteFaces")
        self.forget_person.vectors(data.vector_index_arns, "DeleteVectors")
        self.forget_person.start(training)
        self.forget_person.function.add_environment(
            "TRAINING_STATE_MACHINE_ARN", training.state_machine_arn
        )

        self.api = rest_api(self, config)
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
            apigw.LambdaIntegration(self.identify_faces.function, proxy=True),
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
            apigw.LambdaIntegration(self.forget_person.function, proxy=True),
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=self.people_validator,
            request_parameters={"method.request.path.name": True},
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
        return self.api.url_for_path("/identify")
