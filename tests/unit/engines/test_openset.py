"""Open-set identification on synthetic unit vectors: the unknown threshold, its calibration
without strangers, the score it thresholds, and the estimator."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from facerec.core.errors import NotEnoughData, NotFittedError
from facerec.engines.gallery import Gallery
from facerec.engines.openset import (
    HELD_OUT_STRANGERS,
    LEAVE_ONE_PERSON_OUT,
    UNKNOWN,
    OpenSetIdentifier,
    calibrate,
    detection_identification_rate,
    far_threshold,
    identify,
    leave_one_person_out_scores,
    open_set_scores,
)
from tests.unit.engines.test_gallery import people, queries_near

SPREAD = 1.0  # same-person cosine about 0.5, different people about 0: strangers are hard


def world(seed: int = 0):
    """A gallery of 80 people (8 faces each), probes of them, and 1,500 strangers' faces."""
    ids, labels, vectors, centres = people(80, 8, seed=seed, spread=SPREAD)
    gallery = Gallery().add(ids, labels, vectors)
    probes = queries_near(centres, seed=seed + 100, spread=SPREAD)
    _, _, strangers, _ = people(300, 5, seed=seed + 200, spread=SPREAD)
    return gallery, labels, probes, np.unique(labels), strangers


def test_far_threshold_accepts_at_most_the_target_share():
    scores = np.random.default_rng(0).normal(size=1000)
    for far in (0.0, 0.01, 0.1, 0.5):
        threshold = far_threshold(scores, far)
        assert (scores > threshold).sum() == int(np.floor(far * 1000))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        far_threshold(scores, 1.0)
    with pytest.raises(NotEnoughData):
        far_threshold([], 0.01)


@pytest.mark.parametrize("far", [0.01, 0.05, 0.2])
def test_leave_one_person_out_calibration_gives_the_far_on_real_strangers(far):
    gallery, _, probes, truth, strangers = world()
    calibration = calibrate(gallery, far)
    assert calibration.method == LEAVE_ONE_PERSON_OUT
    assert calibration.impostor_scores == len(gallery) == 640
    answers, _ = identify(gallery, strangers, calibration.threshold)
    false_accepts = (answers != UNKNOWN).mean()
    # 640 calibration scores, 1,500 strangers never seen: within sampling error of the target
    assert abs(false_accepts - far) <= max(0.01, 0.4 * far)
    named, _ = identify(gallery, probes, calibration.threshold)
    assert (named == truth).mean() >= {0.01: 0.6, 0.05: 0.8, 0.2: 0.9}[far]
    assert set(named) <= set(truth) | {UNKNOWN}


def test_held_out_strangers_calibration():
    gallery, _, _, _, strangers = world(seed=1)
    calibration = calibrate(gallery, 0.1, strangers=strangers[:750])
    assert calibration.method == HELD_OUT_STRANGERS and calibration.impostor_scores == 750
    assert calibration.impostor_false_accepts == 75
    answers, _ = identify(gallery, strangers[750:], calibration.threshold)
    assert 0.05 <= (answers != UNKNOWN).mean() <= 0.15


def test_calibration_is_recorded_for_the_model_metadata():
    gallery, *_ = world()
    record = calibrate(gallery, 0.02).to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["far_target"] == 0.02 and record["method"] == LEAVE_ONE_PERSON_OUT
    assert record["impostor_scores"] == 640
    assert record["impostor_false_accepts"] == int(np.floor(0.02 * 640))
    assert record["cohort"] == 20 and "20 nearest other centroids" in record["score"]
    assert isinstance(record["threshold"], float)
    assert datetime.fromisoformat(record["calibrated_at"]).tzinfo is not None


