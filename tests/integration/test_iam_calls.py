"""Every AWS call of the enrolment chain, identify, the training steps, a re-index batch and
forget, checked against the calling function's role in the synthesized template (tests/iam.py):
a call its role does not allow fails with the function, the action and the resource.

The handlers run with the environment the template gives the functions, against moto (S3,
DynamoDB, S3 Vectors) and botocore's Stubber (Rekognition; Step Functions and S3 Vectors'
QueryVectors where moto has none), so every bucket, table, collection and index a call names
is the one the role names."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import uuid
from unittest import mock

import numpy as np
import pytest
from botocore.stub import ANY, Stubber
from PIL import Image

from facerec.engines.classifier import OneVsRestSVM
from facerec.flows.evaluate import sample_faces
from facerec.flows.train import load_model
from facerec.storage.rekognition import external_image_id
from facerec.vision.images import decode_image, encode_png
from tests import support
from tests.handlers.test_training_steps import held_out_crops
from tests.iam import (
    CallChecker,
    Deployment,
    Request,
    function_policies,
    table_keys,
    with_state_machine_arns,
)
from tests.infra.infra_support import ACCOUNT, REGION, definition_of, resolve, synthesize
from tests.support import (
    api_event,
    b64,
    cloud_environment,
    copy_gallery,
    deploy_gallery,
    index_params,
    indexed_response,
    object_deleted_event,
    run_workflow,
    sample_photos,
    search_params,
    search_response,
)

pytestmark = pytest.mark.model

ALIGN = "functions.align_faces.handler.handler"
EMBED = "functions.embed_faces.handler.handler"
INDEX = "functions.index_faces.handler.handler"
IDENTIFY = "functions.identify_faces.handler.handler"
REINDEX = "functions.reindex.handler.handler"
FORGET = "functions.forget.request.handler"
FORGET_GROUP_FACES = "functions.forget.group_faces.handler"
FORGET_PERSON = "functions.forget.person.handler"
FORGET_RETRAIN = "functions.forget.retrain.handler"
GATHER = "functions.training.gather.handler"
EVALUATE_REKOGNITION = "functions.training.evaluate_rekognition.handler"


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """The app for env=dev, synthesized as `cdk synth` does (cdk-nag included)."""
    return synthesize("dev", tmp_path_factory.mktemp("cdk-iam"))


def function_environment(template: dict) -> dict[str, str]:
    """Every variable the template gives the functions (each has one value everywhere)."""
    environment: dict[str, str] = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            for name, value in resolve(resource["Properties"]["Environment"]["Variables"]).items():
                assert environment.setdefault(name, value) == value, name
    return environment


@pytest.fixture
def cloud(synthesized, assets, analyser):
    """The functions' Services against moto and the Stubber, with the template's names; the
    checker records every call they make from here on."""
    where = Deployment(REGION, ACCOUNT, table_keys(synthesized.data_json))
    template = with_state_machine_arns(synthesized.service_json, where)
    environment = function_environment(template)
    names = {name: environment[name] for name in support.ENV}
    machines = {  # the forget functions' only
        name: environment[name]
        for name in ("TRAINING_STATE_MACHINE_ARN", "FORGET_STATE_MACHINE_ARN")
    }
    with (
        mock.patch.dict(support.ENV, {**names, **machines}),
        cloud_environment(analyser, assets.models) as cloud,
    ):
        cloud.checker = CallChecker(function_policies(template), where)
        cloud.handlers_by_arn = {
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}": resource["Properties"][
                "ImageConfig"
            ]["Command"][0]
            for logical_id, resource in template["Resources"].items()
            if resource["Type"] == "AWS::Lambda::Function"
        }
        cloud.checker.attach(cloud.session)  # every client Services creates from now on
        cloud.checker.attach(cloud.app.rekognition)  # created for the Stubber already
        yield cloud


def used(cloud, handler: str, service: str) -> set[str]:
    """The ``service`` actions ``handler``'s calls needed."""
    return {r.action for r in cloud.checker.requests(handler) if r.action.startswith(service)}


