"""The one evaluation (facerec.flows.evaluate): a model's held-out faces, any engine's answers
on them face by face (FaceNet and the nearest face on their stored embeddings, a small
hand-made gallery), the figures drawn from a run, the hybrid replayed on two runs, and a run
as the JSON the training workflow stores."""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest.mock import ANY

import numpy as np
import pytest

from facerec.core.errors import ModelNotFound, NoFaceFound, NotEnoughData
from facerec.core.metrics import DEFAULT_THRESHOLDS
from facerec.engines.base import Answer, Identification, UnavailableEngine
from facerec.engines.facenet import FaceNetEngine
from facerec.engines.nearest import NearestEngine
from facerec.engines.openset import OpenSetIdentifier
from facerec.flows import evaluate as evaluate_module
from facerec.flows.evaluate import (
    NEAREST_THRESHOLDS,
    SCALES,
    SIMILARITY_THRESHOLDS,
    EngineRun,
    held_out_faces,
    hybrid_curve,
    run_engine,
    seconds_statistics,
    summarise,
)
from facerec.vision.images import decode_image
from tests.factories import face_record, unit_vector
from tests.unit.analysis.test_comparison import (
    CROPS,
    HELD_OUT,
    HELD_OUT_IDS,
    HELD_OUT_RECORDS,
    LABELS,
    MODEL_ID,
    NEAREST_EXPECTED,
    TRAINING,
    TRAINING_SET,
    model_with_split,
    nearest_model,
)

TIMED = "per face: one identify call on its stored embedding and crop"


def held_out_of(test_face_ids: list[str], read_crop=CROPS.__getitem__):
    """held_out_faces of a model holding out ``test_face_ids``, in the labelled faces."""
    return held_out_faces(
        model_with_split(test_face_ids).metadata,
        TRAINING_SET.face_ids,
        TRAINING_SET.labels,
        TRAINING_SET.crop_keys,
        TRAINING_SET.embeddings,
        read_crop,
    )


# ---- the held-out faces --------------------------------------------------------------------


def test_held_out_faces_are_the_models_test_ids_in_catalog_order():
    read = []

    def read_crop(key: str) -> bytes:
        read.append(key)
        return CROPS[key]

    # Listed in the metadata out of order: the faces come in the labelled faces' order.
    training, faces = held_out_of([HELD_OUT_IDS[3], HELD_OUT_IDS[1]], read_crop)
    assert [face.face_id for face in faces] == [HELD_OUT_IDS[1], HELD_OUT_IDS[3]]
    assert training == [0, 1, 2, 3, 4, 5, 6, 8, 10]
    face = faces[0]
    assert (face.truth, face.crop_key, face.photo_key) == ("ann", "ann/ah2-0.png", "ann/ah2.jpg")
    np.testing.assert_array_equal(face.embedding, HELD_OUT_RECORDS[1].embedding)
    assert face.embedding.dtype == np.float32
    assert read == []  # the crop is read when an engine asks for it, not before
    crop = face.crop
    assert crop.shape == (160, 160, 3) and read == ["ann/ah2-0.png"]
    np.testing.assert_array_equal(crop, decode_image(CROPS["ann/ah2-0.png"]))


def test_held_out_faces_need_a_held_out_part_still_enrolled():
    with pytest.raises(NotEnoughData, match=f"model {MODEL_ID} was trained without a held-out"):
        held_out_of([])
    with pytest.raises(NotEnoughData, match=r"run `facerec train` \(25 % held out"):
        held_out_of([])
    with pytest.raises(NotEnoughData, match=rf"1 held-out faces of model {MODEL_ID} are no longer"):
        held_out_faces(
            model_with_split([HELD_OUT_IDS[0], HELD_OUT_IDS[1]]).metadata,
            TRAINING_SET.face_ids[:7],  # ann's second held-out face was forgotten since
            TRAINING_SET.labels[:7],
            TRAINING_SET.crop_keys[:7],
            TRAINING_SET.embeddings[:7],
            CROPS.__getitem__,
        )


# ---- run_engine ----------------------------------------------------------------------------


