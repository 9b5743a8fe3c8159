"""Closed-set evaluation as the thesis reported it, as a JSON-ready dict and as Markdown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLDS = tuple(round(value, 2) for value in np.arange(0.05, 1.0, 0.05))


def score_statistics(scores: np.ndarray) -> dict:
    """count, mean, std, min, max of a 1-D array (None values when empty)."""
    if len(scores) == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "count": len(scores),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
    }


def threshold_table(
    correct: np.ndarray, scores: np.ndarray, thresholds: Sequence[float]
) -> list[dict]:
    """For each threshold t (answers with score < t are discarded): how many correct answers
    are discarded and how many wrong ones are still accepted, as counts and fractions."""
    n_correct, n_wrong = int(correct.sum()), int((~correct).sum())
    rows = []
    for threshold in thresholds:
        kept = scores >= threshold
        discarded = int((correct & ~kept).sum())
        accepted = int((~correct & kept).sum())
        rows.append(
            {
                "threshold": float(threshold),
                "correct_discarded": discarded,
                "correct_discarded_rate": discarded / n_correct if n_correct else 0.0,
                "wrong_accepted": accepted,
                "wrong_accepted_rate": accepted / n_wrong if n_wrong else 0.0,
            }
        )
    return rows


DENSE_CONFUSION_CLASSES = 200
"""Up to this many classes an evaluation holds the whole confusion matrix, counts and rows
normalised (``confusion_form`` "dense"): 0.8 MB of JSON written with indent=2 at 200
classes, growing with the square of the classes (20 MB at 1,000, about 2 GB at 10,000; see
bench/evaluation_scale.py). Above it only the non-zero cells off the diagonal
(``confusion_form`` "sparse", ``confusions``): at most one per wrong answer; each class's
correct answers are its recall x support."""


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator (K,) as float64, 0 where the denominator is 0."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def _average(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean of per-class values, weighted when the weights are not all 0 (0 without
    classes)."""
    if not len(values):
        return 0.0
    return float(
        np.average(values, weights=weights if weights is not None and weights.any() else None)
    )


def _largest_first(
    labels: Sequence[str], rows: np.ndarray, columns: np.ndarray, counts: np.ndarray
) -> list[list]:
    """The cells (rows, columns, counts: (M,) label indices and faces) off the diagonal as
    [truth, predicted, faces], most faces first, then by truth and predicted label."""
    off = rows != columns
    rows, columns, counts = rows[off], columns[off], counts[off]
    order = np.lexsort((columns, rows, -counts))
    return [
        [labels[row], labels[column], count]
        for row, column, count in zip(
            rows[order].tolist(), columns[order].tolist(), counts[order].tolist(), strict=True
        )
    ]


