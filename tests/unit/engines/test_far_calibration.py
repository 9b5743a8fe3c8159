"""The "unknown" threshold keeps its false-accept promise on NEW strangers: the rank of the
impostor score it is set at is far * (M + 1), not floor(far * M) + 1, which let through
(floor(far * M) + 1) / (M + 1) of them (1.2 % for a 1 % target from 250 scores)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from facerec.core.errors import NotEnoughData
from facerec.engines.gallery import Gallery
from facerec.engines.openset import (
    UNKNOWN,
    calibrate,
    calibrated_threshold,
    far_threshold,
    identify,
    leave_one_person_out_scores,
)
from tests.unit.engines.test_gallery import people


def mean_real_far(threshold_of, far: float, scores: int, draws: int = 4000) -> float:
    """The false-accept rate on new impostors (exact: standard normal scores, so it is the
    tail beyond the threshold), averaged over ``draws`` calibrations on ``scores`` each."""
    rng = np.random.default_rng(0)
    return float(
        np.mean([norm.sf(threshold_of(rng.standard_normal(scores), far)) for _ in range(draws)])
    )


@pytest.mark.parametrize(("far", "scores"), [(0.01, 250), (0.001, 1000), (0.05, 100)])
def test_the_expected_far_on_new_impostors_is_the_target(far, scores):
    kept = mean_real_far(calibrated_threshold, far, scores)
    assert kept == pytest.approx(far, rel=0.08)
    # The rule before: at most far * M of the calibration scores above it, too many new ones.
    before = mean_real_far(far_threshold, far, scores)
    assert before == pytest.approx((np.floor(far * scores) + 1) / (scores + 1), rel=0.08)
    assert before > 1.15 * far


def test_the_rank_is_interpolated_and_clipped_to_the_highest_score():
    scores = np.arange(99, -1, -1, dtype=float)  # 99, 98, ..., 0: M = 100
    assert calibrated_threshold(scores, 0.05) == pytest.approx(99 - 4.05)  # rank 5.05 of 101
    assert calibrated_threshold(scores, 0.001) == 99.0  # no rank that high: the highest
    assert calibrated_threshold(scores[::-1], 0.05) == calibrated_threshold(scores, 0.05)
    for far in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            calibrated_threshold(scores, far)
    with pytest.raises(NotEnoughData):
        calibrated_threshold([], 0.01)


def test_small_galleries_calibrated_without_strangers_keep_the_far_on_strangers():
    """40 people x 4 faces (160 impostor scores, 5 % target: rank 8.05 of 161): over 30
    galleries the strangers accepted average the target; the rule before let 5.6 % through."""
    accepted, before = [], []
    for seed in range(30):
        ids, labels, vectors, _ = people(40, 4, seed=seed, spread=1.0)
        gallery = Gallery().add(ids, labels, vectors)
        _, _, strangers, _ = people(2000, 1, seed=1000 + seed, spread=1.0)
        calibration = calibrate(gallery, 0.05)
        answers, scores = identify(gallery, strangers, calibration.threshold)
        accepted.append(np.mean(answers != UNKNOWN))
        old = far_threshold(leave_one_person_out_scores(gallery), 0.05)
        before.append(np.mean(scores > old))
    assert np.mean(accepted) == pytest.approx(0.05, abs=0.004)
    assert np.mean(before) > np.mean(accepted) + 0.003
