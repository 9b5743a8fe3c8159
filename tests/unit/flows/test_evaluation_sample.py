"""A seeded sample of the held-out faces (flows.evaluate.sample_faces), for the engines too slow
or too costly to ask about every one (Rekognition: one billed call per face), and a run on
such a sample summarised over its sample."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.flows.evaluate import EngineRun, HeldOutFace, sample_faces, summarise
from tests.unit.analysis.test_comparison import HELD_OUT, HELD_OUT_IDS, LABELS


def faces(count: int) -> list[HeldOutFace]:
    """``count`` held-out faces of 10 people, in catalog order."""
    return [
        HeldOutFace(f"p{i % 10}/{i:05d}.jpg#0", f"p{i % 10}", f"p{i % 10}/{i:05d}-0.png", None)
        for i in range(count)
    ]


def test_a_sample_is_capped_seeded_and_keeps_the_held_out_order():
    held_out = faces(25_000)
    sample, about = sample_faces(held_out, 1_000, 42)
    position = {face.face_id: i for i, face in enumerate(held_out)}
    positions = [position[face.face_id] for face in sample]
    assert len(set(positions)) == 1_000  # without replacement
    assert positions == sorted(positions)  # in held-out order, not drawing order
    quarters = np.bincount(np.array(positions) // 6_250, minlength=4)
    assert all(200 <= count <= 300 for count in quarters)  # spread over the whole part
    assert about == {
        "faces": 1_000,
        "held_out_faces": 25_000,
        "limit": 1_000,
        "seed": 42,
        "about": "1,000 of 25,000 held-out faces (a seeded sample, seed 42)",
    }
    # the same seed draws the same faces (a retried step searches the same crops) ...
    assert sample_faces(held_out, 1_000, 42)[0] == sample
    # ... another seed others
    assert sample_faces(held_out, 1_000, 7)[0] != sample


@pytest.mark.parametrize("limit", [None, 23, 1_000])
def test_every_face_when_the_limit_is_none_or_not_below_the_held_out_faces(limit):
    held_out = faces(23)
    sample, about = sample_faces(held_out, limit, 42)
    assert sample == held_out
    assert (about["faces"], about["held_out_faces"], about["limit"]) == (23, 23, limit)
    assert about["about"] == "all 23 held-out faces"


@pytest.mark.parametrize("limit", [0, -1])
def test_an_empty_sample_is_refused(limit):
    with pytest.raises(ValueError, match="at least one face"):
        sample_faces(faces(23), limit, 42)


def answer(person: str, score: float) -> dict:
    return {
        "person": person,
        "candidate": person,
        "similarity": score,
        "score": score,
        "engine_score": score,
        "accepted": True,
        "seconds": 0.2,
    }


def test_a_run_on_a_sample_is_summarised_over_its_sample_and_says_so():
    sample, about = sample_faces(HELD_OUT, 3, 42)
    truth = {face.face_id: face.truth for face in HELD_OUT}
    answers = {face.face_id: answer(face.truth, 99.0) for face in sample}
    wrong = sample[0].face_id
    answers[wrong] = answer(next(p for p in LABELS if p != truth[wrong]), 98.0)
    run = EngineRun("rekognition", answers, describe={"sample": about})
    figures = summarise(run, HELD_OUT, LABELS)  # every held-out face, as publish passes them
    assert figures["held_out_faces"] == 3 and len(HELD_OUT) == 5
    assert (figures["answered"], figures["correct"]) == (3, 2)
    assert figures["accuracy_all"] == pytest.approx(2 / 3)
    assert figures["seconds"]["count"] == 3
    assert (
        figures["describe"]["sample"]["about"] == "3 of 5 held-out faces (a seeded sample, seed 42)"
    )
    # a run that is not a sample still has to answer every face
    unsampled = EngineRun("rekognition", answers)
    with pytest.raises(KeyError):
        summarise(unsampled, HELD_OUT, LABELS)
    assert set(answers) < set(HELD_OUT_IDS)


def test_the_draw_is_numpys_seeded_generator_without_replacement():
    # The contract a reader of the report can redo: positions drawn by default_rng(seed).
    held_out = faces(100)
    sample, _ = sample_faces(held_out, 10, 42)
    drawn = np.sort(np.random.default_rng(42).choice(100, 10, replace=False))
    assert sample == [held_out[i] for i in drawn]