def evaluate_predictions(
    truth: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[float],
    labels: Sequence[str],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    dense_classes: int = DENSE_CONFUSION_CLASSES,
) -> dict:
    """Accuracy, the confusions, precision/recall/F1/support per class with macro and
    weighted averages (sklearn's classification_report figures, zero_division=0),
    winning-score statistics and a threshold table.

    ``truth``, ``predicted``, ``scores``: one entry per evaluated face; ``labels`` all classes.
    Up to ``dense_classes`` classes the confusions are the K x K ``confusion_matrix`` (counts)
    and ``confusion_matrix_normalised`` (rows sum to 1); above it ``confusions``, the
    [truth, predicted, faces] cells off the diagonal, most faces first (``confusion_form``
    says which). Memory and time grow with the faces and the classes, never with K x K
    above ``dense_classes``.
    """
    truth_array = np.asarray(truth, dtype=str)
    predicted_array = np.asarray(predicted, dtype=str)
    score_array = np.asarray(scores, dtype=np.float64)
    correct = truth_array == predicted_array
    faces = len(truth_array)
    label_array, codes = np.unique(
        np.concatenate([np.asarray(labels, dtype=str), truth_array, predicted_array]),
        return_inverse=True,
    )
    labels = label_array.tolist()
    classes = len(labels)
    truth_codes = codes[len(codes) - 2 * faces : len(codes) - faces]
    predicted_codes = codes[len(codes) - faces :]
    support = np.bincount(truth_codes, minlength=classes)
    answered = np.bincount(predicted_codes, minlength=classes)
    hits = np.bincount(truth_codes[correct], minlength=classes)
    figures = {
        "precision": _divide(hits, answered),
        "recall": _divide(hits, support),
        "f1-score": _divide(2.0 * hits, (support + answered).astype(np.float64)),
    }
    per_class = {
        label: {"precision": precision, "recall": recall, "f1-score": f1, "support": float(count)}
        for label, precision, recall, f1, count in zip(
            labels, *(values.tolist() for values in figures.values()), support.tolist(), strict=True
        )
    }
    cells, cell_counts = np.unique(truth_codes * classes + predicted_codes, return_counts=True)
    rows, columns = np.divmod(cells, max(classes, 1))
    if classes <= dense_classes:
        counts = np.zeros((classes, classes), dtype=np.int64)
        counts[rows, columns] = cell_counts
        row_sums = counts.sum(axis=1, keepdims=True)
        normalised = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
        confusions = {
            "confusion_form": "dense",
            "confusion_matrix": counts.tolist(),
            "confusion_matrix_normalised": np.round(normalised, 4).tolist(),
        }
    else:
        confusions = {
            "confusion_form": "sparse",
            "confusions": _largest_first(labels, rows, columns, cell_counts),
        }
    return {
        "faces": faces,
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()) if faces else None,
        "labels": labels,
        **confusions,
        "per_class": per_class,
        "macro_avg": {
            **{name: _average(values) for name, values in figures.items()},
            "support": float(faces),
        },
        "weighted_avg": {
            **{name: _average(values, support) for name, values in figures.items()},
            "support": float(faces),
        },
        "score_statistics": {
            "all": score_statistics(score_array),
            "correct": score_statistics(score_array[correct]),
            "wrong": score_statistics(score_array[~correct]),
        },
        "thresholds": threshold_table(correct, score_array, thresholds),
        "errors": [
            {"truth": t, "predicted": p, "score": s}
            for t, p, s, ok in zip(
                truth_array.tolist(),
                predicted_array.tolist(),
                score_array.tolist(),
                correct.tolist(),
                strict=True,
            )
            if not ok
        ],
    }


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def worst_classes(evaluation: dict, count: int) -> list[str]:
    """The ``count`` labels with the lowest F1 (then recall, then the most support), worst
    first."""
    per_class = evaluation["per_class"]
    return sorted(
        evaluation["labels"],
        key=lambda label: (
            per_class[label]["f1-score"],
            per_class[label]["recall"],
            -per_class[label]["support"],
            label,
        ),
    )[:count]


def has_matrix(evaluation: dict) -> bool:
    """Whether the evaluation holds the dense K x K ``confusion_matrix`` (an evaluation made
    before ``confusion_form`` existed does)."""
    return evaluation.get("confusion_form", "dense") == "dense"


def confusion_cells(evaluation: dict) -> list[tuple[str, str, int]]:
    """Every non-zero (truth, predicted, faces) cell off the diagonal, most faces first, then
    by truth and predicted label; from either ``confusion_form`` (an evaluation without one
    is dense)."""
    if not has_matrix(evaluation):
        return [tuple(cell) for cell in evaluation["confusions"]]
    labels = evaluation["labels"]
    counts = np.asarray(evaluation["confusion_matrix"], dtype=np.int64)
    rows, columns = np.nonzero(counts.reshape(len(labels), len(labels)))
    cells = _largest_first(labels, rows, columns, counts[rows, columns])
    return [tuple(cell) for cell in cells]


def top_confusions(evaluation: dict, count: int) -> list[tuple[str, str, int]]:
    """The ``count`` largest (truth, predicted, faces) cells off the diagonal, largest
    first."""
    return confusion_cells(evaluation)[:count]


