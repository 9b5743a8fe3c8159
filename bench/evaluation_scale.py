"""Closed-set evaluation (facerec.core.metrics.evaluate_predictions) at 125, 1,000 and 10,000
classes: time, peak Python memory (tracemalloc) and JSON size.

Synthetic answers: ``PER_CLASS`` faces per class, about ``ERROR_RATE`` of them answered with a
random other class. The JSON is written as the stores write it (indent=2). Prints a Markdown
table. Run ``.venv/bin/python bench/evaluation_scale.py [CLASSES ...]``.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from facerec.core.metrics import evaluate_predictions

CLASSES = (125, 1_000, 10_000)
PER_CLASS = 10
ERROR_RATE = 0.01


def answers(classes: int, seed: int = 0) -> tuple[list[str], list[str], list[float], list[str]]:
    """(truth, predicted, scores, labels): ``PER_CLASS`` faces per class, about
    ``ERROR_RATE`` answered with a random other class."""
    rng = np.random.default_rng(seed)
    labels = [f"Person_{n:05d}" for n in range(classes)]
    truth = np.repeat(np.arange(classes), PER_CLASS)
    predicted = truth.copy()
    wrong = rng.random(len(truth)) < ERROR_RATE
    predicted[wrong] = (truth[wrong] + rng.integers(1, classes, wrong.sum())) % classes
    names = np.array(labels)
    return names[truth].tolist(), names[predicted].tolist(), rng.random(len(truth)).tolist(), labels


def measure(evaluate: Callable[..., dict], classes: int) -> dict:
    """Seconds of an untraced run, then the peak traced MB and the JSON MB of a traced one."""
    inputs = answers(classes)
    start = time.perf_counter()
    evaluation = evaluate(*inputs)
    seconds = time.perf_counter() - start
    del evaluation
    tracemalloc.start()
    evaluation = evaluate(*inputs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = len(json.dumps(evaluation, indent=2, ensure_ascii=False).encode())
    return {
        "classes": classes,
        "faces": len(inputs[0]),
        "wrong": len(evaluation["errors"]),
        "form": evaluation.get("confusion_form", "dense"),
        "seconds": seconds,
        "peak_mb": peak / 1e6,
        "json_mb": size / 1e6,
    }


def main(classes: tuple[int, ...]) -> None:
    print("| classes | faces | wrong | confusions | seconds | peak MB | JSON MB |")
    print("|---|---|---|---|---|---|---|")
    for count in classes:
        row = measure(evaluate_predictions, count)
        print(
            f"| {row['classes']:,} | {row['faces']:,} | {row['wrong']:,} | {row['form']} "
            f"| {row['seconds']:.3f} | {row['peak_mb']:.1f} | {row['json_mb']:.3f} |"
        )


if __name__ == "__main__":
    main(tuple(int(value) for value in sys.argv[1:]) or CLASSES)
