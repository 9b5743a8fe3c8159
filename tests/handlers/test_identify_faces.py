"""identify_faces: API Gateway REST proxy events for POST /identify. Real photos, the real
models, the FaceNet model in moto's S3 and DynamoDB, Rekognition through the Stubber. Bad
input gets a 4xx with a specific code, never a 500."""

from __future__ import annotations

import base64
import importlib
import io
import json
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from facerec.flows.identify import identify_photo
from functions.identify_faces import handler as handler_module
from functions.identify_faces.handler import handler
from tests.support import (
    ENV,
    api_event,
    b64,
    install_model,
    sample_photos,
    search_params,
    search_response,
)

pytestmark = pytest.mark.model


def call(body) -> tuple[int, dict]:
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    response = handler(api_event(raw))
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def deployed(cloud, enrolled):
    """The cloud with the session's trained model published."""
    _, _, model = enrolled
    install_model(cloud, model)
    return cloud


def test_facenet_names_every_val_person_as_the_local_deployment_does(
    deployed, enrolled, sample_set
):
    local, _, model = enrolled
    for photo in sample_photos(sample_set, "val", 1):
        status, body = call({"image": b64(photo.read_bytes())})

        assert status == 200
        here = identify_photo(local.analyser, local.engines, ("facenet",), photo.read_bytes())
        assert body["model_id"] == here["model_id"] == model.model_id
        assert (body["width"], body["height"]) == (here["width"], here["height"])
        assert [face["box"] for face in body["faces"]] == [face["box"] for face in here["faces"]]
        assert [face["facenet"] for face in body["faces"]] == [
            face["facenet"] for face in here["faces"]
        ]
        assert body["faces"][0]["facenet"]["person"] == photo.parent.name
        assert "rekognition" not in body["faces"][0]


def test_both_engines_answer_per_face_crop(deployed, sample_set):
    photo = sample_photos(sample_set, "val", 1)[0]
    deployed.dynamodb.put_item(
        TableName=ENV["FACE_INDEX_TABLE"],
        Item={
            name: {"S": value}
            for name, value in {
                "face_id": "face-ben",
                "person": "ben_afflek",
                "photo_key": "ben_afflek/a.jpg",
                "crop_key": "ben_afflek/a-0.png",
                "external_image_id": "ben_afflek:2Fa-0.png",
                "collection_id": ENV["COLLECTION_ID"],
            }.items()
        },
    )
    deployed.stubber.add_response(
        "search_faces_by_image", search_response([("face-ben", 99.25)]), search_params()
    )

    status, body = call({"image": b64(photo.read_bytes()), "engines": "both"})

    deployed.stubber.assert_no_pending_responses()
    assert status == 200
    (face,) = body["faces"]
    assert face["facenet"]["person"] == "ben_afflek"
    assert face["rekognition"] == {"person": "ben_afflek", "similarity": 99.25}
    assert body["engines"]["rekognition"] == {
        "available": True,
        "collection_id": ENV["COLLECTION_ID"],
        "min_similarity": 90.0,
    }


def test_rekognition_under_the_threshold_or_without_a_face_is_unknown(deployed, sample_set):
    photo = sample_photos(sample_set, "val", 1)[1]
    deployed.stubber.add_response(
        "search_faces_by_image", search_response([("face-nobody", 71.5)]), search_params()
    )
    status, body = call({"image": b64(photo.read_bytes()), "engines": "rekognition"})
    assert status == 200
    assert body["faces"][0]["rekognition"]["person"] == "unknown"
    assert body["faces"][0]["rekognition"]["similarity"] == 71.5
    assert "facenet" not in body["faces"][0] and "model_id" not in body

    deployed.stubber.add_client_error(
        "search_faces_by_image",
        "InvalidParameterException",
        "There are no faces in the image. Should be at least 1.",
    )
    status, body = call({"image": b64(photo.read_bytes()), "engines": "rekognition"})
    assert status == 200
    answer = body["faces"][0]["rekognition"]
    assert answer["person"] == "unknown" and answer["similarity"] is None and answer["reason"]
    deployed.stubber.assert_no_pending_responses()


def test_an_ingest_key_is_identified_too(deployed, sample_set):
    photo = sample_photos(sample_set, "val", 1)[2]
    deployed.s3.put_object(Bucket=ENV["INGEST_BUCKET"], Key="x/probe.jpg", Body=photo.read_bytes())
    status, body = call({"s3_key": "x/probe.jpg"})
    assert status == 200 and body["faces"][0]["facenet"]["person"] == photo.parent.name
    assert call({"s3_key": "x/missing.jpg"}) == (
        404,
        {"code": "photo_not_found", "message": "no photo with that s3_key in the ingest bucket"},
    )


