"""The vector gallery kept by embed_faces, the nearest and hybrid engines behind /identify,
and the forget (DELETE /people/{name}, its workflow's steps, GET /forgets/{id}): against moto
(S3, DynamoDB, S3 Vectors storage) and Stubber (Rekognition, Step Functions, and S3 Vectors'
QueryVectors, which moto lacks)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, replace

import numpy as np
import pytest
from botocore.stub import ANY, Stubber

from facerec.core.settings import TrainOptions
from facerec.engines.hybrid import HybridEngine
from facerec.engines.nearest import VectorNearest
from facerec.interfaces.http import IdentifyService, handle_identify
from functions.align_faces.handler import handler as align
from functions.embed_faces.handler import handler as embed
from functions.forget.group_faces import handler as forget_group_faces
from functions.forget.person import handler as forget_person
from functions.forget.request import handler as request
from functions.forget.retrain import handler as retrain
from tests.factories import unit_vector
from tests.support import (
    ACCOUNT,
    ENV,
    b64,
    deploy_gallery,
    sample_photos,
    search_params,
    search_response,
)

pytestmark = pytest.mark.model

INGEST, FACES = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"]
BUCKETS = ("INGEST", "FACES", "MODELS", "REPORTS", "QUARANTINE")
TRAINING_ARN = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:facerec-test-training"
TRAINING_EXECUTIONS = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:facerec-test-training"
FORGET_ARN = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:facerec-test-forget"
FORGET_EXECUTIONS = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:facerec-test-forget"


def test_embed_stores_labelled_faces_and_the_person_centroid(cloud, sample_set):
    photos = sample_photos(sample_set, "train", 2)
    ben = [photo for photo in photos if photo.parent.name == "ben_afflek"]
    for photo in ben:
        align(cloud.put(INGEST, f"ben_afflek/{photo.name}", photo.read_bytes()))
    for event in cloud.created_events(FACES):
        assert embed(event)["vectors"] == "stored"
        assert embed(event)["vectors"] == "stored"  # a repeat rewrites the same vectors

    faces = cloud.app.catalog.faces("ben_afflek")
    stored = cloud.vectors(ENV["FACE_VECTOR_INDEX"])
    assert sorted(stored) == sorted(face.crop_key for face in faces)
    for face in faces:
        metadata, data = stored[face.crop_key]
        assert metadata == {"person": "ben_afflek"}
        np.testing.assert_allclose(data, face.embedding, atol=1e-6)
    ((person, (_, centroid)),) = cloud.vectors(ENV["CENTROID_VECTOR_INDEX"]).items()
    expected = unit_vector(np.mean([face.embedding for face in faces], axis=0))
    assert person == "ben_afflek"
    np.testing.assert_allclose(centroid, expected, atol=1e-6)


@pytest.fixture
def deployed(cloud, enrolled):
    """The session's enrolled photos, crops, face index rows and model in the cloud stores;
    every labelled face and centroid in the vector store (as embed_faces leaves them)."""
    local, _, model = enrolled
    return cloud, local, model, deploy_gallery(cloud, local, model)


def query_response(key: str, person: str, distance: float) -> dict:
    return {
        "vectors": [{"key": key, "distance": distance, "metadata": {"person": person}}],
        "distanceMetric": "cosine",
    }


def test_nearest_engine_names_a_face_from_the_vector_store(deployed, sample_set):
    cloud, local, model, _ = deployed
    photo = sample_photos(sample_set, "val", 1)[0]
    person = photo.parent.name
    _, analysed = local.analyser.analyse_photo(photo.read_bytes())
    embedding = analysed[0].embedding
    faces = local.stores.catalog.faces()
    centroids = {
        name: unit_vector(np.mean([f.embedding for f in faces if f.person == name], axis=0))
        for name in sorted({face.person for face in faces})
    }
    similarity = {name: float(centroid @ embedding) for name, centroid in centroids.items()}
    others = sorted((name for name in centroids if name != person), key=lambda n: -similarity[n])
    nearest_face = max(
        (f for f in faces if f.person == person), key=lambda f: f.embedding @ embedding
    )

    client = cloud.app.s3vectors
    with Stubber(client) as stubber:
        stubber.add_response(
            "query_vectors",
            query_response(
                nearest_face.crop_key, person, 1 - float(nearest_face.embedding @ embedding)
            ),
            {
                "vectorBucketName": ENV["VECTOR_BUCKET"],
                "indexName": ENV["FACE_VECTOR_INDEX"],
                "queryVector": {"float32": ANY},
                "topK": 1,
                "returnMetadata": True,
                "returnDistance": True,
            },
        )
        stubber.add_response(
            "get_vectors",
            {"vectors": [{"key": person, "data": {"float32": centroids[person].tolist()}}]},
            {
                "vectorBucketName": ENV["VECTOR_BUCKET"],
                "indexName": ENV["CENTROID_VECTOR_INDEX"],
                "keys": [person],
                "returnData": True,
                "returnMetadata": False,
            },
        )
        stubber.add_response(
            "query_vectors",
            {
                "vectors": [
                    {"key": name, "distance": 1 - similarity[name]} for name in [person, *others]
                ],
                "distanceMetric": "cosine",
            },
            {
                "vectorBucketName": ENV["VECTOR_BUCKET"],
                "indexName": ENV["CENTROID_VECTOR_INDEX"],
                "queryVector": {"float32": ANY},
                "topK": ANY,
                "returnMetadata": False,
                "returnDistance": True,
            },
        )
        nearest = VectorNearest(cloud.app.stores.vectors, local.current_model)
        services = IdentifyService(local.analyser, {"nearest": nearest}, local.stores.ingest)
        status, body = handle_identify(
            {"image": b64(photo.read_bytes()), "engines": "nearest"}, services
        )
        stubber.assert_no_pending_responses()

    expected = similarity[person] - np.mean([similarity[name] for name in others])
    assert status == 200
    assert body["engines"]["nearest"]["unknown_threshold"] == round(
        model.metadata["nearest"]["threshold"], 6
    )
    assert body["faces"][0]["nearest"] == {
        "person": person,
        "score": pytest.approx(expected, abs=1e-3),
    }

    with Stubber(client) as stubber:  # an empty store: nobody to compare with
        stubber.add_response("query_vectors", {"vectors": [], "distanceMetric": "cosine"})
        status, body = handle_identify(
            {"image": b64(photo.read_bytes()), "engines": "nearest"}, services
        )
    assert status == 200
    assert body["faces"][0]["nearest"] == {"person": "unknown", "score": None}
    json.dumps(body, allow_nan=False)  # valid JSON: -inf is sent as null


def hybrid_service(local, rekognition, threshold: float) -> IdentifyService:
    """/identify with the hybrid engine over ``local``'s FaceNet and a cloud Rekognition."""
    metadata = lambda: local.current_model().metadata  # noqa: E731
    hybrid = HybridEngine(local.engines["facenet"], rekognition, metadata, threshold)
    return IdentifyService(local.analyser, {"hybrid": hybrid}, local.stores.ingest)