def test_run_engine_records_facenet_answers_on_the_stored_embeddings():
    model = nearest_model(HELD_OUT_IDS)
    run = run_engine(FaceNetEngine(lambda: model), HELD_OUT)
    assert (run.name, run.reason, run.gallery_refusals) == ("facenet", "", ())
    embeddings = np.stack([face.embedding for face in HELD_OUT])
    labels, probabilities = model.classifier.predict_with_probability(embeddings)
    assert list(labels[:4]) == ["ann", "ann", "ann", "bob"]  # the SVC's labels
    for n, face in enumerate(HELD_OUT):
        person, score = NEAREST_EXPECTED[n]  # the open-set score of the SVC's label
        probability = round(float(probabilities[n]), 4)
        assert run.answers[face.face_id] == {
            "person": person,
            "candidate": labels[n],
            "probability": probability,
            "score": probability,  # the scale of FaceNet's threshold table
            "engine_score": pytest.approx(score, abs=1e-6),  # what hybrid routing reads
            "accepted": person != "unknown",
            "seconds": ANY,
        }
        assert 0 <= probability <= 1 and 0 <= run.answers[face.face_id]["seconds"] < 1
    assert run.describe == {
        "model_id": MODEL_ID,
        "classifier": "SVC linear, C = 10.0",
        "embedding": "facenet-keras-128",
        "crop": "aligned",
        "open_set_threshold": 0.0,
        "open_set_score": "centroid cosine minus mean of the 20 nearest other centroids",
        "timed": TIMED,
    }
    json.dumps(run.to_dict(), allow_nan=False)
    # Under a minimum probability every answer is "unknown"; the SVC's label stays the candidate.
    strict = run_engine(FaceNetEngine(lambda: model, min_probability=1.0), HELD_OUT)
    answers = [strict.answers[face.face_id] for face in HELD_OUT]
    assert [answer["person"] for answer in answers] == ["unknown"] * 5
    assert [answer["candidate"] for answer in answers] == list(labels)
    assert not any(answer["accepted"] for answer in answers)


def test_facenet_without_an_open_set_part_scores_with_its_probability():
    model = nearest_model(HELD_OUT_IDS)
    legacy = type(model)(model.classifier, model_with_split(HELD_OUT_IDS).metadata)
    run = run_engine(FaceNetEngine(lambda: legacy), HELD_OUT)
    answers = [run.answers[face.face_id] for face in HELD_OUT]
    assert all(answer["accepted"] for answer in answers)  # never "unknown"
    assert [answer["person"] for answer in answers] == [a["candidate"] for a in answers]
    # The probability shown is rounded to 4 digits; the score routing reads is not.
    assert [answer["engine_score"] for answer in answers] == pytest.approx(
        [answer["probability"] for answer in answers], abs=5e-5
    )
    assert run.describe["open_set_threshold"] is None


def test_run_engine_names_the_nearest_person_or_unknown():
    model = nearest_model(HELD_OUT_IDS)
    assert model.open_set.calibration_.threshold == 0.0
    run = run_engine(NearestEngine(lambda: model.open_set), HELD_OUT)
    assert (run.name, run.reason, run.scale) == ("nearest", "", SCALES["nearest"])
    answers = [run.answers[face.face_id] for face in HELD_OUT]
    assert [answer["person"] for answer in answers] == [person for person, _ in NEAREST_EXPECTED]
    expected = [score for _, score in NEAREST_EXPECTED]
    np.testing.assert_allclose([answer["score"] for answer in answers], expected, atol=1e-4)
    np.testing.assert_allclose([answer["engine_score"] for answer in answers], expected, atol=1e-6)
    assert [answer["accepted"] for answer in answers] == [True, True, True, True, False]
    assert [answer["candidate"] for answer in answers][:4] == ["ann", "ann", "ann", "bob"]
    assert answers[4]["candidate"] in LABELS  # the nearest face, not accepted
    assert all(0 <= answer["seconds"] < 1 for answer in answers)
    assert run.describe["open_set_threshold"] == 0.0
    assert run.describe["gallery_faces"] == 6 and run.describe["people"] == 3
    assert run.describe["calibration"] == "leave-one-person-out"
    assert run.describe["open_set_score"].startswith("centroid cosine")
    assert run.describe["timed"] == TIMED
    json.dumps(run.answers, allow_nan=False)


