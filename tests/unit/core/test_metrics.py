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


def many_people(people: int = 125, faces: int = 4, seed: int = 0) -> dict:
    """An evaluation of ``people`` classes, ``faces`` each, about 10 % answered wrongly."""
    rng = np.random.default_rng(seed)
    labels = [f"Person_{n:03d}" for n in range(people)]
    truth = [label for label in labels for _ in range(faces)]
    predicted = [
        label if rng.random() > 0.1 else labels[int(rng.integers(people))] for label in truth
    ]
    return evaluate_predictions(truth, predicted, rng.random(len(truth)), labels=labels)


def test_a_large_evaluation_prints_its_worst_classes_and_largest_confusions():
    result = many_people()
    full = render_markdown(result, "Held out")
    short = render_markdown(result, "Held out", max_classes=20)
    assert len(full.splitlines()) > 250 and max(map(len, full.splitlines())) > 1000
    assert len(short.splitlines()) < 120 and max(map(len, short.splitlines())) < 300
    larger = render_markdown(many_people(people=1000), "Held out", max_classes=20)
    assert len(larger.splitlines()) == len(short.splitlines())  # whatever the gallery's size
    assert "125 people: only the 20 with the lowest F1 are listed" in short
    assert "Confusion matrix" not in short and "Largest confusions:" in short
    rows = [line for line in short.splitlines() if line.startswith("| Person_")]
    listed = [row.split(" | ")[0].removeprefix("| ") for row in rows[:20]]
    f1 = [result["per_class"][label]["f1-score"] for label in listed]
    assert (
        f1 == sorted(f1)
        and max(f1)
        <= sorted(
            row["f1-score"] for row in (result["per_class"][label] for label in result["labels"])
        )[19]
    )
    confusions = rows[20:]
    assert 0 < len(confusions) <= 20
    faces = [int(row.rstrip(" |").split(" | ")[-1]) for row in confusions]
    assert faces == sorted(faces, reverse=True)
    wrong = len(result["errors"])
    assert f"... and {wrong - 20} more (in the JSON)" in short
    assert render_markdown(result, "Held out", max_classes=125) == full
