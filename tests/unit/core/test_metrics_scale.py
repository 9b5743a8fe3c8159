"""Closed-set evaluation at scale: the dense confusion matrix up to DENSE_CONFUSION_CLASSES
classes (the figures sklearn gives), the sparse confusions above it (the same counts, never a
K x K array), and the Markdown summary of either form."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix

from facerec.core.metrics import (
    DENSE_CONFUSION_CLASSES,
    confusion_cells,
    evaluate_predictions,
    render_markdown,
    top_confusions,
)


def answers(people: int, faces: int, wrong: float, seed: int = 0):
    """(truth, predicted, scores, labels): ``faces`` per person, about ``wrong`` of them
    answered wrongly: "unknown" (not a label) 10 % of the time, else the next person (a
    look-alike) or a random one; the last person has no face and is never answered."""
    rng = np.random.default_rng(seed)
    labels = [f"Person_{n:05d}" for n in range(people)]
    truth = [index for index in range(people - 1) for _ in range(faces)]
    predicted = []
    for index in truth:
        draw = rng.random()
        if rng.random() > wrong:
            predicted.append(labels[index])
        elif draw < 0.1:
            predicted.append("unknown")
        else:
            other = (index + 1) % (people - 1) if draw < 0.55 else int(rng.integers(people - 1))
            predicted.append(labels[other])
    return [labels[index] for index in truth], predicted, rng.random(len(truth)).tolist(), labels


def test_below_the_limit_the_matrix_and_figures_are_sklearns():
    truth, predicted, scores, labels = answers(people=125, faces=4, wrong=0.2)
    result = evaluate_predictions(truth, predicted, scores, labels)
    every = sorted({*labels, "unknown"})
    assert result["confusion_form"] == "dense" and result["labels"] == every
    counts = confusion_matrix(truth, predicted, labels=every)
    assert result["confusion_matrix"] == counts.tolist()
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    assert result["confusion_matrix_normalised"] == np.round(normalised, 4).tolist()
    report = classification_report(
        truth, predicted, labels=every, output_dict=True, zero_division=0
    )
    assert result["per_class"] == {label: report[label] for label in every}  # bit for bit
    assert result["macro_avg"] == report["macro avg"]
    assert result["weighted_avg"] == report["weighted avg"]
    assert result["per_class"]["Person_00124"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1-score": 0.0,
        "support": 0.0,
    }


def test_above_the_limit_the_sparse_confusions_hold_the_dense_counts():
    truth, predicted, scores, labels = answers(people=1000, faces=5, wrong=0.05)
    sparse = evaluate_predictions(truth, predicted, scores, labels)
    assert sparse["confusion_form"] == "sparse" and len(sparse["labels"]) == 1001
    assert "confusion_matrix" not in sparse and "confusion_matrix_normalised" not in sparse
    every = sparse["labels"]
    counts = confusion_matrix(truth, predicted, labels=every)
    np.fill_diagonal(counts, 0)
    rows, columns = np.nonzero(counts)
    expected = {(every[r], every[c]): int(counts[r, c]) for r, c in zip(rows, columns, strict=True)}
    assert {(t, p): faces for t, p, faces in sparse["confusions"]} == expected
    assert len(sparse["confusions"]) == len(expected)  # each cell once
    faces = [cell[2] for cell in sparse["confusions"]]
    assert faces == sorted(faces, reverse=True) and max(faces) >= 2
    # The same answers kept dense: every other figure is the same, and both forms read alike.
    dense = evaluate_predictions(truth, predicted, scores, labels, dense_classes=1001)
    assert dense["confusion_form"] == "dense"
    forms = {"confusion_form", "confusions", "confusion_matrix", "confusion_matrix_normalised"}
    assert {k: v for k, v in sparse.items() if k not in forms} == {
        k: v for k, v in dense.items() if k not in forms
    }
    assert confusion_cells(sparse) == confusion_cells(dense)
    assert top_confusions(sparse, 20) == top_confusions(dense, 20)
    # The diagonal: each class's correct answers are its recall x support.
    correct = [round(row["recall"] * row["support"]) for row in sparse["per_class"].values()]
    assert correct == np.diagonal(dense["confusion_matrix"]).tolist()
    assert json.loads(json.dumps(sparse)) == sparse


def test_an_evaluation_without_a_form_is_read_as_dense():
    result = evaluate_predictions(
        ["a", "a", "b", "b", "c"], ["b", "b", "a", "c", "a"], [0.5] * 5, labels=["a", "b", "c"]
    )
    del result["confusion_form"]  # written before the sparse form existed
    # Most faces first, then by truth and answer.
    assert confusion_cells(result) == [("a", "b", 2), ("b", "a", 1), ("b", "c", 1), ("c", "a", 1)]


@pytest.mark.parametrize(
    "dense_classes, key, empty",
    [(DENSE_CONFUSION_CLASSES, "confusion_matrix", [[0, 0], [0, 0]]), (0, "confusions", [])],
)
def test_no_answer_gives_zeros_in_either_form(dense_classes, key, empty):
    result = evaluate_predictions([], [], [], labels=["b", "a"], dense_classes=dense_classes)
    assert result["labels"] == ["a", "b"] and result["accuracy"] is None
    assert result["macro_avg"]["f1-score"] == 0.0 and result["weighted_avg"]["recall"] == 0.0
    assert result[key] == empty and confusion_cells(result) == []
    assert "Accuracy: **-** (0 of 0 faces)" in render_markdown(result, "Nothing")


def test_thousands_of_classes_stay_small_and_never_build_a_square_array():
    people = 5000
    truth, predicted, scores, labels = answers(people=people, faces=2, wrong=0.01)
    tracemalloc.start()
    result = evaluate_predictions(truth, predicted, scores, labels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # One K x K int64 array would be 200 MB; the whole evaluation peaks far below a tenth.
    assert peak < people * people * 8 / 10
    size = len(json.dumps(result, indent=2).encode())
    assert size < 1_000_000  # the dense matrices would be over 600 MB of JSON
    assert len(result["confusions"]) <= len(result["errors"])


def test_the_markdown_of_a_sparse_evaluation_is_the_summary():
    truth, predicted, scores, labels = answers(people=2000, faces=3, wrong=0.05)
    result = evaluate_predictions(truth, predicted, scores, labels)
    cells = confusion_cells(result)
    for max_classes, listed in ((20, 20), (DENSE_CONFUSION_CLASSES, 200), (5000, 2001)):
        text = render_markdown(result, "Held out", max_classes=max_classes)
        assert "Confusion matrix" not in text and "Largest confusions:" in text
        assert (
            f"- 2001 people: only the {listed} with the lowest F1 are listed, the "
            f"{min(max_classes, len(cells))} largest of the {len(cells)} confusions instead of "
            "the 2001 x 2001 matrix"
        ) in text
        truth_name, answer, faces = cells[0]
        assert f"| {truth_name} | {answer} | {faces} |" in text
        assert max(map(len, text.splitlines())) < 300
    assert render_markdown(result, "Held out") == render_markdown(
        result, "Held out", max_classes=DENSE_CONFUSION_CLASSES
    )
    wrong = len(result["errors"])
    assert f"... and {wrong - 20} more (in the JSON)" in render_markdown(result, "x", 20)