def test_hybrid_keeps_sure_faces_and_routes_the_others_to_rekognition(deployed, sample_set):
    cloud, local, model, face_ids = deployed
    photo = sample_photos(sample_set, "val", 1)[0]
    request = {"image": b64(photo.read_bytes()), "engines": "hybrid"}
    rekognition = cloud.app.rekognition_engine()

    _, analysed = local.analyser.analyse_photo(photo.read_bytes())
    facenet_score = round(float(model.identify(analysed[0].embedding[None]).scores[0]), 4)

    sure = hybrid_service(local, rekognition, float("-inf"))
    status, body = handle_identify(request, sure)  # no Rekognition response is queued
    assert status == 200 and body["engines"]["hybrid"]["routed"] == 0
    assert body["engines"]["hybrid"]["routing_threshold"] == "-inf"  # JSON has no infinity
    json.dumps(body, allow_nan=False)
    assert body["faces"][0]["hybrid"] == {
        "person": photo.parent.name,
        "engine": "facenet",
        "routed": False,
        "score": facenet_score,
    }

    face_id = next(face_id for key, face_id in face_ids.items() if key.startswith("madonna/"))
    cloud.stubber.add_response(
        "search_faces_by_image", search_response([(face_id, 99.1)]), search_params()
    )
    every = hybrid_service(local, rekognition, float("inf"))
    status, body = handle_identify(request, every)
    cloud.stubber.assert_no_pending_responses()
    assert status == 200 and body["engines"]["hybrid"]["routed"] == 1
    assert body["faces"][0]["hybrid"] == {
        "person": "madonna",
        "engine": "rekognition",
        "routed": True,
        "score": facenet_score,
        "similarity": 99.1,
    }
    assert body["model_id"] == model.model_id


