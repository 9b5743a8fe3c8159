"""The whole cloud chain, offline: photos put into the (moto) ingest bucket -> align_faces ->
embed_faces and index_faces on every crop (Rekognition through botocore's Stubber) -> the
training workflow as `cdk synth` writes it, executed by moto's Step Functions interpreter with
each Lambda task run in-process from its image command -> a published model and its comparison
report in the reports bucket -> /identify answering through the API handler.

The re-index workflow is not executed here: moto 5.2.5's ASL parser rejects its Distributed
Map (``ItemBatcher``); tests/handlers/test_reindex.py feeds the handler the batches the map
would send.

The handlers read the environment the synthesized template gives each function; moto holds
buckets and tables of those names. Lambda itself cannot run here (no Docker): a local invoker
stands in for `lambda:Invoke` and calls the handler named by the function's ImageConfig.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from moto import mock_aws

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # infra/ and functions/ import from the repo root
    sys.path.insert(0, str(REPO_ROOT))

from facerec.engines.classifier import holdout_split  # noqa: E402
from facerec.flows.train import gather  # noqa: E402
from facerec.storage.rekognition import external_image_id  # noqa: E402
from tests.support import (  # noqa: E402
    ENV,
    api_event,
    b64,
    cloud_environment,
    index_params,
    indexed_response,
    object_created_event,
    object_deleted_event,
    sample_photos,
    search_params,
    search_response,
)

pytestmark = pytest.mark.model

REGION, ACCOUNT = "us-east-1", "123456789012"
PHOTOS_PER_PERSON = 4
FIRST_TRAINING_STATE = "Begin"  # records the execution's name, then GatherEmbeddings


# ---- the synthesized template ---------------------------------------------------------------


@functools.cache
def synthesize() -> dict:
    """The service stack's template for env=dev, synthesized in-process (no Docker: the image
    assets are only staged)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")
    import aws_cdk as cdk

    from infra.application import build

    app = cdk.App(context={"env": "dev"}, outdir=tempfile.mkdtemp(prefix="cdk-out-"))
    _, service = build(app)
    return app.synth().get_stack_by_name(service.stack_name).template


class Template:
    """Resolves the intrinsics a definition or an environment holds into concrete values:
    a Lambda function's ARN names the function by its logical id."""

    def __init__(self, template: dict):
        self.resources = template["Resources"]

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"

    def resolve(self, value):
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(self.resolve(part)) for part in parts)
        if "Fn::Select" in value:
            index, items = value["Fn::Select"]
            return self.resolve(items)[int(index)]
        if "Fn::Split" in value:
            separator, text = value["Fn::Split"]
            return self.resolve(text).split(separator)
        if "Ref" in value:
            return self._ref(value["Ref"])
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            resource = self.resources[logical_id]
            if resource["Type"] == "AWS::Lambda::Function" and attribute == "Arn":
                return self.function_arn(logical_id)
            return f"{logical_id.lower()}-{attribute.lower()}"
        return {key: self.resolve(item) for key, item in value.items()}

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
        }
        return pseudo.get(name, name.lower())

    def functions(self) -> dict[str, dict]:
        return {
            logical_id: resource["Properties"]
            for logical_id, resource in self.resources.items()
            if resource["Type"] == "AWS::Lambda::Function"
        }

    def handler_names(self) -> dict[str, str]:
        """Function logical id -> the handler its image runs (``module.function``)."""
        return {
            logical_id: properties["ImageConfig"]["Command"][0]
            for logical_id, properties in self.functions().items()
            if "ImageConfig" in properties
        }

    def environment(self) -> dict[str, str]:
        """The environment the face functions get (the same for all of them)."""
        environments = [
            self.resolve(properties["Environment"]["Variables"])
            for logical_id, properties in self.functions().items()
            if logical_id in self.handler_names()
        ]
        first = environments[0]
        shared = {
            name for name in first if all(env.get(name) == first[name] for env in environments)
        }
        assert {"INGEST_BUCKET", "CATALOG_TABLE", "COLLECTION_ID"} <= shared
        return {name: first[name] for name in shared}

    def state_machine(self, first_state: str) -> dict:
        """The definition (resolved JSON) of the state machine that starts at ``first_state``."""
        for resource in self.resources.values():
            if resource["Type"] != "AWS::StepFunctions::StateMachine":
                continue
            properties = resource["Properties"]
            body = properties.get("DefinitionString") or properties.get("Definition")
            definition = self.resolve(body)
            definition = json.loads(definition) if isinstance(definition, str) else definition
            if definition.get("StartAt") == first_state:
                return definition
        raise AssertionError(f"no state machine starts at {first_state}")


