"""The training workflow's steps, called in order with the whole state as Step Functions
passes it: what each leaves in S3 and DynamoDB, the training lock (one execution at a time),
the Rekognition evaluation on the same held-out faces (their own FaceIds excluded), promotion
unless the current model is better on the same faces, the comparison report of both engines
written to the reports bucket, and the record of an execution that ended without success."""

from __future__ import annotations

import dataclasses
import json

import pytest

from facerec.core.errors import NotEnoughData
from facerec.core.naming import crop_key
from facerec.engines.facenet import TrainedModel
from facerec.flows.evaluate import sample_faces
from facerec.flows.train import PROMOTION_RULE
from facerec.vision.embedding import embedding_stamp
from facerec.vision.images import decode_image, encode_png
from functions.training import (
    ended,
    evaluate,
    evaluate_rekognition,
    fit,
    gather,
    publish,
    write_report,
)
from functions.training.gather import TrainingInProgress
from tests.support import ACCOUNT, ENV, REGION, copy_gallery, search_params, search_response

pytestmark = pytest.mark.model

MODELS, REPORTS, FACES = ENV["MODELS_BUCKET"], ENV["REPORTS_BUCKET"], ENV["FACES_BUCKET"]
LEASE = 7200  # the dev state machine's timeout, as the Begin state passes it


def execution(name: str) -> dict:
    """What the workflow's Begin state adds to the first input."""
    return {"execution": {"name": name, "lease_seconds": LEASE}}


@pytest.fixture
def gallery(cloud, enrolled):
    """The sample set's train part enrolled in the cloud, every labelled crop indexed."""
    local, _, _ = enrolled
    return copy_gallery(cloud, local)


def held_out_crops(model: TrainedModel) -> list[str]:
    """The crop keys of the faces ``model`` held out, in its split's order."""
    keys = []
    for face_id in model.metadata["split"]["test_face_ids"]:
        photo_key, index = face_id.rsplit("#", 1)
        keys.append(crop_key(photo_key, int(index)))
    return keys


def queue_searches(
    cloud, gallery: dict[str, str], held_out: list[str], searched: list[str] | None = None
) -> None:
    """What Rekognition answers for each crop ``searched`` (default: every held-out crop), in
    the order they are searched, each call expecting that crop's own pixels: first the
    crop's own FaceId (indexed at enrolment), then another held-out face of someone else,
    then a training face of the right person. Only the last may count. The first crop
    searched gets "no face" instead. Every held-out FaceId is excluded, searched or not.
    Then DescribeCollection."""
    person = {key: key.split("/")[0] for key in gallery}
    training = [key for key in gallery if key not in held_out]
    exclude = len(held_out)
    for number, key in enumerate(held_out if searched is None else searched):
        png = encode_png(decode_image(cloud.get(FACES, key)))  # as the engine sends the crop
        params = {**search_params(1 + exclude), "Image": {"Bytes": png}}
        if number == 0:
            cloud.stubber.add_client_error(
                "search_faces_by_image",
                "InvalidParameterException",
                "There are no faces in the image. Should be at least 1.",
                expected_params=params,
            )
            continue
        stranger = next(other for other in held_out if person[other] != person[key])
        same = next(other for other in training if person[other] == person[key])
        matches = [(gallery[key], 99.99), (gallery[stranger], 99.5), (gallery[same], 97.25)]
        cloud.stubber.add_response("search_faces_by_image", search_response(matches), params)
    cloud.stubber.add_response(
        "describe_collection",
        {
            "FaceCount": len(gallery),
            "FaceModelVersion": "7.0",
            "CollectionARN": "arn:aws:rekognition:us-east-1:123456789012:collection/facerec-test",
        },
        {"CollectionId": ENV["COLLECTION_ID"]},
    )


