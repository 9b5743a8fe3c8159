"""The comparison with Rekognition run on a seeded sample of the held-out faces and FaceNet's
identify path timed on the photos of a seeded sample: every face keeps FaceNet's answer,
Rekognition's figures and the hybrid's are over its sample, and both samples are stated."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from facerec.analysis import comparison as comparison_module
from facerec.analysis.comparison import compare_model
from facerec.core.records import PhotoRecord
from facerec.flows.evaluate import EngineRun, sample_faces
from facerec.flows.train import evaluate
from facerec.storage.local import local_stores
from tests.unit.analysis.test_comparison import (
    CROPS,
    ENROLLED,
    HELD_OUT,
    HELD_OUT_IDS,
    HELD_OUT_RECORDS,
    HYBRID_ANSWERS,
    TRAINING_SET,
    Analyser,
    Clock,
    TimedEngine,
    comparison_of,
    facenet_run,
    nearest_model,
)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The comparison module's clock, moved by the fakes only."""
    clock = Clock()
    monkeypatch.setattr(comparison_module, "time", SimpleNamespace(perf_counter=clock))
    return clock


def rekognition_on(face_ids: list[str], about: dict) -> EngineRun:
    """Rekognition's run as the training workflow stores it, on the faces ``face_ids`` only:
    right about each, similarity 99."""
    truth = {face.face_id: face.truth for face in HELD_OUT}
    answers = {
        face_id: {
            "person": truth[face_id],
            "candidate": truth[face_id],
            "similarity": 99.0,
            "score": 99.0,
            "engine_score": 99.0,
            "accepted": True,
            "seconds": 0.2,
        }
        for face_id in face_ids
    }
    stored = {
        "name": "rekognition",
        "answers": answers,
        "describe": {"engine": "rekognition", "sample": about},
    }
    return EngineRun.from_dict(json.loads(json.dumps(stored)))


def test_rekognition_on_a_sample_is_compared_over_its_sample_and_says_so():
    sample, about = sample_faces(HELD_OUT, 3, 42)
    asked = [face.face_id for face in sample]
    runs = {
        "facenet": facenet_run(HYBRID_ANSWERS, open_set_threshold=0.07),
        "rekognition": rekognition_on(asked, about),
    }
    comparison = comparison_of(nearest_model(HELD_OUT_IDS), runs)
    # every held-out face keeps FaceNet's answer; Rekognition's only where it was asked
    assert [face["face_id"] for face in comparison["faces"]] == HELD_OUT_IDS
    assert all("facenet" in face["answers"] for face in comparison["faces"])
    assert [f["face_id"] for f in comparison["faces"] if "rekognition" in f["answers"]] == asked
    engines = comparison["engines"]
    assert engines["facenet"]["held_out_faces"] == 5
    assert (engines["rekognition"]["held_out_faces"], engines["rekognition"]["correct"]) == (3, 3)
    hybrid = comparison["hybrid"]
    assert hybrid["ran"] is True and hybrid["faces"] == 3  # the faces both answered
    text = " ".join(hybrid["assumptions"])
    assert "accuracy is over 3 of 5 held-out faces (a seeded sample, seed 42)" in text
    json.dumps(comparison, allow_nan=False)


def test_compare_model_times_the_photos_of_a_seeded_sample_of_the_held_out_faces(tmp_path, clock):
    stores = local_stores(tmp_path)
    for item in ENROLLED:
        record = PhotoRecord(item.photo_key, item.person, f"sha-{item.photo_key}", "enrolled")
        stores.catalog.put_photo(replace(record, face_count=1), [item])
    for item in HELD_OUT_RECORDS:
        stores.ingest.put(item.photo_key, item.photo_key.encode())
    model = nearest_model(HELD_OUT_IDS)
    runs = evaluate(model, TRAINING_SET, CROPS.__getitem__)
    analyser, engine = Analyser(clock), TimedEngine(clock)
    comparison = compare_model(stores, analyser, engine, model, runs, 2048, (1_000,), max_photos=2)
    timed, _ = sample_faces(HELD_OUT, 2, model.metadata["split"]["seed"])
    photos = [face.photo_key.encode() for face in timed]
    assert analyser.photos == [photos[0], *photos]  # one untimed warm-up, then the sample
    facenet = comparison["engines"]["facenet"]
    assert facenet["seconds"]["count"] == 2 and facenet["held_out_faces"] == 5
    assert facenet["describe"]["timed_on"] == {
        "faces": 2,
        "held_out_faces": 5,
        "limit": 2,
        "seed": 42,
        "about": "2 of 5 held-out faces (a seeded sample, seed 42)",
    }
    assert facenet["describe"]["timed"].endswith(
        "; on the photos of 2 of 5 held-out faces (a seeded sample, seed 42)"
    )
    assert len(comparison["faces"]) == 5  # the answers of every held-out face, still
    # no cap: every held-out photo is timed
    every = compare_model(stores, Analyser(clock), engine, model, runs, 2048, (1_000,))
    assert every["engines"]["facenet"]["seconds"]["count"] == 5
    assert every["engines"]["facenet"]["describe"]["timed_on"]["about"] == ("all 5 held-out faces")
    stores.catalog.close()