def table_grants(cloud, handler: str) -> set[tuple[str, str]]:
    """(action, resource) of every DynamoDB action ``handler``'s role allows."""
    return {
        (action, resource)
        for statement in cloud.checker.policies[handler].statements
        for action in statement.actions
        if action.startswith("dynamodb:")
        for resource in statement.resources
    }


def table_uses(cloud, handler: str) -> set[tuple[str, str]]:
    """(action, resource) of every DynamoDB request ``handler``'s calls needed."""
    return {
        (r.action, r.resource)
        for r in cloud.checker.requests(handler)
        if r.action.startswith("dynamodb:")
    }


def test_the_enrolment_chain_calls_only_what_its_roles_allow(cloud, sample_set):
    from functions.align_faces.handler import handler as align
    from functions.embed_faces.handler import handler as embed
    from functions.index_faces.handler import handler as index

    ingest, faces, collection = (
        support.ENV[n] for n in ("INGEST_BUCKET", "FACES_BUCKET", "COLLECTION_ID")
    )
    photos = sample_photos(sample_set, "train", 2)[:3]
    for photo in photos:
        event = cloud.put(ingest, f"{photo.parent.name}/{photo.name}", photo.read_bytes())
        with cloud.checker.acting_as(ALIGN):
            assert align(event)["status"] == "enrolled"
            assert align(event)["status"] == "duplicate_event"  # at-least-once delivery
    crops = cloud.created_events(faces)
    face_ids = {}
    for number, (key, event) in enumerate(zip(cloud.keys(faces), crops, strict=True)):
        with cloud.checker.acting_as(EMBED):
            assert embed(event)["vectors"] == "stored"
        face_ids[key] = f"face-{number}"
        external = external_image_id(key)
        cloud.stubber.add_response(
            "index_faces",
            indexed_response(face_ids[key], external),
            index_params(external, collection),
        )
        with cloud.checker.acting_as(INDEX):
            assert index(event)["status"] == "indexed"
            assert index(event)["status"] == "duplicate"
    # new FaceNet weights: a crop embedded by the old ones is embedded again
    with (
        mock.patch.object(cloud.app.catalog, "embedding_model", "facenet@new-weights"),
        cloud.checker.acting_as(EMBED),
    ):
        assert embed(crops[0])["status"] == "embedded"

    # a bad photo replaces an enrolled one: its crop goes, and the crop's deletion is announced
    replaced = photos[1]
    old_crop = f"{replaced.parent.name}/{replaced.stem}-0.png"
    event = cloud.put(ingest, f"{replaced.parent.name}/{replaced.name}", b"not a photo")
    with cloud.checker.acting_as(ALIGN):
        assert align(event)["status"] == "rejected"
    assert old_crop not in cloud.keys(faces)
    deleted = object_deleted_event(faces, old_crop)
    cloud.stubber.add_response(
        "delete_faces",
        {"DeletedFaces": [face_ids[old_crop]]},
        {"CollectionId": collection, "FaceIds": [face_ids[old_crop]]},
    )
    with cloud.checker.acting_as(EMBED):
        assert embed(deleted)["vectors"] == "deleted"
    with cloud.checker.acting_as(INDEX):
        assert index(deleted)["status"] == "deleted"
    cloud.stubber.assert_no_pending_responses()

    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= used(cloud, ALIGN, "s3:")
    assert {"s3vectors:PutVectors", "s3vectors:DeleteVectors"} <= used(cloud, EMBED, "s3v")
    for handler in (ALIGN, EMBED, INDEX):  # exactly the table actions they use, no more
        assert table_grants(cloud, handler) == table_uses(cloud, handler), handler
    assert used(cloud, INDEX, "rekognition:") == {
        "rekognition:IndexFaces",
        "rekognition:DeleteFaces",
    }


@pytest.fixture
def deployed(cloud, enrolled):
    """The session's enrolled gallery and model in the cloud stores: catalog, crops, photos,
    face index rows, vectors and the current model, as the chain and training leave them.
    Returns crop key -> FaceId."""
    local, _, model = enrolled
    return deploy_gallery(cloud, local, model)


