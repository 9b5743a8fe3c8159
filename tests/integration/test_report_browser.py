"""The comparison report from the real models on the sample set, opened in headless Chromium.

Two reports: the local engines alone (FaceNet and the nearest face, whose gallery is the
model's training part; Rekognition not run, with the reason, so no hybrid routing), and all
three engines with Rekognition's answers recorded through botocore's Stubber on a real boto3
client (with the hybrid routing curve). Both have the open-set section. The browser
test needs Debian's Chromium (`apt-get install chromium`); without it that one test is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from facerec.analysis.comparison import compare_model, run_rekognition
from facerec.analysis.report.html import SECTIONS, render
from facerec.core.settings import TrainOptions
from facerec.engines.facenet import FaceNetEngine
from facerec.flows.evaluate import EngineRun
from facerec.flows.train import evaluate, fit, gather
from facerec.flows.train import held_out as train_held_out
from facerec.storage.rekognition import FaceCollection, cleanup, external_image_id
from tests.support import (
    index_params,
    indexed_response,
    refused_response,
    search_params,
    search_response,
)
from tests.unit.analysis.test_comparison import COLLECTION, describe_response, stubbed_rekognition

pytestmark = pytest.mark.model

CHROMIUM = Path("/usr/bin/chromium")
NO_CREDENTIALS = "no AWS credentials found (this test runs offline)"


@pytest.fixture(scope="module")
def held_out_model(enrolled):
    """A model with the default seeded 25 % held out, fitted on the enrolled catalog without
    publishing it (the session's ``enrolled`` workspace stays as it is)."""
    local, _, _ = enrolled
    training_set = gather(local.stores.catalog, local.settings.crop_method)
    model, _ = fit(training_set, TrainOptions(), local.analyser.describe())
    return model


def comparison_of(local, model, rekognition: EngineRun) -> dict:
    """The comparison of ``model`` as `facerec report` makes it: FaceNet and the nearest face
    evaluated on the held-out faces, ``rekognition``'s run beside them, FaceNet's identify
    path timed on each held-out photo."""
    training_set = gather(local.stores.catalog, local.settings.crop_method)
    runs = {**evaluate(model, training_set, local.stores.faces.get), "rekognition": rekognition}
    return compare_model(local.stores, local.analyser, FaceNetEngine(lambda: model), model, runs)


def split(local, model):
    """(the training part's faces, the held-out faces) of ``model`` in ``local``'s catalog."""
    training_set = gather(local.stores.catalog, local.settings.crop_method)
    _, held_out = train_held_out(model, training_set, local.stores.faces.get)
    ids = {face.face_id for face in held_out}
    return [face for face in local.labelled_faces() if face.face_id not in ids], held_out


@pytest.fixture(scope="module")
def facenet_only(enrolled, held_out_model):
    local, _, _ = enrolled
    return comparison_of(local, held_out_model, EngineRun("rekognition", reason=NO_CREDENTIALS))


@pytest.fixture(scope="module")
def two_engines(enrolled, held_out_model):
    """Both engines: the training crops indexed (one refused) and every held-out crop searched,
    through the Stubber: one answer names the wrong person, one crop has no face for it."""
    local, _, _ = enrolled
    training, held_out = split(local, held_out_model)
    with stubbed_rekognition() as (client, stubber):
        stubber.add_response(
            "describe_collection", describe_response(), {"CollectionId": COLLECTION}
        )
        face_ids = {}
        for i, face in enumerate(training):
            external = external_image_id(face.crop_key)
            if i == 0:
                stubber.add_response("index_faces", refused_response(), index_params(external))
                continue
            face_ids[face.crop_key] = f"{i:08d}-0000-4000-8000-000000000000"
            response = indexed_response(face_ids[face.crop_key], external)
            stubber.add_response("index_faces", response, index_params(external))
        by_person = {}
        for face in training[1:]:
            by_person.setdefault(face.person, face_ids[face.crop_key])
        for i, face in enumerate(held_out):
            if i == 1:
                stubber.add_client_error(
                    "search_faces_by_image",
                    "InvalidParameterException",
                    "There are no faces in the image. Should be at least 1.",
                    400,
                    expected_params=search_params(),
                )
                continue
            other = next(person for person in sorted(by_person) if person != face.truth)
            person, similarity = (other, 71.25) if i == 0 else (face.truth, 99.1 - i / 10)
            matches = search_response([(by_person[person], similarity)])
            stubber.add_response("search_faces_by_image", matches, search_params())
        stubber.add_response(
            "describe_collection", describe_response(), {"CollectionId": COLLECTION}
        )
        run, gallery = run_rekognition(
            client, COLLECTION, training, held_out, local.stores.faces.get
        )
        comparison = comparison_of(local, held_out_model, run)
        ids = sorted(gallery.face_people)
        stubber.add_response(
            "delete_faces", {"DeletedFaces": ids}, {"CollectionId": COLLECTION, "FaceIds": ids}
        )
        assert cleanup(FaceCollection(client, COLLECTION), gallery) == {
            "faces_deleted": len(ids),
            "collection_deleted": False,
        }
    return comparison, held_out


def test_facenet_answers_are_the_classifiers_on_the_held_out_photos(
    enrolled, held_out_model, facenet_only
):
    local, _, _ = enrolled
    comparison = facenet_only
    _, held_out = split(local, held_out_model)
    assert len(comparison["faces"]) == len(held_out) == 23
    expected = held_out_model.identify(np.stack([face.embedding for face in held_out]))
    answers = [face["answers"]["facenet"] for face in comparison["faces"]]
    assert [answer["person"] for answer in answers] == expected.labels.tolist()
    assert [answer["accepted"] for answer in answers] == expected.accepted.tolist()
    np.testing.assert_allclose(
        [answer["score"] for answer in answers], expected.probabilities, atol=0.02
    )
    np.testing.assert_allclose(
        [answer["engine_score"] for answer in answers], expected.scores, atol=0.02
    )
    facenet = comparison["engines"]["facenet"]
    assert facenet["open_set"] == {
        "unknown": int((~expected.accepted).sum()),
        "threshold": pytest.approx(expected.threshold),
    }
    assert facenet["accuracy_all"] >= 0.9 and facenet["refusals"] == []
    assert all(0 < answer["seconds"] < 30 for answer in answers)
    # FaceNet's whole identify path, timed on each held-out photo, prices the FaceNet path
    assert facenet["seconds"]["count"] == len(held_out)
    assert comparison["cost"]["seconds_per_photo"] == facenet["seconds"]["mean"]
    assert comparison["cost"]["stored_faces"] == 69
    rekognition = comparison["engines"]["rekognition"]
    assert rekognition["ran"] is False and rekognition["reason"] == NO_CREDENTIALS
    assert comparison["hybrid"]["ran"] is False and "points" not in comparison["hybrid"]
    assert NO_CREDENTIALS in comparison["hybrid"]["reason"]
    assert [item["code"] for item in comparison["enrolment_refusals"]] == ["no_face"]
    assert comparison["enrolment_refusals"][0]["photo_key"].startswith("elton_john/")


def test_the_nearest_engine_searches_the_training_part_on_the_same_faces(
    enrolled, held_out_model, facenet_only
):
    local, _, _ = enrolled
    comparison = facenet_only
    _, held_out = split(local, held_out_model)
    identifier = held_out_model.open_set
    assert len(identifier.gallery_) == held_out_model.metadata["split"]["train_faces"] == 69
    labels, scores = identifier.predict_with_score(np.stack([face.embedding for face in held_out]))
    answers = [face["answers"]["nearest"] for face in comparison["faces"]]
    assert [answer["person"] for answer in answers] == labels.tolist()
    np.testing.assert_allclose([answer["score"] for answer in answers], scores, atol=1e-5)
    assert all(0 <= answer["seconds"] < 1 for answer in answers)
    assert list(comparison["engines"]) == ["facenet", "nearest", "rekognition"]
    nearest = comparison["engines"]["nearest"]
    threshold = identifier.calibration_.threshold
    assert nearest["open_set"] == {
        "unknown": int((labels == "unknown").sum()),
        "threshold": pytest.approx(threshold),
    }
    truth = np.array([face.truth for face in held_out])
    assert nearest["correct"] == int((labels == truth).sum())
    assert nearest["accuracy_all"] >= 0.8 and nearest["refusals"] == []
    calibrations = comparison["model"]
    assert calibrations["open_set"]["threshold"] == pytest.approx(threshold)
    assert calibrations["open_set"]["method"] == "leave-one-person-out"
    assert calibrations["nearest"]["impostor_scores"] == len(held_out) + 69


def test_two_engines_on_the_same_faces(two_engines):
    comparison, held_out = two_engines
    rekognition = comparison["engines"]["rekognition"]
    assert rekognition["ran"] and rekognition["held_out_faces"] == len(held_out)
    assert rekognition["answered"] == len(held_out) - 1
    assert rekognition["correct"] == len(held_out) - 2
    assert [item["stage"] for item in rekognition["refusals"]] == ["identify", "gallery"]
    first = comparison["faces"][0]["answers"]
    assert first["rekognition"]["score"] == 71.25
    assert first["rekognition"]["person"] != comparison["faces"][0]["truth"]
    assert first["facenet"]["person"] == comparison["faces"][0]["truth"]
    assert comparison["cost"]["stored_faces"] == 68  # 69 training crops, one refused
    hybrid = comparison["hybrid"]
    assert hybrid["ran"] and hybrid["faces"] == len(held_out)
    assert hybrid["facenet_alone"]["correct"] == comparison["engines"]["facenet"]["correct"]
    assert hybrid["rekognition_alone"]["correct"] == rekognition["correct"]
    points = hybrid["points"]
    assert points[0]["threshold"] == "-inf" and points[-1]["threshold"] == "inf"
    assert points[-1]["correct"] == rekognition["correct"]  # everything routed
    assert hybrid["best"]["reached"] and hybrid["best"]["correct"] >= hybrid["target"]["correct"]
    assert hybrid["best"]["threshold"] in [point["threshold"] for point in points]
    json.dumps(comparison, allow_nan=False)


def open_in_chromium(pages: list[Path], workdir: Path) -> list[dict]:
    """Load each page in headless Chromium through the DevTools protocol. Per page: the
    section ids and headings, every image's decoded size, console errors and exceptions, and
    every URL the page asked for."""
    import websocket

    profile = workdir / "profile"
    process = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            assert process.poll() is None, f"Chromium exited with {process.returncode}"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            target = next(item for item in json.load(answer) if item["type"] == "page")
        connection = websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        try:
            return [_load(connection, page) for page in pages]
        finally:
            connection.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


PAGE_FACTS = """(async () => {
  const images = await Promise.all([...document.images].map(async (img) => {
    try { await img.decode(); } catch (error) { return {alt: img.alt, error: String(error)}; }
    return {alt: img.alt, width: img.naturalWidth, height: img.naturalHeight};
  }));
  return {
    sections: [...document.querySelectorAll("section")].map((s) => s.id),
    headings: [...document.querySelectorAll("section > h2")].map((h) => h.textContent),
    images,
    summaryHead: [...document.querySelectorAll("#summary table:first-of-type thead th")].map(
      (th) => th.textContent),
    openSet: {
      tables: document.querySelectorAll("#open-set table").length,
      notices: document.querySelectorAll("#open-set .notrun").length,
      text: document.getElementById("open-set").textContent,
    },
    hybrid: {
      images: document.querySelectorAll("#hybrid img").length,
      notices: document.querySelectorAll("#hybrid .notrun").length,
      text: document.getElementById("hybrid").textContent,
    },
  };
})()"""


def _load(connection, page: Path) -> dict:
    events, counter = [], iter(range(1, 10_000))

    def call(method: str, **params) -> dict:
        number = next(counter)
        connection.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(connection.recv())
            if message.get("id") == number:
                assert "error" not in message, message
                return message["result"]
            events.append(message)

    for domain in ("Page", "Runtime", "Log", "Network"):
        call(f"{domain}.enable")
    call("Page.navigate", url=page.as_uri())
    while not any(event.get("method") == "Page.loadEventFired" for event in events):
        events.append(json.loads(connection.recv()))
    facts = call("Runtime.evaluate", expression=PAGE_FACTS, awaitPromise=True, returnByValue=True)
    for domain in ("Network", "Log", "Runtime", "Page"):
        call(f"{domain}.disable")
    errors = [
        event["params"]
        for event in events
        if (event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error")
        or event["method"] == "Runtime.exceptionThrown"
        or (event["method"] == "Log.entryAdded" and event["params"]["entry"]["level"] == "error")
    ]
    requests = [
        event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
    ]
    return {**facts["result"]["value"], "errors": errors, "requests": requests}


@pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),  # in CI a missing browser fails
    reason="needs Chromium at /usr/bin/chromium: `apt-get install chromium` (CI installs it)",
)
def test_reports_render_in_headless_chromium(facenet_only, two_engines, enrolled, tmp_path):
    local, _, _ = enrolled
    facenet_only_comparison = facenet_only
    pages = []
    for name, comparison in (("facenet-only", facenet_only), ("two-engines", two_engines[0])):
        html, _ = render(comparison, local.stores.faces.get)
        path = tmp_path / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        pages.append((path, html.count("<img ")))
    seen = open_in_chromium([path for path, _ in pages], tmp_path)
    for (path, image_count), page in zip(pages, seen, strict=True):
        assert page["errors"] == [], path.name
        assert page["sections"] == [section.id for section in SECTIONS], path.name
        assert page["headings"] == [section.title for section in SECTIONS], path.name
        assert len(page["images"]) == image_count >= 3, path.name
        for image in page["images"]:
            assert "error" not in image and image["width"] > 0 and image["height"] > 0, image
        assert all(url.startswith(("file:", "data:")) for url in page["requests"]), path.name
    # The two-engine page also shows the wrong answer's thumbnail and both engines' figures.
    assert len(seen[1]["images"]) > len(seen[0]["images"])
    # Hybrid routing: a notice without Rekognition; the plot and the best threshold with it.
    facenet_only, both = seen[0]["hybrid"], seen[1]["hybrid"]
    assert (facenet_only["images"], facenet_only["notices"]) == (0, 1)
    assert "No hybrid figures" in facenet_only["text"] and NO_CREDENTIALS in facenet_only["text"]
    assert (both["images"], both["notices"]) == (1, 0)
    assert "Best routing threshold" in both["text"] and "Rekognition alone" in both["text"]
    # The nearest face is the third engine, and the open-set section has its figures.
    engines = ["", "FaceNet + SVC", "Nearest face (open set)", "Amazon Rekognition"]
    threshold = f"{facenet_only_comparison['model']['open_set']['threshold']:.4g}"
    for page, comparison in zip(seen, (facenet_only_comparison, two_engines[0]), strict=True):
        assert page["summaryHead"] == engines
        open_set = page["openSet"]
        assert (open_set["tables"], open_set["notices"]) == (2, 0)
        unknown = comparison["engines"]["nearest"]["open_set"]["unknown"]
        assert f"{unknown} of 23" in open_set["text"] and "false rejects" in open_set["text"]
        assert threshold in open_set["text"] and "leave-one-person-out" in open_set["text"]
        assert "bench/OPEN_SET.md" in open_set["text"] and "0.963" in open_set["text"]
