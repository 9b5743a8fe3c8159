"""`facerec serve`: the same /identify contract on localhost, over the embedded default.
Rekognition is absent locally and the answer says so; it is never faked."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from facerec.interfaces.http import handle_identify
from facerec.interfaces.server import make_server
from tests.support import b64, sample_photos

pytestmark = pytest.mark.model


@pytest.fixture
def server(enrolled):
    local, _, _ = enrolled
    httpd = make_server(local, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def request(server, method: str, path: str, body: bytes | None = None, headers=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def post(server, body: dict) -> tuple[int, dict]:
    status, data = request(
        server, "POST", "/identify", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return status, json.loads(data)


def test_same_answer_as_the_shared_contract(server, enrolled, sample_set):
    local, _, model = enrolled
    photo = sample_photos(sample_set, "val", 1)[4]
    body = {"image": b64(photo.read_bytes())}

    status, answer = post(server, body)

    assert (status, answer) == handle_identify(body, local.identify_service())
    assert answer["model_id"] == model.model_id
    assert answer["faces"][0]["facenet"]["person"] == photo.parent.name


def test_rekognition_is_plainly_unavailable(server, sample_set):
    photo = sample_photos(sample_set, "val", 1)[0]
    status, answer = post(server, {"image": b64(photo.read_bytes()), "engines": "both"})
    assert status == 200
    assert answer["engines"]["rekognition"]["available"] is False
    assert "AWS account" in answer["engines"]["rekognition"]["reason"]
    assert all("rekognition" not in face for face in answer["faces"])

    status, answer = post(server, {"image": b64(photo.read_bytes()), "engines": "rekognition"})
    assert (status, answer["code"]) == (501, "engine_unavailable")


def test_bad_requests_get_4xx(server):
    status, data = request(
        server, "POST", "/identify", b"{oops", {"Content-Type": "application/json"}
    )
    assert (status, json.loads(data)["code"]) == (400, "invalid_json")
    status, data = request(server, "POST", "/identify", b"x", {"Content-Length": str(50 * 2**20)})
    assert (status, json.loads(data)["code"]) == (413, "image_too_large")
    status, data = request(server, "POST", "/elsewhere", b"{}")
    assert status == 404
    status, data = request(server, "GET", "/identify")
    assert status == 405


def test_the_contract_is_served(server):
    status, data = request(server, "GET", "/openapi.yaml")
    assert status == 200 and b"/identify" in data


def test_delete_person_forgets_them_and_is_idempotent(local, sample_set):
    from facerec.core.settings import TrainOptions
    from facerec.flows.enrol import PhotoInput

    photos = [photo for photo in sample_photos(sample_set, "train", 4)]
    local.enrol(PhotoInput(p.parent.name, p.name, p.read_bytes()) for p in photos)
    model, _ = local.train(TrainOptions(test_size=0.0))
    httpd = make_server(local, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        status, first = request(httpd, "DELETE", "/people/mindy%5Fkaling")
        status_again, again = request(httpd, "DELETE", "/people/mindy_kaling")
        bad = request(httpd, "DELETE", "/people/..%2Fetc")
        nested = request(httpd, "DELETE", "/people/a/b")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

    first, again = json.loads(first), json.loads(again)
    assert status == status_again == 200
    assert first["person"] == "mindy_kaling" and first["photos"] == first["crops"] == 4
    assert first["models"] == [model.model_id] and first["retrained"] != model.model_id
    assert "mindy_kaling" not in local.current_model().metadata["labels"]
    assert local.stores.catalog.faces("mindy_kaling") == []
    assert again["photos"] == again["crops"] == again["face_records"] == 0
    assert again["models"] == [] and "retrained" not in again
    assert bad[0] == 400 and json.loads(bad[1])["code"] == "invalid_label"
    assert nested[0] == 404