def test_identify_calls_only_what_its_role_allows(cloud, deployed, sample_set):
    from functions.identify_faces.handler import handler as identify

    face_ids = deployed
    photo = sample_photos(sample_set, "val", 1)[0]
    person = photo.parent.name
    crop = next(key for key in face_ids if key.startswith(f"{person}/"))
    centroid = np.ones(128, np.float32) / np.sqrt(128)
    cloud.stubber.add_response(
        "search_faces_by_image",
        search_response([(face_ids[crop], 99.5)]),
        search_params(collection_id=support.ENV["COLLECTION_ID"]),
    )
    with Stubber(cloud.app.s3vectors) as vectors:  # moto has no QueryVectors
        vectors.add_response(
            "query_vectors",
            {
                "vectors": [{"key": crop, "distance": 0.1, "metadata": {"person": person}}],
                "distanceMetric": "cosine",
            },
        )
        vectors.add_response(
            "get_vectors", {"vectors": [{"key": person, "data": {"float32": centroid.tolist()}}]}
        )
        vectors.add_response(
            "query_vectors",
            {"vectors": [{"key": "someone", "distance": 0.6}], "distanceMetric": "cosine"},
        )
        with cloud.checker.acting_as(IDENTIFY):
            request = {"image": b64(photo.read_bytes()), "engines": "all"}
            response = identify(api_event(json.dumps(request)))
        vectors.assert_no_pending_responses()
    cloud.stubber.assert_no_pending_responses()
    assert response["statusCode"] == 200, response["body"]
    face = json.loads(response["body"])["faces"][0]
    assert {"facenet", "nearest", "rekognition", "hybrid"} <= set(face)
    assert face["rekognition"]["person"] == person

    cloud.s3.put_object(Bucket=support.ENV["INGEST_BUCKET"], Key="x/probe.jpg", Body=b"")
    with cloud.checker.acting_as(IDENTIFY):
        missing = identify(api_event(json.dumps({"s3_key": "x/missing.jpg"})))
        empty = identify(api_event(json.dumps({"s3_key": "x/probe.jpg"})))
    assert (missing["statusCode"], empty["statusCode"]) == (404, 400)
    assert {"s3vectors:QueryVectors", "s3vectors:GetVectors"} == used(cloud, IDENTIFY, "s3v")
    assert "s3:ListBucket" in used(cloud, IDENTIFY, "s3:")  # the missing key's 404


def test_the_training_steps_call_only_what_their_roles_allow(cloud, deployed):
    from functions.training import (
        evaluate,
        evaluate_rekognition,
        fit,
        gather,
        publish,
        write_report,
    )

    face_ids = deployed
    cloud.app.catalog.delete_model(cloud.app.catalog.current_model().model_id)  # a first one
    # as the workflow's Begin state passes it: the execution's name and the lock's lease
    state = {"seed": 42, "test_size": 0.25, "execution": {"name": "run", "lease_seconds": 600}}
    for step in (gather, fit, evaluate):  # each as its own function
        with cloud.checker.acting_as(f"{step.__name__}.handler"):
            state = step.handler(state)
    face_id = next(iter(face_ids.values()))
    for _ in range(state["test_faces"]):
        cloud.stubber.add_response("search_faces_by_image", search_response([(face_id, 99.0)]))
    cloud.stubber.add_response(
        "describe_collection",
        {"FaceCount": len(face_ids), "FaceModelVersion": "7.0"},
        {"CollectionId": support.ENV["COLLECTION_ID"]},
    )
    for step in (evaluate_rekognition, publish, write_report):
        with cloud.checker.acting_as(f"{step.__name__}.handler"):
            state = step.handler(state)
    cloud.stubber.assert_no_pending_responses()
    assert state["promoted"] is True
    assert cloud.app.catalog.current_model().model_id == state["model_id"]
    assert {state["report_html_key"], state["report_json_key"]} <= set(
        cloud.keys(support.ENV["REPORTS_BUCKET"])
    )