def test_the_steps_in_order_train_evaluate_publish_and_report(cloud, gallery, enrolled):
    state = {"seed": 42, "test_size": 0.25, **execution("exec-1")}

    state = gather.handler(state)
    assert state["faces"] == len(gallery) and state["people"] == 5
    assert state["run_id"] == "exec-1"
    assert state["embeddings_key"] == "training/exec-1/embeddings.npz"
    assert state["embeddings_key"] in cloud.keys(MODELS)
    assert gather.handler(state)["run_id"] == "exec-1"  # a retried step takes its lock again
    # a second execution meanwhile stops before any work, naming the one that runs
    with pytest.raises(TrainingInProgress, match="training execution exec-1 is running"):
        gather.handler({**state, **execution("exec-2")})
    assert "training/exec-2/embeddings.npz" not in cloud.keys(MODELS)

    state = fit.handler(state)
    model = TrainedModel.from_bytes(cloud.get(MODELS, state["model_key"]))
    assert model.model_id == state["model_id"]
    assert model.metadata["split"]["test_faces"] == state["test_faces"] == 23
    assert model.metadata["embedding"] == cloud.app.analyser.embedder.description
    assert embedding_stamp(model.metadata["embedding"]) == cloud.app.catalog.embedding_model
    assert model.metadata["crop"]["method"] == "aligned"
    open_set, nearest = model.metadata["open_set"], model.metadata["nearest"]
    assert open_set["method"] == nearest["method"] == "leave-one-person-out"
    assert open_set["far_target"] == nearest["far_target"] == 0.01
    assert open_set["impostor_false_accepts"] <= 0.01 * open_set["impostor_scores"]
    assert model.open_set.calibration_.threshold == open_set["threshold"]

    state = evaluate.handler(state)
    facenet_run = json.loads(cloud.get(REPORTS, state["facenet"]["key"]))
    facenet = facenet_run["figures"]
    assert facenet["held_out_faces"] == 23 and facenet["accuracy_all"] >= 0.9
    assert state["facenet"]["accuracy"] == facenet["accuracy_all"]
    assert len(facenet_run["answers"]) == 23  # every held-out face's answer, by face id
    assert set(facenet_run["answers"]) == set(model.metadata["split"]["test_face_ids"])
    nearest = json.loads(cloud.get(REPORTS, state["nearest"]["key"]))["figures"]
    assert nearest["held_out_faces"] == 23 and nearest["accuracy_all"] >= 0.9
    assert nearest["open_set"]["threshold"] == model.metadata["open_set"]["threshold"]

    held_out = held_out_crops(model)
    queue_searches(cloud, gallery, held_out)
    state = evaluate_rekognition.handler(state)
    cloud.stubber.assert_no_pending_responses()
    rekognition = json.loads(cloud.get(REPORTS, state["rekognition"]["key"]))["figures"]
    assert rekognition["held_out_faces"] == len(held_out) == 23
    assert rekognition["correct"] == 22  # every answer right but the crop without a face
    assert rekognition["describe"]["excluded_face_ids"] == 23
    assert [item["stage"] for item in rekognition["refusals"]] == ["identify"]  # no face
    assert rekognition["describe"]["face_model_version"] == "7.0"

    state = publish.handler(state)
    assert state["promoted"] is True and state["model_id"] == model.model_id
    # the lock is released: the next execution may start (the report writes only this model's)
    assert cloud.app.catalog.lock_training("exec-2", LEASE) is None
    assert cloud.app.catalog.unlock_training("exec-2")
    record = cloud.app.catalog.current_model()  # the catalog's pointer
    assert record.model_id == model.model_id
    assert record.metadata["evaluation"]["accuracy"] == facenet["closed_set_accuracy"]
    assert "test_face_ids" not in record.metadata["split"]
    current = cloud.app.current_model()  # the whole metadata, from the models bucket
    assert current.metadata["split"] == model.metadata["split"]
    report = json.loads(cloud.get(REPORTS, state["report_key"]))
    assert report["promoted"] is True
    assert report["promotion"] == {
        "promoted": True,
        "reason": "no current model",
        "rule": PROMOTION_RULE,
        "comparison": None,
    }
    assert set(report["engines"]) == {"facenet", "nearest", "rekognition", "hybrid"}
    assert current.metadata["nearest_evaluation"]["accuracy"] == nearest["accuracy_all"]
    hybrid = report["engines"]["hybrid"]
    # the better single engine is FaceNet here, so the best threshold routes nothing it
    # does not have to: accuracy at least FaceNet's, Rekognition asked for fewer faces
    assert hybrid["faces"] == 23 and hybrid["accuracy"] >= facenet["accuracy_all"]
    assert hybrid["best"]["reached"] and hybrid["best"]["routed"] < 23
    assert current.metadata["routing"]["threshold"] == hybrid["best"]["threshold"]
    assert f"{model.model_id}/holdout-evaluation.json" in cloud.keys(REPORTS)

    # the comparison report, after publishing, reads the runs the evaluation steps stored:
    # Rekognition is not searched again
    # Lambda tells each function its memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE)
    cloud.app.settings = dataclasses.replace(cloud.app.settings, function_memory_mb=4096)
    state = write_report.handler(state)
    cloud.stubber.assert_no_pending_responses()
    assert state["report_html_key"] == f"{model.model_id}/comparison.html"
    assert state["report_json_key"] == f"{model.model_id}/comparison.json"
    assert {state["report_html_key"], state["report_json_key"]} <= set(cloud.keys(REPORTS))
    page = cloud.get(REPORTS, state["report_html_key"]).decode()
    assert page.startswith("<!DOCTYPE html>") and model.model_id in page
    assert "<b>promoted</b>: it is now the current model" in page
    numbers = json.loads(cloud.get(REPORTS, state["report_json_key"]))
    assert numbers["model"]["model_id"] == model.model_id
    assert numbers["model"]["test_faces"] == len(numbers["faces"]) == 23
    assert numbers["publication"] == {
        "promoted": True,
        "reason": state["reason"],
        "evaluation_key": state["report_key"],
    }
    facenet_report, rekognition_report = (
        numbers["engines"]["facenet"],
        numbers["engines"]["rekognition"],
    )
    # the same answers as the evaluation steps stored, face by face
    assert facenet_report["correct"] == facenet["correct"]
    assert rekognition_report["correct"] == rekognition["correct"] == 22
    assert [face["answers"]["facenet"] for face in numbers["faces"]] == [
        facenet_run["answers"][face["face_id"]] for face in numbers["faces"]
    ]
    assert [item["stage"] for item in rekognition_report["refusals"]] == ["identify"]
    assert rekognition_report["describe"]["face_model_version"] == "7.0"
    # FaceNet's identify path is timed here, on each held-out photo's bytes
    assert facenet_report["seconds"]["count"] == 23 and facenet_report["seconds"]["p50"] > 0
    assert numbers["cost"]["stored_faces"] == len(gallery) - 23  # the training crops
    # FaceNet's path is priced at the memory it was timed at, and the report says where
    assert numbers["cost"]["memory_mb"] == 4096
    assert any(
        "Measured in the training workflow's write_report Lambda function at 4096 MB" in item
        for item in numbers["cost"]["assumptions"]
    )

    assert json.dumps(state)  # only keys and small summaries travel in the state
    assert len(json.dumps(state)) < 4096

    # a worse candidate (FaceNet's stored answers made wrong) is kept but not promoted
    worse = dict(facenet_run)
    worse["answers"] = {
        face_id: {**answer, "candidate": "nobody", "person": "nobody"}
        for face_id, answer in facenet_run["answers"].items()
    }
    cloud.app.stores.reports.put("tampered.json", json.dumps(worse).encode())
    tampered = {"facenet": {**state["facenet"], "key": "tampered.json"}}
    again = publish.handler({**state, **tampered})
    assert again["promoted"] is False and again["reason"].startswith("worse than")
    assert cloud.app.catalog.current_model().model_id == model.model_id
    report = json.loads(cloud.get(REPORTS, again["report_key"]))
    assert report["promoted"] is False and report["previous_model_id"] == model.model_id
    # compared on the same 23 faces: the current model answered them again
    comparison = report["promotion"]["comparison"]
    assert comparison["common_faces"] == 23 and comparison["candidate_correct"] == 0
    assert comparison["current_correct"] == round(facenet["closed_set_accuracy"] * 23)
    assert comparison["p_worse"] < 0.05