def test_a_nearest_gallery_with_nobody_to_compare_with_refuses_the_face():
    X = np.stack([face.embedding for face in TRAINING])
    y = np.array([face.person for face in TRAINING])
    identifier = OpenSetIdentifier().fit(X, y)
    for person in LABELS:  # everyone forgotten since the calibration
        identifier.gallery_.remove_label(person)
    run = run_engine(NearestEngine(lambda: identifier), HELD_OUT[:2])
    for face in HELD_OUT[:2]:
        assert run.answers[face.face_id] == {
            "person": None,
            "candidate": None,
            "score": None,
            "engine_score": None,
            "accepted": False,
            "reason": "the engine had no score for this face",
            "seconds": ANY,
        }
    json.dumps(run.to_dict(), allow_nan=False)


class Scripted:
    """An engine answering each face from ``script`` (by face id), or raising what is there;
    each answer takes ``step`` seconds on ``clock``."""

    available, reason = True, ""

    def __init__(self, name: str, script: dict, clock=None, step: float = 0.0):
        self.name, self.script, self.clock, self.step = name, script, clock, step
        self.asked: list[list[str]] = []

    def identify(self, faces) -> Identification:
        self.asked.append([face.face_id for face in faces])
        if self.clock is not None:
            self.clock.now += self.step
        (face,) = faces
        item = self.script[face.face_id]
        if isinstance(item, Exception):
            raise item
        return Identification((item,), {})

    def describe(self) -> dict:
        return {"engine": self.name, "open_set_threshold": 0.2}


def nearest_like(person: str, score: float, candidate: str | None = None) -> Answer:
    return Answer(person, score, candidate or person, {"score": score})


# Five held-out faces: right, "unknown", wrong, refused, right.
SCRIPT = {
    HELD_OUT_IDS[0]: nearest_like("ann", 0.6),
    HELD_OUT_IDS[1]: nearest_like("unknown", 0.1, "ann"),
    HELD_OUT_IDS[2]: nearest_like("ann", 0.5),
    HELD_OUT_IDS[3]: NoFaceFound("no face in the crop"),
    HELD_OUT_IDS[4]: nearest_like("cy", 0.7),
}
GALLERY_REFUSALS = [{"crop_key": "cy/c2-0.png", "reason": "LOW_SHARPNESS"}]