def test_a_reindex_batch_calls_only_what_its_role_allows(cloud, sample_set):
    from functions.align_faces.handler import handler as align
    from functions.reindex.handler import handler as reindex

    ingest, faces = support.ENV["INGEST_BUCKET"], support.ENV["FACES_BUCKET"]
    for photo in sample_photos(sample_set, "train", 1)[:2]:
        align(cloud.put(ingest, f"{photo.parent.name}/{photo.name}", photo.read_bytes()))
    collection = support.ENV["COLLECTION_ID"]

    def listed() -> list[dict]:
        """The items the map's ItemReader (ListObjectsV2) hands the batch."""
        page = cloud.s3.list_objects_v2(Bucket=faces)["Contents"]
        return [{key: item[key] for key in ("Key", "ETag", "Size")} for item in page]

    def indexes(key: str) -> str:
        face_id = f"face-{uuid.uuid4()}"
        external = external_image_id(key)
        cloud.stubber.add_response(
            "index_faces", indexed_response(face_id, external), index_params(external, collection)
        )
        return face_id

    items = listed()
    face_ids = {item["Key"]: indexes(item["Key"]) for item in items}
    with cloud.checker.acting_as(REINDEX):
        first = reindex({"Items": items, "BatchInput": {}})
        again = reindex({"Items": items, "BatchInput": {}})  # redriven: not indexed twice
    assert first["processed"] == again["processed"] == len(items) == 2

    # a newer version of a crop: its older FaceId leaves the collection and the face index
    key = items[0]["Key"]
    crop = np.array(Image.open(io.BytesIO(cloud.get(faces, key))))
    crop[0, 0] = 255 - crop[0, 0]
    newer = io.BytesIO()
    Image.fromarray(crop).save(newer, format="PNG")
    cloud.s3.put_object(Bucket=faces, Key=key, Body=newer.getvalue())
    cloud.stubber.add_response(
        "delete_faces",
        {"DeletedFaces": [face_ids[key]]},
        {"CollectionId": collection, "FaceIds": [face_ids[key]]},
    )
    indexes(key)
    with cloud.checker.acting_as(REINDEX):
        assert reindex({"Items": listed()[:1], "BatchInput": {}})["processed"] == 1
    cloud.stubber.assert_no_pending_responses()
    assert table_grants(cloud, REINDEX) == table_uses(cloud, REINDEX)