def test_leave_one_person_out_is_exactly_the_gallery_without_that_person():
    gallery, labels, *_ = world(seed=2)
    scores = leave_one_person_out_scores(gallery)
    rows = np.flatnonzero(labels == "person 005")
    without = Gallery().add(gallery.ids, labels, gallery.vectors)
    without.remove_label("person 005")
    nearest, _ = without.search(gallery.vectors[rows], 1)
    expected = open_set_scores(without, gallery.vectors[rows], nearest[:, 0])
    np.testing.assert_allclose(scores[rows], expected, rtol=1e-5, atol=1e-6)


def test_calibration_samples_large_galleries():
    gallery, *_ = world()
    assert len(leave_one_person_out_scores(gallery, max_faces=100, seed=3)) == 100
    np.testing.assert_array_equal(
        leave_one_person_out_scores(gallery, max_faces=100, seed=3),
        leave_one_person_out_scores(gallery, max_faces=100, seed=3),
    )


def test_open_set_score_is_centroid_similarity_minus_the_cohort():
    gallery, _, probes, truth, _ = world()
    scores = open_set_scores(gallery, probes[:3], truth[:3], cohort=5)
    centroids = gallery.centroids(truth[:3])
    others, _ = gallery.search_centroids(probes[:3], 6)
    for q in range(3):
        rest = [label for label in others[q] if label != truth[q]][:5]
        cohort = (gallery.centroids(rest) @ probes[q]).mean()
        assert scores[q] == pytest.approx(centroids[q] @ probes[q] - cohort, abs=1e-5)
    plain = open_set_scores(gallery, probes[:3], truth[:3], cohort=0)
    np.testing.assert_allclose(plain, np.einsum("qd,qd->q", centroids, probes[:3]), atol=1e-6)
    assert np.isneginf(open_set_scores(gallery, probes[:1], ["nobody"])).all()


def test_nobody_enrolled_means_unknown():
    _, _, vectors, _ = people(2, 2)
    answers, scores = identify(Gallery(), vectors, threshold=-10.0)
    assert list(answers) == [UNKNOWN] * 4 and np.isneginf(scores).all()


def test_detection_identification_rate():
    correct = np.array([True, True, True, False])
    known = np.array([0.9, 0.5, 0.2, 0.95])
    strangers = np.linspace(0.0, 0.4, 100)  # 1 % of them above 0.395...
    rate, threshold = detection_identification_rate(correct, known, strangers, 0.01)
    assert threshold == pytest.approx(strangers[-2]) and rate == 0.5


def test_estimator_fit_predict_save_load():
    ids, labels, vectors, centres = people(30, 6, spread=SPREAD)
    _, _, strangers, _ = people(100, 3, seed=9, spread=SPREAD)
    model = OpenSetIdentifier(far=0.05)
    with pytest.raises(NotFittedError):
        model.predict(vectors)
    assert model.fit(vectors, labels, ids=ids) is model
    assert list(model.classes_) == sorted(set(labels))
    assert model.calibration_.far_target == 0.05
    probes = queries_near(centres, seed=10, spread=SPREAD)
    answers, scores = model.predict_with_score(np.concatenate([probes, strangers]))
    assert (answers[:30] == model.classes_).mean() >= 0.7
    assert (answers[30:] != UNKNOWN).mean() <= 0.15
    np.testing.assert_array_equal(
        answers, np.where(scores > model.calibration_.threshold, answers, UNKNOWN)
    )

    loaded = OpenSetIdentifier.from_bytes(model.to_bytes())
    assert loaded.get_params() == model.get_params()
    assert loaded.calibration_ == model.calibration_
    np.testing.assert_array_equal(loaded.predict(probes), model.predict(probes))

    model.gallery_.remove_label("person 000")
    assert "person 000" not in model.recalibrate().classes_
    assert "person 000" not in model.predict(probes)


def test_estimator_needs_two_people():
    ids, labels, vectors, _ = people(1, 4)
    with pytest.raises(NotEnoughData, match="at least 2"):
        OpenSetIdentifier().fit(vectors, labels, ids=ids)