def test_run_engine_asks_about_each_face_alone_timed_and_records_refusals(monkeypatch):
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(evaluate_module, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    engine = Scripted("nearest", SCRIPT, clock, step=0.25)
    run = run_engine(engine, HELD_OUT, GALLERY_REFUSALS)
    assert engine.asked == [[face_id] for face_id in HELD_OUT_IDS]
    assert [answer["seconds"] for answer in run.answers.values()] == [0.25] * 5
    assert run.answers[HELD_OUT_IDS[1]] == {
        "person": "unknown",
        "candidate": "ann",
        "score": 0.1,
        "engine_score": 0.1,
        "accepted": False,
        "seconds": 0.25,
    }
    assert run.answers[HELD_OUT_IDS[3]] == {
        "person": None,
        "score": None,
        "engine_score": None,
        "accepted": False,
        "reason": "no face in the crop",
        "seconds": 0.25,
    }
    assert run.gallery_refusals == tuple(GALLERY_REFUSALS)
    assert run.describe == {"engine": "nearest", "open_set_threshold": 0.2, "timed": TIMED}


def test_an_engine_that_cannot_run_says_why_and_answers_nothing():
    run = run_engine(UnavailableEngine("rekognition", "no AWS credentials"), HELD_OUT)
    assert run == EngineRun("rekognition", reason="no AWS credentials")
    refusing = Scripted("facenet", dict.fromkeys(HELD_OUT_IDS, ModelNotFound("no model yet")))
    run = run_engine(refusing, HELD_OUT)
    assert [answer["reason"] for answer in run.answers.values()] == ["no model yet"] * 5
    assert run.reason == ""  # it ran: every face is a refusal
    summary = summarise(run, HELD_OUT, LABELS)  # nothing answered: figures of zero, no crash
    assert (summary["answered"], summary["correct"], summary["accuracy_all"]) == (0, 0, 0.0)
    assert summary["evaluation"]["accuracy"] is None
    assert len(summary["refusals"]) == 5


# ---- summarise -----------------------------------------------------------------------------


def test_summarise_counts_refusals_and_unknowns_as_misses():
    run = run_engine(Scripted("nearest", SCRIPT), HELD_OUT, GALLERY_REFUSALS)
    summary = summarise(run, HELD_OUT, LABELS)
    assert (summary["name"], summary["ran"], summary["reason"]) == ("nearest", True, "")
    assert summary["score"] == "open-set score (cohort-normalised cosine)"
    assert summary["describe"] == run.describe and summary["held_out_faces"] == 5
    summary["describe"]["timed"] = "changed"  # a copy: the run stays as it was stored
    assert run.describe["timed"] != "changed"
    assert (summary["answered"], summary["correct"]) == (4, 2)
    assert summary["accuracy_all"] == pytest.approx(2 / 5)
    assert summary["closed_set_accuracy"] == pytest.approx(3 / 5)  # ann's "unknown" was ann
    assert summary["open_set"] == {"unknown": 1, "threshold": 0.2}
    assert summary["refusals"] == [
        {"stage": "identify", "key": "bob/bh2-0.png", "reason": "no face in the crop"},
        {"stage": "gallery", "key": "cy/c2-0.png", "reason": "LOW_SHARPNESS"},
    ]
    evaluation = summary["evaluation"]
    assert evaluation["faces"] == 4 and evaluation["correct"] == 2
    assert evaluation["errors"] == [
        {"truth": "ann", "predicted": "unknown", "score": 0.1},
        {"truth": "bob", "predicted": "ann", "score": 0.5},
    ]
    assert [row["threshold"] for row in evaluation["thresholds"]] == list(NEAREST_THRESHOLDS)
    assert summary["seconds"]["count"] == 5  # every face's call, refusals too
    json.dumps(summary, allow_nan=False)


def test_summarise_an_engine_without_an_unknown_threshold_or_that_did_not_run():
    script = {
        face.face_id: Answer(face.truth, 99.0, face.truth, {"similarity": 99.0})
        for face in HELD_OUT
    }
    engine = Scripted("rekognition", script)
    engine.describe = lambda: {"engine": "rekognition"}
    summary = summarise(run_engine(engine, HELD_OUT), HELD_OUT, LABELS)
    assert "open_set" not in summary and summary["correct"] == 5
    assert summary["score"] == "similarity (0-100)"
    thresholds = [row["threshold"] for row in summary["evaluation"]["thresholds"]]
    assert thresholds == list(SIMILARITY_THRESHOLDS)
    absent = EngineRun("rekognition", reason="no AWS credentials")
    assert summarise(absent, HELD_OUT, LABELS) == {
        "name": "rekognition",
        "ran": False,
        "reason": "no AWS credentials",
        "score": "similarity (0-100)",
        "describe": {},
        "held_out_faces": 5,
    }


def test_every_engine_has_its_scale():
    assert SCALES["facenet"].field == "probability"
    assert SCALES["facenet"].thresholds == DEFAULT_THRESHOLDS
    # the nearest engine is thresholded on its own, unrounded open-set score
    assert SCALES["nearest"].field is None and SCALES["rekognition"].field == "similarity"
    # The nearest thresholds cover the open-set scale.
    assert NEAREST_THRESHOLDS[0] == 0.0 and NEAREST_THRESHOLDS[-1] == 0.6
    assert np.allclose(np.diff(NEAREST_THRESHOLDS), 0.05)
    assert SIMILARITY_THRESHOLDS[0] == 50.0 and SIMILARITY_THRESHOLDS[-1] == 99.5


def test_seconds_statistics():
    stats = seconds_statistics([0.1, 0.2, 0.3, 0.4])
    assert stats["count"] == 4 and stats["total"] == pytest.approx(1.0)
    assert stats["mean"] == pytest.approx(0.25) and stats["p50"] == pytest.approx(0.25)
    assert stats["p95"] == pytest.approx(0.385)
    assert (stats["min"], stats["max"]) == (0.1, 0.4)
    empty = seconds_statistics([])
    assert empty["count"] == 0 and empty["total"] == 0.0
    assert empty["mean"] is None and empty["p50"] is None and empty["p95"] is None


# ---- the hybrid replayed -------------------------------------------------------------------


def recorded(name: str, answers: dict[str, tuple[str | None, float | None]]) -> EngineRun:
    """A run with (person, engine_score) per face id; None, None is a refusal."""
    return EngineRun(
        name,
        {
            face_id: {"person": person, "score": score, "engine_score": score, "seconds": 0.1}
            for face_id, (person, score) in answers.items()
        },
    )


FACENET = recorded(
    "facenet",
    {
        HELD_OUT_IDS[0]: ("ann", 0.6),  # right
        HELD_OUT_IDS[1]: ("bob", 0.2),  # wrong
        HELD_OUT_IDS[2]: (None, None),  # refused: always routed
        HELD_OUT_IDS[3]: ("unknown", 0.01),  # unknown: always routed
        HELD_OUT_IDS[4]: ("cy", 0.5),  # right, but Rekognition did not answer this face
    },
)
# Rekognition answered the first four faces only: right, right, right, refused.
REKOGNITION = recorded(
    "rekognition",
    {
        HELD_OUT_IDS[0]: ("ann", 99.0),
        HELD_OUT_IDS[1]: ("ann", 98.0),
        HELD_OUT_IDS[2]: ("bob", 97.0),
        HELD_OUT_IDS[3]: (None, None),
    },
)


def test_the_hybrid_is_replayed_on_the_faces_both_runs_answered():
    curve = hybrid_curve(FACENET, REKOGNITION, HELD_OUT, 0.001, 0.01)
    assert curve["faces"] == 4 and curve["always_routed"] == 2
    assert (curve["facenet_alone"]["correct"], curve["rekognition_alone"]["correct"]) == (1, 3)
    assert [(p["threshold"], p["routed"], p["correct"]) for p in curve["points"]] == [
        ("-inf", 2, 2),  # the refusal and the unknown: Rekognition right on the first
        (0.2, 2, 2),  # bob's 0.2 is not below 0.2
        (0.6, 3, 3),  # the wrong bob goes too: Rekognition says ann
        ("inf", 4, 3),
    ]
    for point in curve["points"]:
        assert point["cost_per_1000"] == pytest.approx(1000 * (0.001 + 0.01 * point["routed"] / 4))
    assert curve["best"]["threshold"] == 0.6 and curve["best"]["reached"] is True
    point = hybrid_curve(FACENET, REKOGNITION, HELD_OUT, 0.001, 0.01, thresholds=[0.3])
    assert [(p["threshold"], p["routed"], p["correct"]) for p in point["points"]] == [(0.3, 3, 3)]


def test_the_hybrid_needs_a_face_both_runs_answered():
    with pytest.raises(NotEnoughData, match="answered by both FaceNet and Rekognition"):
        hybrid_curve(FACENET, EngineRun("rekognition"), HELD_OUT, 0.001, 0.01)


# ---- a run as stored -----------------------------------------------------------------------


def test_a_run_reads_back_from_its_json():
    model = nearest_model(HELD_OUT_IDS)
    run = run_engine(NearestEngine(lambda: model.open_set, "the training part"), HELD_OUT)
    run = EngineRun(run.name, run.answers, tuple(GALLERY_REFUSALS), run.describe)
    stored = json.dumps(run.to_dict(), allow_nan=False)
    assert set(json.loads(stored)) == {
        "name",
        "answers",
        "gallery_refusals",
        "describe",
        "reason",
    }
    again = EngineRun.from_dict(json.loads(stored))
    assert again == run and isinstance(again.gallery_refusals, tuple)
    assert again.describe["gallery"] == "the training part"
    absent = EngineRun.from_dict({"name": "rekognition", "answers": {}, "reason": "no AWS"})
    assert absent == EngineRun("rekognition", reason="no AWS")
    assert absent.scale == SCALES["rekognition"]


def test_factories_build_labelled_faces_with_unit_embeddings():
    face = face_record("ann/a1.jpg", 1, "ann", seed=3)
    assert (face.face_id, face.crop_key, face.index) == ("ann/a1.jpg#1", "ann/a1-1.png", 1)
    assert face.embedding.dtype == np.float32
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(face.embedding, face_record("x.jpg", 0, None, 3).embedding)
    assert not np.array_equal(face.embedding, face_record("ann/a1.jpg", 1, "ann").embedding)
    np.testing.assert_allclose(unit_vector([3, 4]), [0.6, 0.8])
    with pytest.raises(ValueError, match="zero vector"):
        unit_vector([0, 0])