def test_rekognition_and_the_timed_path_run_on_a_seeded_sample_of_the_held_out_faces(
    cloud, gallery
):
    settings = cloud.app.settings
    cloud.app.settings = dataclasses.replace(
        settings, rekognition_evaluation_faces=10, report_timed_photos=5
    )
    state = {"seed": 42, "test_size": 0.25, **execution("exec-1")}
    state = evaluate.handler(fit.handler(gather.handler(state)))
    model = TrainedModel.from_bytes(cloud.get(MODELS, state["model_key"]))
    held_out = held_out_crops(model)
    sampled, _ = sample_faces(held_out, 10, 42)  # the split's seed
    assert len(held_out) == 23 and len(sampled) == 10 and set(sampled) < set(held_out)
    about = "10 of 23 held-out faces (a seeded sample, seed 42)"

    # exactly the sampled crops are searched, in held-out order; every held-out FaceId excluded
    queue_searches(cloud, gallery, held_out, sampled)
    state = evaluate_rekognition.handler(state)
    cloud.stubber.assert_no_pending_responses()
    assert state["rekognition"]["faces"] == 10 and state["rekognition"]["held_out_faces"] == 23
    stored = json.loads(cloud.get(REPORTS, state["rekognition"]["key"]))
    assert sorted(stored["answers"]) == sorted(
        model.metadata["split"]["test_face_ids"][held_out.index(key)] for key in sampled
    )
    rekognition = stored["figures"]
    assert rekognition["held_out_faces"] == 10 and rekognition["correct"] == 9  # one no-face
    assert rekognition["accuracy_all"] == state["rekognition"]["accuracy"] == 0.9
    assert rekognition["describe"]["sample"] == {
        "faces": 10,
        "held_out_faces": 23,
        "limit": 10,
        "seed": 42,
        "about": about,
    }
    assert rekognition["describe"]["excluded_face_ids"] == 23

    state = publish.handler(state)
    assert state["promoted"] is True
    report = json.loads(cloud.get(REPORTS, state["report_key"]))
    engines = report["engines"]
    assert engines["facenet"]["held_out_faces"] == 23  # FaceNet still answers every face
    assert engines["rekognition"]["held_out_faces"] == 10
    assert engines["rekognition"]["describe"]["sample"]["about"] == about
    assert engines["hybrid"]["faces"] == 10  # replayed on the faces both answered
    current = cloud.app.current_model()
    evaluation = current.metadata["rekognition_evaluation"]
    assert (evaluation["accuracy"], evaluation["faces"]) == (0.9, 10)
    assert evaluation["sample"]["about"] == about  # the model says it was a sample
    assert current.metadata["routing"]["chosen_on"] == "this model's 10 held-out faces"

    state = write_report.handler(state)
    cloud.stubber.assert_no_pending_responses()  # the stored run is read, nothing searched
    numbers = json.loads(cloud.get(REPORTS, state["report_json_key"]))
    assert len(numbers["faces"]) == 23
    asked = [face["face_id"] for face in numbers["faces"] if "rekognition" in face["answers"]]
    assert sorted(asked) == sorted(stored["answers"])
    assert numbers["engines"]["rekognition"]["held_out_faces"] == 10
    assert any(about in item for item in numbers["hybrid"]["assumptions"])
    facenet = numbers["engines"]["facenet"]
    assert facenet["seconds"]["count"] == 5  # the photos of 5 of the 23 faces, timed
    assert facenet["describe"]["timed_on"]["about"] == (
        "5 of 23 held-out faces (a seeded sample, seed 42)"
    )
    page = cloud.get(REPORTS, state["report_html_key"]).decode()
    assert about in page and "on the photos of 5 of 23 held-out faces" in page
    assert len(json.dumps(state)) < 4096