def test_the_forget_request_and_workflow_call_only_what_their_roles_allow(
    cloud, deployed, synthesized
):
    """DELETE and GET as the request function; the workflow's steps run from the synthesized
    forget state machine, each as the function its Task invokes."""
    from functions.forget.request import handler as request

    face_ids = deployed
    madonna = sorted(face_id for key, face_id in face_ids.items() if key.startswith("madonna/"))
    forget_machine = support.ENV["FORGET_STATE_MACHINE_ARN"]
    training = support.ENV["TRAINING_STATE_MACHINE_ARN"]
    executions = training.replace(":stateMachine:", ":execution:")
    assert cloud.app.catalog.lock_training("old-run", 600) is None
    with Stubber(cloud.app.stepfunctions) as stepfunctions:
        stepfunctions.add_response(
            "start_execution",
            {"executionArn": f"{forget_machine}:x", "startDate": "2026-12-03T00:00:00Z"},
            {"stateMachineArn": forget_machine, "name": ANY, "input": ANY},
        )
        with cloud.checker.acting_as(FORGET):
            accepted = request(api_event_for("DELETE", "/people/{name}", name="madonna"))
        assert accepted["statusCode"] == 202, accepted["body"]

        cloud.stubber.add_response(
            "delete_faces",
            {"DeletedFaces": madonna},
            {"CollectionId": support.ENV["COLLECTION_ID"], "FaceIds": madonna},
        )
        stepfunctions.add_response(
            "list_executions",
            {
                "executions": [
                    {
                        "executionArn": f"{executions}:old-run",
                        "stateMachineArn": training,
                        "name": "old-run",
                        "status": "RUNNING",
                        "startDate": "2026-12-03T00:00:00Z",
                    }
                ]
            },
            {"stateMachineArn": training, "statusFilter": "RUNNING"},
        )
        stepfunctions.add_response(
            "stop_execution",
            {"stopDate": "2026-12-03T00:00:01Z"},
            {"executionArn": f"{executions}:old-run", "error": ANY, "cause": ANY},
        )
        stepfunctions.add_response(
            "start_execution",
            {"executionArn": f"{executions}:new", "startDate": "2026-12-03T00:00:02Z"},
            {"stateMachineArn": training, "input": ANY},
        )
        status, output = run_workflow(
            state_machine_definition(synthesized, "forget"),
            {"person": "madonna"},
            lambda arn, state: as_function(cloud, arn, state),
        )
        assert status == "SUCCEEDED", output
        forget_id = json.loads(accepted["body"])["forget_id"]
        stepfunctions.add_response(
            "describe_execution",
            {
                "executionArn": f"{forget_machine.replace(':stateMachine:', ':execution:')}:x",
                "stateMachineArn": forget_machine,
                "status": "SUCCEEDED",
                "startDate": "2026-12-03T00:00:00Z",
                "input": '{"person": "madonna"}',
                "output": json.dumps(output),
            },
            {"executionArn": ANY},
        )
        with cloud.checker.acting_as(FORGET):
            answer = request(api_event_for("GET", "/forgets/{forget_id}", forget_id=forget_id))
        stepfunctions.assert_no_pending_responses()
    cloud.stubber.assert_no_pending_responses()
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["status"] == "SUCCEEDED"
    assert output["deleted"]["rekognition_faces"] == len(madonna)
    assert output["deleted"]["stopped_trainings"] == ["old-run"]
    # the three steps ran, each as its own function, and none scanned the catalog
    for step in (FORGET_GROUP_FACES, FORGET_PERSON, FORGET_RETRAIN):
        assert cloud.checker.requests(step), step
        assert not any(r.action == "dynamodb:Scan" for r in cloud.checker.requests(step))
    assert Request("states:StartExecution", forget_machine) in cloud.checker.requests(FORGET)
    assert Request("states:StopExecution", f"{executions}:old-run") in cloud.checker.requests(
        FORGET_RETRAIN
    )


def test_the_training_machine_runs_one_vs_rest_on_a_sample_of_searches(
    cloud, enrolled, synthesized
):
    """The synthesized training state machine end to end, scaled down: the sample set's 5
    people (no model yet), the one-vs-rest SVMs forced, Rekognition searched for a seeded
    sample of 10 of the held-out faces, each step as the function its Task invokes."""
    local, _, _ = enrolled
    face_ids = copy_gallery(cloud, local)  # crop key -> FaceId
    searched_faces = 10
    cloud.app.settings = dataclasses.replace(
        cloud.app.settings, rekognition_evaluation_faces=searched_faces, report_timed_photos=3
    )
    definition = state_machine_definition(synthesized, "training")
    steps = [
        cloud.handlers_by_arn[state["Resource"]]
        for state in definition["States"].values()
        if state.get("Resource") in cloud.handlers_by_arn
    ]
    assert len(steps) == 6
    held_out, searched = [], []

    def invoke(arn: str, state: dict) -> dict:
        """The Task's function; Rekognition's answers are queued once the split is known."""
        if cloud.handlers_by_arn.get(arn) == EVALUATE_REKOGNITION:
            models = cloud.app.stores.models
            model = load_model(models, state["model_key"], state["model_sha256"])
            held_out[:] = held_out_crops(model)
            searched[:] = sample_faces(held_out, searched_faces, state["seed"])[0]
            queue_sampled_searches(cloud, face_ids, held_out, searched)
        return as_function(cloud, arn, state)

    request = {"seed": 42, "test_size": 0.25, "classifier": "ovr"}
    status, output = run_workflow(definition, request, invoke, execution="training-1")
    assert status == "SUCCEEDED", output
    # a step whose call its role refused, or an unqueued search, fails it: WriteReport's
    # failure is caught and kept here
    assert "report_error" not in output, output["report_error"]
    # Begin: the execution's name, and the lock's lease is the state machine's timeout
    lease = definition["TimeoutSeconds"]
    assert output["execution"] == {"name": "training-1", "lease_seconds": lease}
    assert output["run_id"] == "training-1" and output["people"] == 5

    record = cloud.app.catalog.current_model()  # the published model, through its pointer
    assert output["promoted"] is True and record.model_id == output["model_id"]
    model = load_model(cloud.app.stores.models, record.artifact_key, record.sha256)
    assert isinstance(model.classifier, OneVsRestSVM)
    assert model.metadata["classifier"]["kind"] == "one-vs-rest SVMs"
    assert model.metadata["classifier"]["choice"] == "ovr"

    # exactly the sampled crops were searched, in order, each once; every answer right (the
    # crop's own FaceId excluded)
    cloud.stubber.assert_no_pending_responses()
    rekognition = output["rekognition"]
    assert len(searched) == rekognition["faces"] == searched_faces
    assert rekognition["held_out_faces"] == len(held_out) > searched_faces
    assert rekognition["accuracy"] == 1.0

    # each step ran as its own function; the catalog was read by Query, never scanned: the
    # one Scan is EvaluateRekognition's of the face index table (the collection's FaceIds)
    for step in steps:
        assert cloud.checker.requests(step), step
    scans = {
        (step, r.resource)
        for step in steps
        for r in cloud.checker.requests(step)
        if r.action == "dynamodb:Scan"
    }
    where = cloud.checker.where
    assert scans == {(EVALUATE_REKOGNITION, where.table(support.ENV["FACE_INDEX_TABLE"]))}
    queried = {r.resource for r in cloud.checker.requests(GATHER) if r.action == "dynamodb:Query"}
    assert queried == {where.table(support.ENV["CATALOG_TABLE"], "gsi3")}
    assert len(json.dumps(output)) < 4096  # keys and summaries, whatever the faces


