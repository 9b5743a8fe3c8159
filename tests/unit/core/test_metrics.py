"""Closed-set metrics and the threshold table on hand-checked answers."""

from __future__ import annotations

import numpy as np

from facerec.core.metrics import evaluate_predictions, render_markdown, threshold_table


def test_metrics_on_a_known_case():
    truth = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "b", "a"]
    scores = [0.9, 0.8, 0.3, 0.7, 0.6, 0.2]
    result = evaluate_predictions(truth, predicted, scores, labels=["a", "b", "c"])
    assert result["accuracy"] == 4 / 6 and result["correct"] == 4
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    np.testing.assert_allclose(
        result["confusion_matrix_normalised"][0], [2 / 3, 1 / 3, 0], atol=1e-4
    )
    assert result["per_class"]["b"]["precision"] == 2 / 3
    assert result["per_class"]["c"]["recall"] == 0.0
    assert result["macro_avg"]["support"] == 6
    assert result["score_statistics"]["wrong"]["max"] == 0.3
    assert result["score_statistics"]["correct"]["min"] == 0.6
    assert [error["truth"] for error in result["errors"]] == ["a", "c"]


def test_threshold_table_counts_discarded_and_accepted():
    correct = np.array([True, True, True, False, False])
    scores = np.array([0.9, 0.5, 0.2, 0.4, 0.1])
    rows = threshold_table(correct, scores, [0.0, 0.3, 0.6])
    assert [(r["correct_discarded"], r["wrong_accepted"]) for r in rows] == [(0, 2), (1, 1), (2, 0)]
    assert rows[1]["correct_discarded_rate"] == 1 / 3 and rows[1]["wrong_accepted_rate"] == 0.5


def test_markdown_summary_has_every_section():
    result = evaluate_predictions(["a", "b"], ["a", "a"], [0.9, 0.4], labels=["a", "b"])
    text = render_markdown(result, "Held out")
    for part in (
        "## Held out",
        "Accuracy: **0.500**",
        "| *macro avg* |",
        "Confusion matrix",
        "Winning probability",
        "| 0.50 |",
        "b taken for a (p = 0.400)",
    ):
        assert part in text