def delete_event(name: str) -> dict:
    """An API Gateway REST proxy event (IAM-authorised) for DELETE /people/{name}."""
    return {
        "resource": "/people/{name}",
        "path": f"/people/{name}",
        "httpMethod": "DELETE",
        "headers": {},
        "pathParameters": {"name": name},
        "requestContext": {"requestId": str(uuid.uuid4()), "accountId": ACCOUNT},
        "body": None,
        "isBase64Encoded": False,
    }


def everything(cloud) -> str:
    """Every key, object version, table item and vector of the deployment, as one string."""
    parts = []
    for name in BUCKETS:
        versions = cloud.s3.list_object_versions(Bucket=ENV[f"{name}_BUCKET"])
        for version in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            parts.append(version["Key"])
            if "Versions" in versions and version in versions["Versions"]:
                body = cloud.s3.get_object(
                    Bucket=ENV[f"{name}_BUCKET"], Key=version["Key"], VersionId=version["VersionId"]
                )["Body"].read()
                parts.append(body.decode("latin-1"))
    for table in (ENV["CATALOG_TABLE"], ENV["FACE_INDEX_TABLE"]):
        parts += [json.dumps(item, default=str) for item in cloud.items(table)]
    for index in (ENV["FACE_VECTOR_INDEX"], ENV["CENTROID_VECTOR_INDEX"]):
        parts += [json.dumps([key, meta]) for key, (meta, _) in cloud.vectors(index).items()]
    return "\n".join(parts)


def status_event(forget_id: str) -> dict:
    """API Gateway's event for GET /forgets/{forget_id}."""
    return {
        **delete_event("x"),
        "resource": "/forgets/{forget_id}",
        "path": f"/forgets/{forget_id}",
        "httpMethod": "GET",
        "pathParameters": {"forget_id": forget_id},
    }