def queue_sampled_searches(
    cloud, face_ids: dict[str, str], held_out: list[str], searched: list[str]
) -> None:
    """What Rekognition answers for each crop ``searched`` (in that order, each call expecting
    that crop's pixels and room for every held-out FaceId): the crop's own FaceId first, which
    must not count, then a training face of the same person. Then DescribeCollection."""
    collection = support.ENV["COLLECTION_ID"]
    training = [key for key in face_ids if key not in held_out]
    for key in searched:
        crop = encode_png(decode_image(cloud.get(support.ENV["FACES_BUCKET"], key)))
        person = key.split("/")[0]
        same = next(other for other in training if other.split("/")[0] == person)
        cloud.stubber.add_response(
            "search_faces_by_image",
            search_response([(face_ids[key], 99.99), (face_ids[same], 97.25)]),
            {**search_params(1 + len(held_out), collection), "Image": {"Bytes": crop}},
        )
    cloud.stubber.add_response(
        "describe_collection",
        {"FaceCount": len(face_ids), "FaceModelVersion": "7.0"},
        {"CollectionId": collection},
    )


def state_machine_definition(synthesized, purpose: str) -> dict:
    """The ``purpose`` state machine's definition as Step Functions will read it."""
    (logical_id,) = [
        logical_id
        for logical_id, resource in synthesized.service_json["Resources"].items()
        if resource["Type"] == "AWS::StepFunctions::StateMachine"
        and resource["Properties"]["StateMachineName"] == synthesized.config.resource_name(purpose)
    ]
    return definition_of(synthesized.service_json, logical_id)


def as_function(cloud, function_arn: str, state: dict) -> dict:
    """Invoke the handler of the function ``function_arn`` names, acting as that function."""
    handler = cloud.handlers_by_arn[function_arn]
    module, name = handler.rsplit(".", 1)
    with cloud.checker.acting_as(handler):
        return getattr(importlib.import_module(module), name)(state)


def api_event_for(method: str, resource: str, **parameters: str) -> dict:
    """An API Gateway REST proxy event (IAM-authorised) for ``method resource``."""
    path = resource.format(**parameters)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {},
        "pathParameters": parameters,
        "requestContext": {"requestId": str(uuid.uuid4()), "accountId": support.ACCOUNT},
        "body": None,
        "isBase64Encoded": False,
    }