def test_a_base64_encoded_body_is_accepted(deployed, sample_set):
    photo = sample_photos(sample_set, "val", 1)[3]
    raw = json.dumps({"image": b64(photo.read_bytes())}).encode()
    response = handler(api_event(base64.b64encode(raw).decode(), is_base64=True))
    assert response["statusCode"] == 200


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (None, 400, "invalid_request"),
        ("{not json", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"image": "aGk=", "s3_key": "a/b.jpg"}, 400, "invalid_request"),
        ({"image": "aGk=", "colour": "red"}, 400, "invalid_request"),
        ({"image": "aGk=", "engines": "every"}, 400, "invalid_engines"),
        ({"image": "aGk=", "engines": ["facenet", "dlib"]}, 400, "invalid_engines"),
        ({"image": "aGk=", "engines": []}, 400, "invalid_engines"),
        ({"image": "aGk=", "engines": ["facenet"]}, 400, "not_an_image"),
        ({"image": 12}, 400, "invalid_image"),
        ({"image": "not base64!"}, 400, "invalid_base64"),
        ({"s3_key": ""}, 400, "invalid_s3_key"),
        ({"image": b64(b"GIF89a not really")}, 400, "not_an_image"),
        ({"image": b64(b"")}, 400, "empty_file"),
        ({"image": b64(blank_png())}, 400, "no_face"),
        ({"image": "A" * (5 * 2**20 + 4)}, 413, "image_too_large"),
    ],
)
def test_bad_input_gets_a_specific_4xx(deployed, body, status, code):
    answer_status, answer = call(body)
    assert (answer_status, answer["code"]) == (status, code)
    assert answer["message"]


def test_a_decompression_bomb_is_too_large(deployed):
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buffer, format="PNG")
    status, body = call({"image": b64(buffer.getvalue())})
    assert (status, body["code"]) == (413, "image_too_large")


def test_without_a_model_facenet_is_unavailable_not_broken(cloud, sample_set):
    photo = sample_photos(sample_set, "val", 1)[0]
    status, body = call({"image": b64(photo.read_bytes())})
    assert (status, body["code"]) == (503, "model_not_found")


def spied_networks(analyser):
    """Spies on the analyser's detector and embedder calls (they still run)."""
    return (
        mock.patch.object(analyser.detector, "detect_batch", wraps=analyser.detector.detect_batch),
        mock.patch.object(analyser.embedder, "embed", wraps=analyser.embedder.embed),
    )


def test_warm_runs_both_networks_once_and_loads_the_current_model(deployed, enrolled):
    _, _, model = enrolled
    analyser = deployed.app.analyser
    detect_spy, embed_spy = spied_networks(analyser)
    assert deployed.app.current_model._model is None
    with detect_spy as detect, embed_spy as embed:
        assert deployed.app.warm() == model.model_id
    assert deployed.app.current_model._model.model_id == model.model_id
    assert detect.call_count == 1
    # The blank photo has no face, so FaceNet is not called for it; then one blank crop.
    assert [len(call.args[0]) for call in embed.call_args_list] == [1]


def test_warm_before_the_first_training_loads_the_networks_and_no_model(cloud):
    assert cloud.app.warm() is None
    assert cloud.app.current_model._model is None
    assert "analyser" in cloud.app.__dict__ and "identify_service" in cloud.app.__dict__


@pytest.mark.parametrize(
    ("initialization", "warmed"),
    [("provisioned-concurrency", True), ("on-demand", False), (None, False)],
)
def test_only_an_environment_initialised_ahead_of_requests_warms_at_import(
    deployed, monkeypatch, initialization, warmed
):
    # On demand, Lambda gives the init 10 s and runs a longer one again inside the request.
    if initialization is None:
        monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", initialization)
    importlib.reload(handler_module)
    assert (deployed.app.current_model._model is not None) is warmed
    status, body = call({"image": b64(blank_png())})
    assert (status, body["code"]) == (400, "no_face")


NETWORK_HANDLERS = (
    "functions.align_faces.handler",
    "functions.embed_faces.handler",
    "functions.identify_faces.handler",
    "functions.reindex.handler",
    "functions.reconcile.handler",
    "functions.training.write_report",
)


@pytest.mark.parametrize("module", NETWORK_HANDLERS)
@pytest.mark.parametrize("in_lambda", [True, False])
def test_a_handler_that_detects_or_embeds_runs_the_networks_at_import_in_lambda_only(
    cloud, monkeypatch, module, in_lambda
):
    # Lambda sets AWS_LAMBDA_FUNCTION_NAME in every environment; the init phase imports.
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    imported = importlib.import_module(module)  # as outside Lambda: nothing loaded
    if in_lambda:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "facerec-dev-function")
    detect_spy, embed_spy = spied_networks(cloud.app.analyser)
    with detect_spy as detect, embed_spy as embed:
        importlib.reload(imported)
    assert detect.call_count == int(in_lambda)
    assert [len(call.args[0]) for call in embed.call_args_list] == ([1] if in_lambda else [])