def test_delete_person_answers_202_and_the_workflow_removes_them_everywhere(deployed, sample_set):
    cloud, _, model, face_ids = deployed
    cloud.app.settings = replace(
        cloud.app.settings,
        training_state_machine_arn=TRAINING_ARN,
        forget_state_machine_arn=FORGET_ARN,
    )
    assert "madonna" in everything(cloud)
    madonna = sorted(face_id for key, face_id in face_ids.items() if key.startswith("madonna/"))
    assert cloud.app.catalog.lock_training("old-run", 600) is None  # a training is running

    # DELETE starts the workflow and answers at once
    with Stubber(cloud.app.stepfunctions) as stepfunctions:
        stepfunctions.add_response(
            "start_execution",
            {"executionArn": f"{FORGET_EXECUTIONS}:x", "startDate": "2026-12-03T00:00:00Z"},
            {"stateMachineArn": FORGET_ARN, "name": ANY, "input": '{"person": "madonna"}'},
        )
        response = request(delete_event("madonna"))
        stepfunctions.assert_no_pending_responses()
    accepted = json.loads(response["body"])
    assert response["statusCode"] == 202 and accepted["status"] == "RUNNING"
    forget_id = accepted["forget_id"]
    assert response["headers"]["Location"] == accepted["status_url"] == f"/forgets/{forget_id}"
    assert "madonna" in everything(cloud)  # nothing was deleted on the request path

    # the workflow's steps, in the state machine's order (tests/integration/test_iam_calls
    # runs them from the synthesized definition)
    cloud.stubber.add_response(
        "delete_faces",
        {"DeletedFaces": madonna},
        {"CollectionId": ENV["COLLECTION_ID"], "FaceIds": madonna},
    )
    state = forget_person(forget_group_faces({"person": "madonna"}))
    cloud.stubber.assert_no_pending_responses()
    assert state["retrain_options"] == asdict(TrainOptions.of(model.metadata))
    with Stubber(cloud.app.stepfunctions) as stepfunctions:
        stepfunctions.add_response(
            "list_executions",
            {"executions": [running_training("old-run")]},
            {"stateMachineArn": TRAINING_ARN, "statusFilter": "RUNNING"},
        )
        stepfunctions.add_response(
            "stop_execution",
            {"stopDate": "2026-12-03T00:00:01Z"},
            {"executionArn": f"{TRAINING_EXECUTIONS}:old-run", "error": ANY, "cause": ANY},
        )
        stepfunctions.add_response(
            "start_execution",
            {"executionArn": f"{TRAINING_EXECUTIONS}:new", "startDate": "2026-12-03T00:00:02Z"},
            {"stateMachineArn": TRAINING_ARN, "input": json.dumps(state["retrain_options"])},
        )
        state = retrain(state)
        stepfunctions.assert_no_pending_responses()
    # the stopped training's lock is released: the new one can take it at once
    assert cloud.app.catalog.lock_training("new", 600) is None

    deleted = state["deleted"]
    assert deleted["group_photo_faces"] == 0 and "group_photo_faces_unchecked" not in deleted
    assert deleted["rekognition_faces"] == len(madonna)
    assert deleted["face_vectors"] == deleted["photos"] == deleted["crops"] == len(madonna)
    assert deleted["models"] == [model.model_id] and deleted["current_model"] is True
    assert deleted["retraining"] == f"{TRAINING_EXECUTIONS}:new"
    assert deleted["stopped_trainings"] == ["old-run"]
    assert "madonna" not in everything(cloud)  # keys, object versions, items, vectors
    assert cloud.app.catalog.current_model() is None
    # until the retraining publishes, FaceNet has no model to name anyone with
    photo = sample_photos(sample_set, "val", 1)[3]
    assert photo.parent.name == "madonna"
    status, body = handle_identify({"image": b64(photo.read_bytes())}, cloud.app.identify_service)
    assert (status, body["code"]) == (503, "model_not_found")

    # GET /forgets/{id}: the execution's status and its output
    with Stubber(cloud.app.stepfunctions) as stepfunctions:
        for status_name, output in (("RUNNING", None), ("SUCCEEDED", state), ("FAILED", None)):
            stepfunctions.add_response(
                "describe_execution",
                described(forget_id, status_name, output),
                {"executionArn": f"{FORGET_EXECUTIONS}:{forget_id}"},
            )
        stepfunctions.add_client_error("describe_execution", "ExecutionDoesNotExist")
        answers = [request(status_event(forget_id)) for _ in range(4)]
        stepfunctions.assert_no_pending_responses()
        # an id of another form is never looked up
        assert request(status_event("../x"))["statusCode"] == 404
    bodies = [json.loads(answer["body"]) for answer in answers]
    assert [answer["statusCode"] for answer in answers] == [200, 200, 200, 404]
    assert [body.get("status") for body in bodies[:3]] == ["RUNNING", "SUCCEEDED", "FAILED"]
    assert bodies[1]["deleted"] == json.loads(json.dumps(deleted))
    assert bodies[2]["error"]["code"] == "States.TaskFailed"
    assert {body.get("person") for body in bodies[:3]} == {"madonna"}

    # the steps run again (a re-sent forget) delete nothing more and need no retraining
    again = forget_person(forget_group_faces({"person": "madonna"}))
    assert again["deleted"]["models"] == [] and again["deleted"]["photos"] == 0
    assert "retrain_options" not in again
    bad = request(delete_event("..%2Fetc"))  # refused before any call
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["code"] == "invalid_label"


def running_training(name: str) -> dict:
    return {
        "executionArn": f"{TRAINING_EXECUTIONS}:{name}",
        "stateMachineArn": TRAINING_ARN,
        "name": name,
        "status": "RUNNING",
        "startDate": "2026-12-03T00:00:00Z",
    }


def described(forget_id: str, status: str, output: dict | None) -> dict:
    """DescribeExecution's answer for a forget execution."""
    answer = {
        "executionArn": f"{FORGET_EXECUTIONS}:{forget_id}",
        "stateMachineArn": FORGET_ARN,
        "name": forget_id,
        "status": status,
        "startDate": "2026-12-03T00:00:00Z",
        "input": '{"person": "madonna"}',
    }
    if output is not None:
        answer["output"] = json.dumps(output)
    if status == "FAILED":
        answer.update(error="States.TaskFailed", cause="a step failed")
    return answer
