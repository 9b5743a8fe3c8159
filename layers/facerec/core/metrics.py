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


def evaluate_predictions(
    truth: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[float],
    labels: Sequence[str],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict:
    """Accuracy, per-class confusion matrix (rows normalised), precision/recall/support with
    macro and weighted averages, winning-score statistics and a threshold table.

    ``truth``, ``predicted``, ``scores``: one entry per evaluated face; ``labels`` all classes.
    """
    truth_array, predicted_array = np.asarray(truth), np.asarray(predicted)
    score_array = np.asarray(scores, dtype=np.float64)
    correct = truth_array == predicted_array
    labels = sorted(set(labels) | set(truth_array) | set(predicted_array))
    if len(truth_array):
        from sklearn.metrics import classification_report, confusion_matrix

        counts = confusion_matrix(truth_array, predicted_array, labels=labels)
        report = classification_report(
            truth_array, predicted_array, labels=labels, output_dict=True, zero_division=0
        )
    else:  # nothing was answered: every figure is zero (sklearn refuses empty input)
        counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
        zero = {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
        report = {**dict.fromkeys(labels, zero), "macro avg": zero, "weighted avg": zero}
    row_sums = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
    return {
        "faces": len(truth_array),
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()) if len(correct) else None,
        "labels": labels,
        "confusion_matrix": counts.tolist(),
        "confusion_matrix_normalised": np.round(normalised, 4).tolist(),
        "per_class": {label: report[label] for label in labels},
        "macro_avg": report["macro avg"],
        "weighted_avg": report["weighted avg"],
        "score_statistics": {
            "all": score_statistics(score_array),
            "correct": score_statistics(score_array[correct]),
            "wrong": score_statistics(score_array[~correct]),
        },
        "thresholds": threshold_table(correct, score_array, thresholds),
        "errors": [
            {"truth": str(t), "predicted": str(p), "score": float(s)}
            for t, p, s, ok in zip(truth_array, predicted_array, score_array, correct, strict=True)
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


def top_confusions(evaluation: dict, count: int) -> list[tuple[str, str, int]]:
    """The ``count`` largest (truth, predicted, faces) cells off the confusion matrix's
    diagonal, largest first."""
    labels = evaluation["labels"]
    counts = np.asarray(evaluation["confusion_matrix"])
    if counts.size == 0:
        return []
    off = counts.copy()
    np.fill_diagonal(off, 0)
    cells = np.argsort(off, axis=None, kind="stable")[::-1][:count]
    rows, columns = np.unravel_index(cells, off.shape)
    return [
        (labels[row], labels[column], int(off[row, column]))
        for row, column in zip(rows, columns, strict=True)
        if off[row, column] > 0
    ]


def render_markdown(evaluation: dict, title: str, max_classes: int | None = None) -> str:
    """The evaluation dict as a readable Markdown summary (also fine in a terminal). With
    more than ``max_classes`` labels it stays short: the per-class table holds the worst
    ``max_classes`` (``worst_classes``), the confusion matrix gives way to the largest
    confusions, the wrong answers are cut at ``max_classes``, and a note says what was left
    out (everything is in the evaluation dict, the JSON)."""
    labels = evaluation["labels"]
    summarised = max_classes is not None and len(labels) > max_classes
    shown = worst_classes(evaluation, max_classes) if summarised else labels
    lines = [f"## {title}", ""]
    lines.append(
        f"Accuracy: **{_fmt(evaluation['accuracy'])}** "
        f"({evaluation['correct']} of {evaluation['faces']} faces)"
    )
    for note in evaluation.get("notes", []):
        lines.append(f"- {note}")
    if summarised:
        lines.append(
            f"- {len(labels)} people: only the {len(shown)} with the lowest F1 are listed, "
            f"the {max_classes} largest confusions instead of the {len(labels)} x "
            f"{len(labels)} matrix, and at most {max_classes} wrong answers; the JSON "
            "(`--json FILE`) holds them all"
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
        lines += [
            f"| {truth} | {predicted} | {faces} |"
            for truth, predicted, faces in top_confusions(evaluation, max_classes)
        ]
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
