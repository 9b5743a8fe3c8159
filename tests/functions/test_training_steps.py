"""The training workflow's steps, called in order with the whole state as Step Functions
passes it: what each leaves in S3 and DynamoDB, the Rekognition evaluation on the same
held-out faces (their own FaceIds excluded) and promotion only when not worse."""

from __future__ import annotations

import json

import pytest

from facerec.errors import NotEnoughData
from facerec.models import TrainedModel
from facerec.naming import crop_key
from functions.training import handler as steps
from tests.functions.support import ENV, copy_gallery, search_params, search_response

pytestmark = pytest.mark.model

MODELS, REPORTS = ENV["MODELS_BUCKET"], ENV["REPORTS_BUCKET"]


@pytest.fixture
def gallery(cloud, enrolled):
    """The sample set's train part enrolled in the cloud, every labelled crop indexed."""
    pipeline, _, _ = enrolled
    return copy_gallery(cloud, pipeline)


def queue_searches(cloud, gallery: dict[str, str], model: TrainedModel) -> list[str]:
    """What Rekognition answers for each held-out crop, in the order they are searched: first
    the crop's own FaceId (indexed at enrolment), then another held-out face of someone else,
    then a training face of the right person. Only the last may count. The first held-out
    crop gets "no face" instead. Returns the held-out crop keys."""
    held_out = []
    for face_id in model.metadata["split"]["test_face_ids"]:
        photo_key, index = face_id.rsplit("#", 1)
        held_out.append(crop_key(photo_key, int(index)))
    person = {key: key.split("/")[0] for key in gallery}
    training = [key for key in gallery if key not in held_out]
    exclude = len(held_out)
    for number, key in enumerate(held_out):
        if number == 0:
            cloud.stubber.add_client_error(
                "search_faces_by_image",
                "InvalidParameterException",
                "There are no faces in the image. Should be at least 1.",
                expected_params=search_params(1 + exclude),
            )
            continue
        stranger = next(other for other in held_out if person[other] != person[key])
        same = next(other for other in training if person[other] == person[key])
        matches = [(gallery[key], 99.99), (gallery[stranger], 99.5), (gallery[same], 97.25)]
        cloud.stubber.add_response(
            "search_faces_by_image", search_response(matches), search_params(1 + exclude)
        )
    cloud.stubber.add_response(
        "describe_collection",
        {
            "FaceCount": len(gallery),
            "FaceModelVersion": "7.0",
            "CollectionARN": "arn:aws:rekognition:us-east-1:123456789012:collection/facerec-test",
        },
        {"CollectionId": ENV["COLLECTION_ID"]},
    )
    return held_out


def test_the_steps_in_order_train_evaluate_and_publish(cloud, gallery, enrolled):
    state = {"seed": 42, "test_size": 0.25}

    state = steps.gather_embeddings(state)
    assert state["faces"] == len(gallery) and state["people"] == 5
    assert state["embeddings_key"] in cloud.keys(MODELS)

    state = steps.train_classifier(state)
    model = TrainedModel.from_bytes(cloud.get(MODELS, state["model_key"]))
    assert model.model_id == state["model_id"]
    assert model.metadata["split"]["test_faces"] == state["test_faces"] == 23
    assert model.metadata["embedding"]["weights_sha256"] == cloud.app.weights_sha256
    assert model.metadata["crop"]["method"] == "aligned"

    state = steps.evaluate_facenet(state)
    facenet = json.loads(cloud.get(REPORTS, state["facenet"]["key"]))
    assert facenet["faces"] == 23 and facenet["accuracy"] >= 0.9
    assert state["facenet"]["accuracy"] == facenet["accuracy"]

    held_out = queue_searches(cloud, gallery, model)
    state = steps.evaluate_rekognition(state)
    cloud.stubber.assert_no_pending_responses()
    rekognition = json.loads(cloud.get(REPORTS, state["rekognition"]["key"]))
    assert rekognition["faces"] == len(held_out) == 23
    assert rekognition["correct"] == 22  # every answer right but the crop without a face
    assert rekognition["excluded_face_ids"] == 23 and rekognition["no_face_in_crop"] == 1
    assert rekognition["training_crops_not_indexed"] == 0
    assert rekognition["face_model_version"] == "7.0"
    assert [error["predicted"] for error in rekognition["errors"]] == ["unknown"]

    state = steps.publish_model(state)
    assert state["promoted"] is True and state["model_id"] == model.model_id
    current = cloud.app.catalog.current_model()
    assert current.model_id == model.model_id
    assert current.metadata["evaluation"]["accuracy"] == facenet["accuracy"]
    report = json.loads(cloud.get(REPORTS, state["report_key"]))
    assert report["promoted"] is True and set(report["engines"]) == {"facenet", "rekognition"}
    assert f"{model.model_id}/holdout-evaluation.json" in cloud.keys(REPORTS)
    assert json.dumps(state)  # only keys and small summaries travel in the state
    assert len(json.dumps(state)) < 4096

    # a worse candidate is kept in the models bucket but not promoted
    worse = {**facenet, "accuracy": facenet["accuracy"] - 0.1}
    cloud.app.reports.put("tampered.json", json.dumps(worse).encode())
    again = steps.publish_model({**state, "facenet": {**state["facenet"], "key": "tampered.json"}})
    assert again["promoted"] is False and "<" in again["reason"]
    assert cloud.app.catalog.current_model().model_id == model.model_id
    report = json.loads(cloud.get(REPORTS, again["report_key"]))
    assert report["promoted"] is False and report["previous_model_id"] == model.model_id


def test_nothing_enrolled_fails_the_first_step_with_its_reason(cloud):
    with pytest.raises(NotEnoughData, match="no labelled faces"):
        steps.gather_embeddings({})
    assert cloud.keys(MODELS) == []


def test_a_test_size_outside_0_1_is_refused(cloud):
    with pytest.raises(NotEnoughData, match="test_size"):
        steps.gather_embeddings({"test_size": 0})
