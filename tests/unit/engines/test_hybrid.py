"""Hybrid routing on hand-computable cases: the rule, every number of the curve, and the choice
of the best threshold (ties, free calls, a target no candidate reaches)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from facerec.engines.hybrid import UNKNOWN, encode_threshold, route, routing_curve
from facerec.engines.openset import UNKNOWN as OPEN_SET_UNKNOWN

# Six held-out faces. FaceNet: right on 0, 1, 2, 5, wrong on 3 (bob taken for ann, score 0.1),
# "unknown" on 4. Rekognition: right on 0, 2, 3, 4, no answer on 1, "unknown" on 5.
TRUTH = ["ann", "ann", "bob", "bob", "cy", "cy"]
FACENET = ["ann", "ann", "bob", "ann", "unknown", "cy"]
SCORES = [0.6, 0.3, 0.3, 0.1, 0.05, 0.5]
REKOGNITION = ["ann", None, "bob", "bob", "cy", "unknown"]
FACENET_USD, CALL_USD = 0.0001, 0.001  # cost per 1,000 faces: 0.1 + routed / 6


def curve(**options) -> dict:
    return routing_curve(TRUTH, FACENET, SCORES, REKOGNITION, FACENET_USD, CALL_USD, **options)


def test_unknown_is_the_open_set_answer():
    assert UNKNOWN == OPEN_SET_UNKNOWN


def test_route_sends_unknowns_and_scores_below_the_threshold():
    labels = np.array(["ann", "unknown", "bob", "cy", "ann"])
    scores = np.array([0.4, 0.9, 0.2, 0.3, np.nan], dtype=np.float32)
    assert route(labels, scores, 0.3).tolist() == [False, True, True, False, True]  # 0.3 kept
    assert route(labels, scores, -math.inf).tolist() == [False, True, False, False, True]
    assert route(labels, scores, math.inf).tolist() == [True] * 5
    with pytest.raises(ValueError, match=r"\(N,\) alike"):
        route(labels, scores[:2], 0.0)


def test_route_keeps_a_float32_score_equal_to_the_stored_threshold():
    scores = np.array([0.30000001, 0.29999998], dtype=np.float32)
    threshold = float(scores[0])  # as routing_curve reports it
    assert route(["ann", "bob"], scores, threshold).tolist() == [False, True]


def test_every_point_of_the_curve():
    result = curve()
    rows = [
        (point["threshold"], point["routed"], point["correct"], point["rekognition_calls"])
        for point in result["points"]
    ]
    # The candidates: -inf, the accepted answers' distinct scores (not the unknown's 0.05), inf.
    assert rows == [
        ("-inf", 1, 5, 1),  # only the unknown face goes to Rekognition, which gets it right
        (0.1, 1, 5, 1),  # 0.1 is not below 0.1: the wrong answer is kept
        (0.3, 2, 6, 2),  # the wrong answer is routed and Rekognition gets it right
        (0.5, 4, 5, 4),  # ann's 0.3 is routed to no answer
        (0.6, 5, 4, 5),  # cy's 0.5 is routed to "unknown"
        ("inf", 6, 4, 6),  # Rekognition on every face, FaceNet still paid
    ]
    for point in result["points"]:
        assert point["routed_share"] == pytest.approx(point["routed"] / 6)
        assert point["accuracy"] == pytest.approx(point["correct"] / 6)
        assert point["cost_per_1000"] == pytest.approx(0.1 + point["routed"] / 6)
    assert result["faces"] == 6 and result["always_routed"] == 1 and result["candidates"] == 6
    assert result["costs"]["facenet_per_face"] == FACENET_USD
    assert result["costs"]["rekognition_per_call"] == CALL_USD
    assert "no FaceNet cost" in result["costs"]["model"]


def test_single_engines_are_the_reference_points():
    result = curve()
    facenet, rekognition = result["facenet_alone"], result["rekognition_alone"]
    assert facenet["threshold"] is None and rekognition["threshold"] is None
    assert (facenet["routed"], facenet["correct"], facenet["rekognition_calls"]) == (0, 4, 0)
    assert facenet["accuracy"] == pytest.approx(4 / 6)  # its unknown is a miss
    assert facenet["cost_per_1000"] == pytest.approx(0.1)
    assert (rekognition["routed"], rekognition["correct"]) == (6, 4)
    assert rekognition["rekognition_calls"] == 6 and rekognition["routed_share"] == 1.0
    assert rekognition["cost_per_1000"] == pytest.approx(1.0)  # no FaceNet cost
    assert result["target"] == {"engine": "facenet", "correct": 4, "accuracy": 4 / 6}


def test_best_is_the_cheapest_threshold_that_reaches_the_better_engine():
    best = curve()["best"]
    # -inf and 0.1 route the same face at the same cost: the lower threshold wins the tie.
    assert best["threshold"] == "-inf" and best["reached"] is True
    assert (best["routed"], best["correct"]) == (1, 5)
    assert best["cost_per_1000"] == pytest.approx(0.1 + 1 / 6)


def test_best_needs_the_target_accuracy():
    # Rekognition right on face 1 too: it alone gets 5, which only 0.3 and 0.5 reach.
    better = ["ann", "ann", "bob", "bob", "cy", "unknown"]
    result = routing_curve(TRUTH, FACENET, SCORES, better, FACENET_USD, CALL_USD)
    assert result["target"] == {"engine": "rekognition", "correct": 5, "accuracy": 5 / 6}
    assert [p["correct"] for p in result["points"]] == [5, 5, 6, 6, 5, 5]
    assert result["best"]["threshold"] == "-inf" and result["best"]["correct"] == 5
    stricter = ["ann", "ann", "bob", "bob", "cy", "cy"]  # Rekognition right everywhere: 6
    result = routing_curve(TRUTH, FACENET, SCORES, stricter, FACENET_USD, CALL_USD)
    assert [p["correct"] for p in result["points"]] == [5, 5, 6, 6, 6, 6]
    assert (result["best"]["threshold"], result["best"]["routed"]) == (0.3, 2)


def test_free_calls_tie_on_cost_and_the_more_accurate_wins():
    result = routing_curve(TRUTH, FACENET, SCORES, REKOGNITION, FACENET_USD, 0.0)
    assert all(point["cost_per_1000"] == pytest.approx(0.1) for point in result["points"])
    assert result["best"]["threshold"] == 0.3 and result["best"]["correct"] == 6


def test_a_target_no_threshold_reaches_gives_the_most_accurate_and_says_so():
    # FaceNet is right on both; Rekognition answers neither. Only thresholds routing one face
    # or more are offered: 0.5 and 0.6 both route bob's face (one correct, same cost).
    result = routing_curve(
        ["ann", "bob"], ["ann", "bob"], [0.9, 0.2], [None, "unknown"], 0.0002, 0.001,
        thresholds=[0.6, 0.5, 1.0],
    )  # fmt: skip
    assert [p["threshold"] for p in result["points"]] == [0.5, 0.6, 1.0]
    assert [p["correct"] for p in result["points"]] == [1, 1, 0]
    assert result["target"]["correct"] == 2
    best = result["best"]
    assert best["reached"] is False and best["threshold"] == 0.5 and best["correct"] == 1
    assert best["cost_per_1000"] == pytest.approx(0.2 + 0.5)


def test_answers_without_a_score_are_always_routed():
    result = routing_curve(
        ["ann", "bob", "cy"], ["ann", None, "cy"], [0.7, None, float("nan")],
        ["ann", "bob", "cy"], 0.0, 0.001,
    )  # fmt: skip
    assert result["always_routed"] == 2
    assert [(p["threshold"], p["routed"]) for p in result["points"]] == [
        ("-inf", 2),
        (0.7, 2),
        ("inf", 3),
    ]
    assert result["best"]["correct"] == 3 and result["best"]["threshold"] == "-inf"


def test_many_scores_are_thinned_to_exact_points_that_keep_both_ends_and_the_best():
    rng = np.random.default_rng(7)
    faces = 1_000
    truth = rng.choice(["ann", "bob", "cy", "dee"], faces)
    wrong = rng.random(faces) < 0.2
    facenet = np.where(wrong, "nobody", truth)
    scores = np.where(wrong, rng.random(faces) * 0.4, 0.2 + rng.random(faces) * 0.6)
    rekognition = np.where(rng.random(faces) < 0.9, truth, None)
    result = routing_curve(truth, facenet, scores, rekognition, 0.0001, 0.001, max_points=50)
    points = result["points"]
    assert result["candidates"] == faces + 2 and 49 <= len(points) <= 50
    assert points[0]["threshold"] == "-inf" and points[-1]["threshold"] == "inf"
    assert result["best"]["threshold"] in [point["threshold"] for point in points]
    values = [float(point["threshold"]) for point in points]
    assert values == sorted(values)
    for point in points[1:-1:7]:  # each kept point is exact: recount it with the rule
        sent = route(facenet, scores, float(point["threshold"]))
        assert point["routed"] == sent.sum()
        kept_right = ((facenet == truth) & ~sent).sum()
        assert point["correct"] == kept_right + ((rekognition == truth) & sent).sum()
    full = routing_curve(truth, facenet, scores, rekognition, 0.0001, 0.001, max_points=2_000)
    assert len(full["points"]) == faces + 2 and full["best"] == result["best"]
    assert max(p["correct"] for p in full["points"]) >= result["best"]["correct"]


def test_the_result_is_valid_json():
    text = json.dumps(curve(), allow_nan=False)
    again = json.loads(text)
    assert [float(point["threshold"]) for point in again["points"]][::5] == [-math.inf, math.inf]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one face"):
        routing_curve([], [], [], [], 0.0, 0.0)
    with pytest.raises(ValueError, match="differ"):
        routing_curve(TRUTH, FACENET[:5], SCORES[:5], REKOGNITION, 0.0, 0.0)
    with pytest.raises(ValueError, match="not NaN"):
        curve(thresholds=[0.1, float("nan")])
    with pytest.raises(ValueError, match="not be negative"):
        routing_curve(TRUTH, FACENET, SCORES, REKOGNITION, -1.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        encode_threshold(float("nan"))
    assert encode_threshold(np.float32(0.25)) == 0.25 and encode_threshold(-np.inf) == "-inf"
