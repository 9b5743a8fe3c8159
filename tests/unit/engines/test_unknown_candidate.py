"""An "unknown" answer carries its best candidate and score beside it (never as the answer),
for every engine that has one: FaceNet, the nearest face, Rekognition and the hybrid."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

from facerec.core.settings import TrainOptions
from facerec.engines.base import UNKNOWN, Answer
from facerec.engines.facenet import FaceNetEngine
from facerec.engines.hybrid import HybridEngine
from facerec.engines.nearest import NearestEngine
from facerec.engines.openset import OpenSetIdentifier
from facerec.engines.rekognition import RekognitionEngine
from facerec.flows.train import TrainingSet, fit
from facerec.storage.rekognition import FaceCollection, RekognitionGallery
from tests.support import ENV, search_params, search_response
from tests.unit.engines.test_gallery import people, queries_near

SPREAD = 1.0


def probes(vectors) -> list[SimpleNamespace]:
    crop = np.zeros((160, 160, 3), np.uint8)
    return [SimpleNamespace(crop=crop, embedding=vector) for vector in vectors]


@pytest.fixture(scope="module")
def world():
    """12 people x 6 faces, one probe near each of them and 12 strangers' faces."""
    ids, labels, vectors, centres = people(12, 6, spread=SPREAD)
    known = queries_near(centres, seed=1, spread=SPREAD)
    _, _, strangers, _ = people(12, 1, seed=2, spread=SPREAD)
    return ids, labels, vectors, known, strangers


def test_an_unknown_answer_carries_its_candidate_and_score():
    unknown = Answer(UNKNOWN, 0.123456, "Alice", {"score": 0.1235})
    assert unknown.to_dict() == {
        "person": UNKNOWN,
        "score": 0.1235,
        "candidate": {"person": "Alice", "score": 0.1235},
    }
    # A known answer does not repeat itself as a candidate.
    assert Answer("Alice", 0.5, "Alice", {"score": 0.5}).to_dict() == {
        "person": "Alice",
        "score": 0.5,
    }
    # No candidate (nobody enrolled, no face found): nothing to show.
    assert "candidate" not in Answer(UNKNOWN, None, None, {"similarity": None}).to_dict()
    # A score JSON cannot carry (-inf: no centroid to compare with) becomes null.
    infinite = Answer(UNKNOWN, float("-inf"), "Bob").to_dict()
    assert infinite["candidate"] == {"person": "Bob", "score": None}
    assert json.loads(json.dumps(infinite, allow_nan=False)) == infinite


def test_the_nearest_engine_shows_the_closest_person_beside_unknown(world):
    ids, labels, vectors, known, strangers = world
    identifier = OpenSetIdentifier(far=0.01).fit(vectors, labels, ids)
    engine = NearestEngine(lambda: identifier)
    found = engine.identify(probes(np.concatenate([known, strangers])))
    answers = [answer.to_dict() for answer in found.answers]
    nearest = identifier.gallery_.search(strangers, 1)[0][:, 0]
    unknowns = [(n, a) for n, a in enumerate(answers[12:]) if a["person"] == UNKNOWN]
    assert len(unknowns) >= 10  # strangers are mostly refused at 1 % FAR
    for n, answer in unknowns:
        assert answer["candidate"] == {"person": nearest[n], "score": answer["score"]}
        assert answer["score"] <= found.summary["unknown_threshold"]
    accepted = [a for a in answers[:12] if a["person"] != UNKNOWN]
    assert accepted and all("candidate" not in answer for answer in accepted)


def test_facenet_shows_the_svcs_label_beside_unknown(world):
    ids, labels, vectors, known, strangers = world
    model, _ = fit(TrainingSet(ids, ids, labels, vectors), TrainOptions(test_size=0.0), {})
    found = FaceNetEngine(lambda: model).identify(probes(np.concatenate([known, strangers])))
    svc = model.classifier.predict(np.concatenate([known, strangers]))
    unknowns = 0
    for n, answer in enumerate(found.answers):
        shown = answer.to_dict()
        if answer.person == UNKNOWN:
            unknowns += 1
            assert shown["candidate"] == {"person": svc[n], "score": shown["score"]}
        else:
            assert "candidate" not in shown and shown["person"] == svc[n]
    assert unknowns >= 10


@pytest.fixture
def rekognition():
    """A real boto3 Rekognition client whose every call is answered by the Stubber."""
    client = boto3.client(
        "rekognition",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield FaceCollection(client, ENV["COLLECTION_ID"]), stubber
        stubber.assert_no_pending_responses()


def test_rekognition_shows_its_best_match_under_min_similarity_in_the_same_call(rekognition):
    collection, stubber = rekognition
    lookup = RekognitionGallery(ENV["COLLECTION_ID"], {"face-ann": "ann", "face-bob": "bob"})
    engine = RekognitionEngine(collection, lookup, 90.0)
    # One call per face, FaceMatchThreshold 0: the below-threshold match costs nothing more.
    for matches in ([("face-ann", 71.5), ("face-bob", 60.0)], [("face-bob", 97.25)]):
        stubber.add_response("search_faces_by_image", search_response(matches), search_params())
    first, second = engine.identify(probes(np.zeros((2, 128), np.float32))).answers
    assert first.to_dict() == {
        "person": UNKNOWN,
        "similarity": 71.5,
        "candidate": {"person": "ann", "score": 71.5},
    }
    assert second.to_dict() == {"person": "bob", "similarity": 97.25}


def test_the_hybrid_passes_the_answering_engines_candidate_through(world, rekognition):
    ids, labels, vectors, _, strangers = world
    model, _ = fit(TrainingSet(ids, ids, labels, vectors), TrainOptions(test_size=0.0), {})
    collection, stubber = rekognition
    lookup = RekognitionGallery(ENV["COLLECTION_ID"], {"face-ann": "ann"})
    fallback = RekognitionEngine(collection, lookup, 90.0)
    facenet = FaceNetEngine(lambda: model)
    stranger = probes(strangers[:1])
    assert facenet.identify(stranger).answers[0].person == UNKNOWN
    stubber.add_response(
        "search_faces_by_image", search_response([("face-ann", 42.0)]), search_params()
    )
    (answer,) = HybridEngine(facenet, fallback, lambda: model.metadata).identify(stranger).answers
    shown = answer.to_dict()
    assert shown["engine"] == "rekognition" and shown["person"] == UNKNOWN
    assert shown["candidate"] == {"person": "ann", "score": 42.0}
