"""`facerec serve`: the same /identify contract on this machine, over the embedded default,
fit to be left running: worker threads behind a front end that reads requests whole, a bearer
token, a Host allow-list, forgets off the request path, and a JSON answer to every request.
Rekognition is absent locally and the answer says so; it is never faked."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from facerec.core.errors import InvalidLabel
from facerec.interfaces.cli import main
from facerec.interfaces.http import handle_identify
from facerec.interfaces.local import LocalDeployment
from facerec.interfaces.server import (
    TOKEN_FILE,
    ForgetQueue,
    Server,
    ServeRefused,
    ensure_token,
)
from tests.support import b64, sample_photos

TOKEN = "a-test-token-of-more-than-32-characters"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


def replicas(local: LocalDeployment):
    """What the CLI hands the server: a new deployment over the same workspace and analyser."""
    return lambda: LocalDeployment(local.workspace, local.analyser)


@contextmanager
def running(local: LocalDeployment, **options) -> Iterator[Server]:
    options = {"token": TOKEN, "threads": 2, **options}
    server = Server(replicas(local), "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=15)
    assert not thread.is_alive()


@pytest.fixture
def server(enrolled):
    with running(enrolled[0]) as server:
        yield server


def request(server, method: str, path: str, body: bytes | None = None, headers=None, timeout=60):
    """(status, headers, raw body); the token is sent unless ``headers`` say otherwise."""
    host, port = server.server_address
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.request(method, path, body=body, headers={**AUTH, **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, response.headers, data


def post(server, body: dict, headers=None, timeout=60) -> tuple[int, dict]:
    raw = json.dumps(body).encode()
    status, _, data = request(
        server, "POST", "/identify", raw, {**JSON, **(headers or {})}, timeout
    )
    return status, json.loads(data)


def photo_body(sample_set, index: int = 4) -> tuple[dict, str]:
    photo = sample_photos(sample_set, "val", 1)[index]
    return {"image": b64(photo.read_bytes())}, photo.parent.name


# ---- the contract ---------------------------------------------------------------------------


def test_same_answer_as_the_shared_contract(server, enrolled, sample_set):
    local, _, model = enrolled
    body, person = photo_body(sample_set)

    status, answer = post(server, body)

    assert (status, answer) == handle_identify(body, local.identify_service())
    assert answer["model_id"] == model.model_id
    assert answer["faces"][0]["facenet"]["person"] == person


def test_rekognition_is_plainly_unavailable(server, sample_set):
    body, _ = photo_body(sample_set, 0)
    status, answer = post(server, {**body, "engines": "both"})
    assert status == 200
    assert answer["engines"]["rekognition"]["available"] is False
    assert "AWS account" in answer["engines"]["rekognition"]["reason"]
    assert all("rekognition" not in face for face in answer["faces"])

    status, answer = post(server, {**body, "engines": "rekognition"})
    assert (status, answer["code"]) == (501, "engine_unavailable")


def test_bad_requests_get_4xx_in_json(server):
    status, _, data = request(server, "POST", "/identify", b"{oops", JSON)
    assert (status, json.loads(data)["code"]) == (400, "invalid_json")
    # Refused from the Content-Length, before the body is read.
    status, _, data = request(
        server, "POST", "/identify", b"x", {**JSON, "Content-Length": str(50 * 2**20)}
    )
    assert (status, json.loads(data)["code"]) == (413, "image_too_large")
    status, _, data = request(server, "POST", "/elsewhere", b"{}", JSON)
    assert (status, json.loads(data)["code"]) == (404, "not_found")
    status, headers, data = request(server, "GET", "/identify")
    assert (status, json.loads(data)["code"], headers["Allow"]) == (
        405,
        "method_not_allowed",
        "POST",
    )


def test_the_contract_is_served_without_the_token(server):
    status, headers, data = request(server, "GET", "/openapi.yaml", headers={"Authorization": ""})
    assert status == 200 and b"/identify" in data
    assert headers["Content-Type"] == "application/yaml"


def test_concurrent_requests_get_the_answers_of_one_at_a_time(server, enrolled, sample_set):
    local = enrolled[0]
    photos = sample_photos(sample_set, "val", 1)
    bodies = [{"image": b64(photo.read_bytes()), "engines": "all"} for photo in photos] * 2
    alone = [handle_identify(body, local.identify_service()) for body in bodies]

    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda body: post(server, body), bodies))

    def names(answer: dict) -> list:
        return [(face["facenet"]["person"], face["nearest"]["person"]) for face in answer["faces"]]

    assert [status for status, _ in together] == [200] * len(bodies)
    assert [names(answer) for _, answer in together] == [names(answer) for _, answer in alone]


# ---- a server left running: slow and idle clients -------------------------------------------


def test_an_idle_connection_does_not_block_other_requests(server, sample_set):
    body, person = photo_body(sample_set)
    with socket.create_connection(server.server_address) as idle:
        idle.sendall(b"POST /identify HTTP/1.1\r\n")  # and nothing more
        started = time.perf_counter()
        status, answer = post(server, body, timeout=10)
        waited = time.perf_counter() - started
    assert (status, answer["faces"][0]["facenet"]["person"]) == (200, person)
    assert waited < 5


def test_a_half_sent_body_times_out_without_blocking_others(enrolled, sample_set):
    body, person = photo_body(sample_set)
    with running(enrolled[0], read_timeout=2) as server:
        host, port = server.server_address
        with socket.create_connection((host, port)) as slow:
            slow.sendall(
                f"POST /identify HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"
                '{"image": "'.encode()
            )
            started = time.perf_counter()
            status, answer = post(server, body, timeout=10)
            assert time.perf_counter() - started < 5
            assert (status, answer["faces"][0]["facenet"]["person"]) == (200, person)
            slow.settimeout(10)
            assert slow.recv(1024) == b""  # closed, unanswered, after 2 s of silence
            closed_after = time.perf_counter() - started
    assert 1.5 < closed_after < 6


# ---- who may call it -------------------------------------------------------------------------


def test_the_token_is_required(server, sample_set):
    body, _ = photo_body(sample_set)
    for authorization in ("", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        raw = json.dumps(body).encode()
        headers = {**JSON, "Authorization": authorization}
        status, headers, data = request(server, "POST", "/identify", raw, headers)
        assert (status, json.loads(data)["code"]) == (401, "unauthorized"), authorization
        assert headers["WWW-Authenticate"] == "Bearer"
    for method, path in (("DELETE", "/people/madonna"), ("GET", "/forgets/" + "0" * 32)):
        status, _, data = request(server, method, path, headers={"Authorization": ""})
        assert (status, json.loads(data)["code"]) == (401, "unauthorized")
    assert post(server, body)[0] == 200


def test_no_auth_serves_without_the_token_on_loopback(enrolled, sample_set):
    body, person = photo_body(sample_set)
    with running(enrolled[0], token=None) as server:
        status, answer = post(server, body, {"Authorization": ""})
    assert (status, answer["faces"][0]["facenet"]["person"]) == (200, person)


def test_no_auth_is_refused_off_loopback(tmp_path, capsys):
    # Refused before the models load, with the reason.
    code = main(["--workspace", str(tmp_path), "serve", "--host", "0.0.0.0", "--no-auth"])
    assert code == 1
    assert "--no-auth is allowed only on a loopback address" in capsys.readouterr().err
    with pytest.raises(ServeRefused, match="loopback"):
        Server(lambda: pytest.fail("built a deployment"), "0.0.0.0", 0, token=None, threads=1)


def test_the_token_file_is_made_once_and_kept_private(tmp_path):
    path, token = ensure_token(tmp_path / "workspace")
    assert path == tmp_path / "workspace" / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 40 and ensure_token(tmp_path / "workspace") == (path, token)
    other, _ = ensure_token(tmp_path / "elsewhere")
    assert other.read_text() != path.read_text()

    path.chmod(0o644)
    with pytest.raises(ServeRefused, match="chmod 600"):
        ensure_token(tmp_path / "workspace")


def test_a_host_not_allowed_is_refused(enrolled, sample_set):
    body, _ = photo_body(sample_set)
    with running(enrolled[0], allowed_hosts=["facerec.lan"]) as server:
        port = server.server_address[1]
        for host in ("rebound.example.com", f"rebound.example.com:{port}", "127.0.0.2"):
            for method, path in (("POST", "/identify"), ("GET", "/openapi.yaml")):
                status, _, data = request(server, method, path, b"{}", {**JSON, "Host": host})
                assert (status, json.loads(data)["code"]) == (421, "invalid_host"), host
        for host in (f"localhost:{port}", "[::1]", f"[::1]:{port}", "FACEREC.lan:80"):
            raw = json.dumps(body).encode()
            status, _, _ = request(server, "POST", "/identify", raw, {**JSON, "Host": host})
            assert status == 200, host

        host, port = server.server_address
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.putrequest("GET", "/openapi.yaml", skip_host=True)
        connection.endheaders()
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["code"]) == (400, "invalid_host")
        connection.close()


# ---- every request gets a JSON answer --------------------------------------------------------


def test_a_body_that_is_not_json_by_its_content_type_gets_415(server, sample_set):
    body, _ = photo_body(sample_set)
    raw = json.dumps(body).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        status, _, data = request(server, "POST", "/identify", raw, {"Content-Type": content_type})
        assert (status, json.loads(data)["code"]) == (415, "unsupported_media_type")
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert request(server, "POST", "/identify", raw, headers)[0] == 200


def test_deeply_nested_json_gets_400(server):
    for depth in (33, 100_000):
        raw = b'{"engines": ' + b"[" * depth + b"]" * depth + b"}"
        status, _, data = request(server, "POST", "/identify", raw, JSON)
        answer = json.loads(data)
        assert (status, answer["code"]) == (400, "invalid_json"), depth
        assert "32 levels" in answer["message"]


def test_an_s3_key_naming_a_folder_or_holding_a_nul_gets_400(server, enrolled):
    person = enrolled[1][0].person
    for key, words in (
        (person, "folder"),
        (f"{person}/", "folder"),
        (f"{person}/a\x00b.jpg", "control characters"),
        ("k" * 1024, "longer"),
    ):
        status, answer = post(server, {"s3_key": key})
        assert (status, answer["code"]) == (400, "invalid_s3_key"), key
        assert words in answer["message"]
    status, answer = post(server, {"s3_key": f"{person}/missing.jpg"})
    assert (status, answer["code"]) == (404, "photo_not_found")


@pytest.fixture
def copied(enrolled, tmp_path):
    """A copy of the enrolled workspace, free to damage."""
    local = enrolled[0]
    shutil.copytree(local.workspace, tmp_path / "copy")
    return LocalDeployment(tmp_path / "copy", local.analyser)


def test_a_damaged_or_missing_model_gets_503(copied, sample_set):
    body, _ = photo_body(sample_set)
    record = copied.stores.catalog.current_model()
    artifact = copied.workspace / "models" / record.artifact_key
    with running(copied) as server:
        artifact.write_bytes(artifact.read_bytes()[:-10])
        status, answer = post(server, body)
        assert (status, answer["code"]) == (503, "model_integrity")
        artifact.unlink()
        status, answer = post(server, body)
        assert (status, answer["code"]) == (503, "model_integrity")
        assert "cannot be read" in answer["message"]


def test_our_own_fault_gets_500_and_the_server_goes_on(copied, sample_set):
    body, person = photo_body(sample_set)
    catalog = copied.workspace / "catalog.sqlite"
    with running(copied, threads=1) as server:
        moved = catalog.rename(catalog.with_name("moved.sqlite"))
        catalog.mkdir()  # the worker's first deployment cannot open its catalog
        status, answer = post(server, body)
        assert (status, answer["code"]) == (500, "internal_error")
        catalog.rmdir()
        moved.rename(catalog)
        status, answer = post(server, body)
    assert (status, answer["faces"][0]["facenet"]["person"]) == (200, person)


# ---- forgetting, off the request path --------------------------------------------------------


def wait_for(server, status_url: str, seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _, data = request(server, "GET", status_url)
        assert status == 200
        job = json.loads(data)
        if job["status"] != "RUNNING":
            return job
        time.sleep(0.2)
    raise AssertionError(f"{status_url} still RUNNING after {seconds} s")


def test_delete_queues_the_forget_and_identify_answers_while_it_runs(local, sample_set):
    from facerec.core.settings import TrainOptions
    from facerec.flows.enrol import PhotoInput

    photos = sample_photos(sample_set, "train", 4)
    local.enrol(PhotoInput(p.parent.name, p.name, p.read_bytes()) for p in photos)
    model, _ = local.train(TrainOptions(test_size=0.0))
    body, person = photo_body(sample_set, 0)
    assert person != "mindy_kaling"

    # One worker, its model loaded: what it answers during the forget does not depend on
    # how far the forget has gone in deleting the model's files.
    with running(local, threads=1) as server:
        assert post(server, body)[0] == 200
        # Another writer holds the catalog: the forget waits on it (up to SQLite's 5 s).
        writer = sqlite3.connect(local.workspace / "catalog.sqlite", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        status, headers, data = request(server, "DELETE", "/people/mindy%5Fkaling")
        queued = json.loads(data)
        forget_id = queued["forget_id"]
        identified = post(server, body)
        still = json.loads(request(server, "GET", queued["status_url"])[2])
        writer.execute("ROLLBACK")
        writer.close()
        done = wait_for(server, queued["status_url"])

        again = json.loads(request(server, "DELETE", "/people/mindy_kaling")[2])
        again = wait_for(server, again["status_url"])
        bad = request(server, "DELETE", "/people/..%2Fetc")
        nested = request(server, "DELETE", "/people/a/b")
        unknown = request(server, "GET", "/forgets/" + "0" * 32)
        malformed = request(server, "GET", "/forgets/..%2F" + forget_id)

    assert status == 202
    assert len(forget_id) == 32 and int(forget_id, 16) >= 0
    assert queued == {
        "forget_id": forget_id,
        "person": "mindy_kaling",
        "status": "RUNNING",
        "status_url": f"/forgets/{forget_id}",
    }
    assert headers["Location"] == f"/forgets/{forget_id}"
    assert identified[0] == 200 and identified[1]["faces"][0]["facenet"]["person"] == person
    assert still["status"] == "RUNNING"

    assert done["status"] == "SUCCEEDED" and "error" not in done
    assert (done["forget_id"], done["person"]) == (forget_id, "mindy_kaling")
    deleted = done["deleted"]
    assert deleted["photos"] == deleted["crops"] == 4
    assert deleted["models"] == [model.model_id] and deleted["retrained"] != model.model_id
    assert "mindy_kaling" not in local.current_model().metadata["labels"]
    assert local.stores.catalog.faces("mindy_kaling") == []

    assert again["status"] == "SUCCEEDED"
    assert again["deleted"]["photos"] == again["deleted"]["crops"] == 0
    assert again["deleted"]["models"] == [] and "retrained" not in again["deleted"]
    assert bad[0] == 400 and json.loads(bad[2])["code"] == "invalid_label"
    assert nested[0] == 404 and json.loads(nested[2])["code"] == "not_found"
    for answer in (unknown, malformed):
        assert answer[0] == 404 and json.loads(answer[2])["code"] == "not_found"


def test_forgets_run_one_at_a_time_in_the_order_asked():
    events, names = [], [f"person_{index}" for index in range(6)]

    def forget(person: str) -> dict:
        events.append(("start", person))
        time.sleep(0.02)
        if person == "person_3":
            raise InvalidLabel("refused")
        events.append(("end", person))
        return {"person": person}

    forgets = ForgetQueue(forget)
    ids = [forgets.submit(name) for name in names]
    deadline = time.monotonic() + 10
    while forgets.status(ids[-1])["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    forgets.close(timeout=5)

    assert [person for kind, person in events if kind == "start"] == names
    assert [kind for kind, person in events if person != "person_3"] == ["start", "end"] * 5
    statuses = [forgets.status(forget_id) for forget_id in ids]
    assert [status["status"] for status in statuses] == ["SUCCEEDED"] * 3 + ["FAILED"] + [
        "SUCCEEDED"
    ] * 2
    assert statuses[0] == {
        "forget_id": ids[0],
        "person": "person_0",
        "status": "SUCCEEDED",
        "deleted": {"person": "person_0"},
    }
    assert statuses[3]["error"] == {"code": "invalid_label", "message": "refused"}
    assert forgets.status("0" * 32) is None


def test_a_forget_that_fails_is_reported(copied):
    # The models folder made a file: the forget cannot list or delete the models.
    models = copied.workspace / "models"
    with running(copied) as server:
        shutil.rmtree(models)
        models.write_bytes(b"")
        queued = json.loads(request(server, "DELETE", "/people/madonna")[2])
        job = wait_for(server, queued["status_url"])
    assert job["status"] == "FAILED" and "deleted" not in job
    assert job["error"]["code"] == "internal_error"