def render_markdown(
    evaluation: dict, title: str, max_classes: int = DENSE_CONFUSION_CLASSES
) -> str:
    """The evaluation dict as a readable Markdown summary (also fine in a terminal). With
    more than ``max_classes`` labels, or sparse confusions, it stays short: the per-class
    table holds the worst ``max_classes`` (``worst_classes``), the confusion matrix gives way
    to the ``max_classes`` largest confusions, the wrong answers are cut at ``max_classes``,
    and a note says what was left out (everything is in the evaluation dict, the JSON)."""
    labels = evaluation["labels"]
    summarised = len(labels) > max_classes or not has_matrix(evaluation)
    shown = worst_classes(evaluation, max_classes) if summarised else labels
    lines = [f"## {title}", ""]
    lines.append(
        f"Accuracy: **{_fmt(evaluation['accuracy'])}** "
        f"({evaluation['correct']} of {evaluation['faces']} faces)"
    )
    for note in evaluation.get("notes", []):
        lines.append(f"- {note}")
    if summarised:
        cells = confusion_cells(evaluation)
        largest = cells[:max_classes]
        lines.append(
            f"- {len(labels)} people: only the {len(shown)} with the lowest F1 are listed, "
            f"the {len(largest)} largest of the {len(cells)} confusions instead of the "
            f"{len(labels)} x {len(labels)} matrix, and at most {max_classes} wrong answers; "
            "the JSON (`--json FILE`) holds them all"
        )
    lines += ["", "| person | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for label in shown:
        row = evaluation["per_class"][label]
        lines.append(
            f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | "
            f"{row['f1-score']:.3f} | {int(row['support'])} |"
        )
    for name in ("macro_avg", "weighted_avg"):
        row = evaluation[name]
        lines.append(
            f"| *{name.replace('_', ' ')}* | {row['precision']:.3f} | {row['recall']:.3f} "
            f"| {row['f1-score']:.3f} | {int(row['support'])} |"
        )
    if summarised:
        lines += ["", "Largest confusions:", "", "| truth | taken for | faces |", "|---|---|---|"]
        lines += [f"| {truth} | {predicted} | {faces} |" for truth, predicted, faces in largest]
    else:
        lines += ["", "Confusion matrix (rows: truth, normalised per class):", ""]
        short = [label[:12] for label in labels]
        lines += [
            "| truth \\ predicted | " + " | ".join(short) + " |",
            "|---" * (len(short) + 1) + "|",
        ]
        for label, row in zip(short, evaluation["confusion_matrix_normalised"], strict=True):
            lines.append(f"| {label} | " + " | ".join(f"{value:.2f}" for value in row) + " |")
    lines += [
        "",
        "Winning probability:",
        "",
        "| answers | count | mean | std | min | max |",
        "|---|---|---|---|---|---|",
    ]
    for group, stats in evaluation["score_statistics"].items():
        lines.append(
            f"| {group} | {stats['count']} | {_fmt(stats['mean'])} | {_fmt(stats['std'])} "
            f"| {_fmt(stats['min'])} | {_fmt(stats['max'])} |"
        )
    lines += ["", "| threshold | correct discarded | wrong still accepted |", "|---|---|---|"]
    for row in evaluation["thresholds"]:
        lines.append(
            f"| {row['threshold']:.2f} | {row['correct_discarded']} "
            f"({row['correct_discarded_rate']:.1%}) | {row['wrong_accepted']} "
            f"({row['wrong_accepted_rate']:.1%}) |"
        )
    errors = evaluation["errors"]
    if errors:
        listed = errors[:max_classes] if summarised else errors
        lines += ["", "Wrong answers:", ""]
        lines += [
            f"- {error['truth']} taken for {error['predicted']} (p = {error['score']:.3f})"
            for error in listed
        ]
        if len(listed) < len(errors):
            lines.append(f"- ... and {len(errors) - len(listed)} more (in the JSON)")
    return "\n".join(lines) + "\n"