class LocalLambda:
    """Stands in for the Lambda service when Step Functions invokes a function: runs the
    handler the function's image would run, in this process, and answers as Lambda does
    (an unhandled error comes back as FunctionError with errorType and errorMessage)."""

    def __init__(self, handlers: dict[str, str]):
        self.handlers = handlers
        self.calls: list[str] = []

    def invoke(self, FunctionName: str, Payload: bytes | None = None, **_) -> dict:
        logical_id = FunctionName.split(":")[6]
        module_name, function_name = self.handlers[logical_id].rsplit(".", 1)
        handler = getattr(importlib.import_module(module_name), function_name)
        self.calls.append(module_name)
        event = json.loads(Payload or b"{}")
        response = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        try:
            result = handler(event, None)
        except Exception as error:  # Lambda reports any unhandled error the same way
            result = {"errorType": type(error).__name__, "errorMessage": str(error)}
            response["FunctionError"] = "Unhandled"
        response["Payload"] = io.BytesIO(json.dumps(result).encode())
        return response


def local_lambda_invoker(invoker: LocalLambda):
    """Patch moto's Step Functions interpreter to call ``invoker`` for every Lambda task."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    original = lambda_eval_utils.boto_client_for

    def client_for(region: str, service: str, state_credentials=None):
        if service == "lambda":
            return invoker
        return original(region=region, service=service, state_credentials=state_credentials)

    return mock.patch.object(lambda_eval_utils, "boto_client_for", client_for)


# ---- the test ----------------------------------------------------------------------------


def create_resources(session, env: dict[str, str]) -> None:
    from tests import support

    names = {
        **{key: env[key] for key in support.ENV if key.endswith(("_BUCKET", "_TABLE"))},
    }
    with mock.patch.dict(support.ENV, names):
        support.create_resources(session)


def run_execution(
    sfn, definition: dict, payload: dict, name: str = "facerec-dev-training", timeout: float = 600
) -> dict:
    machine = sfn.create_state_machine(
        name=name,
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/facerec-training",
    )["stateMachineArn"]
    # AWS always names an execution (the training lock's owner); moto needs it given.
    execution = sfn.start_execution(
        stateMachineArn=machine, name=f"{name}-run", input=json.dumps(payload)
    )
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.5)


def test_photos_to_identify_through_the_synthesized_workflow(assets, analyser, sample_set):
    template = Template(synthesize())
    env = template.environment()
    definition = template.state_machine(FIRST_TRAINING_STATE)
    invoker = LocalLambda(template.handler_names())

    from functions import services as services_module
    from functions.settings import Settings

    environment = {
        **env,
        "MODELS_DIR": str(assets.models),  # baked into the image at /opt/facerec/models in AWS
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    config = {"stepfunctions": {"execute_state_machine": True}}
    with (
        mock.patch.dict(os.environ, environment),
        mock_aws(config=config),
        local_lambda_invoker(invoker),
    ):
        session = boto3.session.Session(region_name=REGION)
        create_resources(session, env)
        app = services_module.Services(Settings.from_env(), session=session, analyser=analyser)
        services_module.install(app)
        try:
            with Stubber(app.rekognition) as stubber:
                run_chain(app, session, stubber, definition, invoker, sample_set)
        finally:
            services_module.install(None)


def run_chain(app, session, stubber, definition, invoker, sample_set) -> None:
    from functions.align_faces.handler import handler as align
    from functions.embed_faces.handler import handler as embed
    from functions.identify_faces.handler import handler as identify
    from functions.index_faces.handler import handler as index

    s3 = session.client("s3")
    settings = app.settings

    def created(bucket: str, key: str) -> dict:
        head = s3.head_object(Bucket=bucket, Key=key)
        return object_created_event(bucket, key, head["ETag"], head["ContentLength"])

    # 1. enrolment: photos uploaded to the ingest bucket; S3 -> EventBridge -> align_faces
    photos = sample_photos(sample_set, "train", PHOTOS_PER_PERSON)
    for photo in photos:
        key = f"{photo.parent.name}/{photo.name}"
        s3.put_object(Bucket=settings.ingest_bucket, Key=key, Body=photo.read_bytes())
        event = created(settings.ingest_bucket, key)
        assert align(event)["status"] in ("enrolled", "no_face")
        assert align(event)["status"] == "duplicate_event"

    # 2. every crop written fires embed_faces and index_faces (twice: at-least-once)
    labelled = {face.crop_key: face for face in app.catalog.faces()}
    crops = sorted(
        item["Key"] for item in s3.list_objects_v2(Bucket=settings.faces_bucket)["Contents"]
    )
    face_ids = {}
    for number, key in enumerate(crops):
        event = created(settings.faces_bucket, key)
        assert embed(event)["status"] == "unchanged"  # align embedded it already
        if key in labelled:
            face_ids[key] = f"face-{number:04d}"
            external = external_image_id(key)
            stubber.add_response(
                "index_faces",
                indexed_response(face_ids[key], external),
                index_params(external, settings.collection_id),
            )
        assert index(event)["status"] == ("indexed" if key in labelled else "skipped")
        assert index(event)["status"] == ("duplicate" if key in labelled else "skipped")
    stubber.assert_no_pending_responses()
    rows = session.client("dynamodb").scan(TableName=settings.face_index_table)["Items"]
    assert sorted(row["face_id"]["S"] for row in rows) == sorted(face_ids.values())

    # 3. Rekognition's answers for the held-out crops (the split is seeded: known in advance):
    #    the crop's own FaceId first (it was indexed too, and must be skipped), then the
    #    best training face of the right person; evaluate_rekognition searches them in the
    #    catalog's order, once: the report reads the runs the evaluation stored
    training_set = gather(app.catalog, settings.crop_method)
    _, test_index = holdout_split(training_set.labels, 0.25, 7)
    held_out = {str(training_set.crop_keys[i]) for i in test_index}
    for key in [face.crop_key for face in app.catalog.faces() if face.crop_key in held_out]:
        person = key.split("/")[0]
        same = next(
            other for other in face_ids if other.split("/")[0] == person and other not in held_out
        )
        stubber.add_response(
            "search_faces_by_image",
            search_response([(face_ids[key], 99.99), (face_ids[same], 98.5)]),
            search_params(1 + len(held_out), settings.collection_id),
        )
    stubber.add_response(
        "describe_collection",
        {"FaceCount": len(face_ids), "FaceModelVersion": "7.0"},
        {"CollectionId": settings.collection_id},
    )

    # 4. the training workflow as synthesized, executed end to end
    sfn = session.client("stepfunctions")
    described = run_execution(sfn, definition, {"seed": 7, "test_size": 0.25})
    assert described["status"] == "SUCCEEDED", described
    assert invoker.calls == [
        f"functions.training.{step}"
        for step in ("gather", "fit", "evaluate", "evaluate_rekognition", "publish", "write_report")
    ]
    stubber.assert_no_pending_responses()
    output = json.loads(described["output"])
    assert output["promoted"] is True
    model_id = output["model_id"]
    assert app.catalog.current_model().model_id == model_id
    report = json.loads(
        s3.get_object(Bucket=settings.reports_bucket, Key=output["report_key"])["Body"].read()
    )
    assert report["engines"]["facenet"]["held_out_faces"] == len(held_out)
    assert report["engines"]["facenet"]["accuracy_all"] >= 0.75
    assert report["engines"]["rekognition"]["accuracy_all"] == 1.0
    assert report["engines"]["rekognition"]["describe"]["excluded_face_ids"] == len(held_out)
    # the comparison report of both engines, written after publishing
    assert output["report_html_key"] == f"{model_id}/comparison.html"
    assert output["report_json_key"] == f"{model_id}/comparison.json"
    reports = {
        item["Key"] for item in s3.list_objects_v2(Bucket=settings.reports_bucket)["Contents"]
    }
    assert {output["report_html_key"], output["report_json_key"]} <= reports
    page = s3.get_object(Bucket=settings.reports_bucket, Key=output["report_html_key"])
    assert model_id in page["Body"].read().decode()
    numbers = json.loads(
        s3.get_object(Bucket=settings.reports_bucket, Key=output["report_json_key"])["Body"].read()
    )
    assert numbers["model"]["test_faces"] == len(numbers["faces"]) == len(held_out)
    assert numbers["publication"]["promoted"] is True
    assert numbers["engines"]["facenet"]["ran"] and numbers["engines"]["rekognition"]["ran"]
    assert numbers["engines"]["rekognition"]["accuracy_all"] == 1.0
    models = s3.list_objects_v2(Bucket=settings.models_bucket)["Contents"]
    published = app.catalog.current_model().artifact_key  # named by its content
    assert published == output["model_key"] == f"{model_id}/model-{output['model_sha256'][:16]}.npz"
    assert {published, f"{model_id}/metadata.json"} <= {item["Key"] for item in models}

    # 5. /identify through the API handler, with the published model
    correct = 0
    val = sample_photos(sample_set, "val", 1)
    for photo in val:
        response = identify(api_event(json.dumps({"image": b64(photo.read_bytes())})))
        assert response["statusCode"] == 200
        body = json.loads(response["body"])
        assert body["model_id"] == model_id
        correct += body["faces"][0]["facenet"]["person"] == photo.parent.name
    assert correct >= len(val) - 1


def test_a_bad_photo_replacing_an_enrolled_one_keeps_the_upload_and_clears_its_faces(
    assets, analyser, sample_set
):
    """A user re-uploads an enrolled photo's key with bytes that are not a photo. The chain
    keeps the upload as it is, quarantines it with its reason, and removes what came from
    the old photo: its crop (align), then, from the crop's "Object Deleted" event, its
    vector and its person's centroid (embed) and its FaceId and row (index)."""
    from functions.align_faces.handler import handler as align
    from functions.embed_faces.handler import handler as embed
    from functions.index_faces.handler import handler as index

    kept, replaced = sample_photos(sample_set, "train", 2)[:2]
    with cloud_environment(analyser, assets.models) as cloud:
        ingest, faces = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"]
        face_ids = {}
        for number, photo in enumerate((kept, replaced)):
            key = f"ben_afflek/{photo.name}"
            assert align(cloud.put(ingest, key, photo.read_bytes()))["status"] == "enrolled"
            crop = f"ben_afflek/{photo.stem}-0.png"
            event = cloud.put(faces, crop, cloud.get(faces, crop))
            assert embed(event)["vectors"] == "stored"
            face_ids[crop] = f"face-{number}"
            external = external_image_id(crop)
            cloud.stubber.add_response(
                "index_faces", indexed_response(face_ids[crop], external), index_params(external)
            )
            assert index(event)["status"] == "indexed"
        old_crop = f"ben_afflek/{replaced.stem}-0.png"
        kept_crop = f"ben_afflek/{kept.stem}-0.png"
        assert set(cloud.vectors(ENV["FACE_VECTOR_INDEX"])) == {old_crop, kept_crop}

        key = f"ben_afflek/{replaced.name}"
        result = align(cloud.put(ingest, key, b"not a photo at all"))

        assert (result["status"], result["code"]) == ("rejected", "not_an_image")
        assert cloud.get(ingest, key) == b"not a photo at all"  # the upload, untouched
        digest = hashlib.sha256(b"not a photo at all").hexdigest()
        assert (
            cloud.get(ENV["QUARANTINE_BUCKET"], f"ben_afflek/{digest}.bin") == b"not a photo at all"
        )
        reason = json.loads(cloud.get(ENV["QUARANTINE_BUCKET"], f"ben_afflek/{digest}.json"))
        assert (reason["key"], reason["code"]) == (key, "not_an_image")
        assert cloud.keys(faces) == [kept_crop]  # the old photo's crop is deleted
        assert [face.crop_key for face in cloud.app.catalog.faces("ben_afflek")] == [kept_crop]
        assert cloud.app.catalog.get_photo(key).status == "rejected"

        # S3 announces the deleted crop to the embed and index functions
        deleted = object_deleted_event(faces, old_crop)
        cloud.stubber.add_response(
            "delete_faces",
            {"DeletedFaces": [face_ids[old_crop]]},
            {"CollectionId": ENV["COLLECTION_ID"], "FaceIds": [face_ids[old_crop]]},
        )
        assert embed(deleted)["vectors"] == "deleted"
        assert index(deleted)["status"] == "deleted"
        cloud.stubber.assert_no_pending_responses()

        vectors = cloud.vectors(ENV["FACE_VECTOR_INDEX"])
        assert set(vectors) == {kept_crop}
        (centroid,) = cloud.vectors(ENV["CENTROID_VECTOR_INDEX"]).values()
        np.testing.assert_allclose(centroid[1], vectors[kept_crop][1], atol=1e-6)
        rows = cloud.items(ENV["FACE_INDEX_TABLE"])
        assert [row["face_id"]["S"] for row in rows] == [face_ids[kept_crop]]
        collection = ENV["COLLECTION_ID"]
        assert cloud.app.catalog.indexing_state(collection, old_crop) is None
        assert cloud.app.catalog.indexing_state(collection, kept_crop)["state"] == "indexed"