def test_nothing_enrolled_fails_the_first_step_with_its_reason(cloud):
    with pytest.raises(NotEnoughData, match="no labelled faces"):
        gather.handler(execution("exec-1"))
    assert cloud.keys(MODELS) == []


def test_a_test_size_outside_0_1_is_refused_before_the_lock_is_taken(cloud):
    with pytest.raises(NotEnoughData, match="test_size"):
        gather.handler({"test_size": 0, **execution("exec-1")})
    assert cloud.app.catalog.lock_training("exec-2", LEASE) is None


def status_change(name: str, status: str, error: str | None, cause: str | None) -> dict:
    """The "Execution Status Change" event Step Functions sends to EventBridge."""
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:facerec-test-training"
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": "2026-11-28T14:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:facerec-test-training:{name}"],
        "detail": {
            "executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:"
            f"facerec-test-training:{name}",
            "stateMachineArn": machine,
            "name": name,
            "status": status,
            "startDate": 1795787200000,
            "stopDate": 1795794400000,
            "input": '{"seed": 42}',
            "output": None,
            "inputDetails": {"included": True},
            "outputDetails": None,
            "error": error,
            "cause": cause,
        },
    }


def test_an_execution_that_timed_out_is_recorded_and_its_lock_released(cloud):
    assert cloud.app.catalog.lock_training("exec-1", LEASE) is None
    timed_out = ended.handler(status_change("exec-1", "TIMED_OUT", "States.Timeout", None))
    assert timed_out == {
        "failure_key": "training/failures/exec-1.json",
        "lock_released": True,
    }
    assert json.loads(cloud.get(REPORTS, "training/failures/exec-1.json")) == {
        "Error": "States.Timeout",
        "Cause": "the execution ended as TIMED_OUT",
        "status": "TIMED_OUT",
        "execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:"
        "facerec-test-training:exec-1",
    }
    assert cloud.app.catalog.lock_training("exec-2", LEASE) is None  # free again
    # an execution refused by the lock ends FAILED: its record, and exec-2's lock stays
    refused = status_change("exec-3", "FAILED", "TrainingInProgress", "exec-2 is running")
    assert ended.handler(refused)["lock_released"] is False
    assert cloud.app.catalog.lock_training("exec-3", LEASE)["owner"] == "exec-2"
    record = json.loads(cloud.get(REPORTS, "training/failures/exec-3.json"))
    assert (record["Error"], record["Cause"]) == ("TrainingInProgress", "exec-2 is running")
