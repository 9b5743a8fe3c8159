"""The report's matplotlib Figures (drawn by the Agg canvas) and face thumbnails, as PNG data
URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from facerec.analysis.report.numbers import engine_title, threshold_text
from facerec.core.metrics import confusion_cells, has_matrix

THUMBNAIL_PX = 96
HEAT_MAP_CLASSES = 40  # a readable heat map: at most 40 rows and columns of names
TOP_CONFUSIONS = 30  # bars drawn instead of a larger matrix
COLOURS = {
    "correct": "#2e7d32",
    "wrong": "#c62828",
    "facenet": "#1565c0",
    "nearest": "#00838f",
    "rekognition": "#ef6c00",
    "hybrid": "#2e7d32",
    "cost": "#6a1b9a",
}


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure_uri(figure: Figure) -> str:
    """A Figure as a PNG data URI, at 100 dpi (a 10 x 4.8 in Figure: 1000 x 480 px)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return _data_uri(buffer.getvalue())


def heat_map_fits(evaluation: dict) -> bool:
    """Whether the confusion matrix is drawn whole: a dense one of at most
    ``HEAT_MAP_CLASSES`` classes (larger ones show their largest confusions instead)."""
    return has_matrix(evaluation) and len(evaluation["labels"]) <= HEAT_MAP_CLASSES


def confusion_figure(evaluation: dict, title: str) -> Figure:
    """Heat map of the confusion matrix normalised per true class (rows sum to 1) when it
    fits (``heat_map_fits``); otherwise a bar chart of the ``TOP_CONFUSIONS`` largest
    confusions (faces per truth -> answer cell, with the share of the true class), its title
    saying how many were left out."""
    if not heat_map_fits(evaluation):
        return top_confusions_figure(evaluation, title)
    labels = evaluation["labels"]
    matrix = np.array(evaluation["confusion_matrix_normalised"])
    counts = np.array(evaluation["confusion_matrix"])
    side = min(12.0, 2.0 + 0.45 * len(labels))
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("answer")
    axes.set_ylabel("truth")
    axes.set_title(title)
    if len(labels) <= 20:
        for row in range(len(labels)):
            for column in range(len(labels)):
                if counts[row, column]:
                    value = matrix[row, column]
                    axes.text(
                        column,
                        row,
                        f"{value:.2f}\n({counts[row, column]})",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if value > 0.5 else "black",
                    )
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of the true class")
    return figure


def top_confusions_figure(evaluation: dict, title: str) -> Figure:
    """Horizontal bars of the ``TOP_CONFUSIONS`` largest (truth, answer, faces) cells off
    the diagonal, largest on top, each labelled with its faces and share of the true class;
    the title says how many confusions and people are left out."""
    cells = confusion_cells(evaluation)
    shown = cells[:TOP_CONFUSIONS]
    people = len(evaluation["labels"])
    figure = Figure(figsize=(10, 1.6 + 0.3 * max(len(shown), 3)), layout="constrained")
    axes = figure.subplots()
    if not shown:
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no wrong answers", ha="center", va="center", fontsize=14)
        axes.set_title(f"{title}: {people:,} people, no confusion")
        return figure
    faces = [count for _, _, count in shown]
    positions = range(len(shown))
    axes.barh(positions, faces, color=COLOURS["wrong"], alpha=0.75)
    axes.set_yticks(positions, [f"{truth} → {answer}" for truth, answer, _ in shown], fontsize=8)
    axes.invert_yaxis()
    per_class = evaluation["per_class"]
    for position, (truth, _, count) in zip(positions, shown, strict=True):
        share = count / per_class[truth]["support"]
        axes.text(count, position, f" {count} ({share:.0%})", va="center", fontsize=8)
    axes.set_xlim(0, max(faces) * 1.2)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("faces answered wrongly (in brackets: share of the true person's faces)")
    left_out = len(cells) - len(shown)
    axes.set_title(
        f"{title}: the {len(shown)} largest confusions (truth → answer)\n"
        f"of {len(cells):,} among {people:,} people"
        + (f"; {left_out:,} smaller ones left out" if left_out else "")
    )
    return figure


def score_figure(correct: np.ndarray, scores: np.ndarray, score_name: str, title: str) -> Figure:
    """Histogram of correct and wrong answers' scores, and their box plots side by side."""
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    histogram, boxes = figure.subplots(1, 2, width_ratios=(3, 2))
    groups = [
        (name, scores[mask], COLOURS[name])
        for name, mask in (("correct", correct), ("wrong", ~correct))
        if mask.any()
    ]
    if score_name.startswith(("probability", "similarity")):
        top = 1.0 if score_name.startswith("probability") else 100.0
        low = min(float(scores.min()), top * 0.95) if len(scores) else 0.0
        bins = np.linspace(np.floor(low / top * 20) * top / 20, top, 21)
    else:  # an open-ended scale (the open-set score): bins of 0.05 over the observed range
        low = np.floor(float(scores.min()) * 20) / 20 if len(scores) else 0.0
        high = np.ceil(float(scores.max()) * 20) / 20 if len(scores) else 1.0
        bins = np.arange(low, max(high, low + 0.05) + 0.025, 0.05)
    for name, values, colour in groups:
        histogram.hist(values, bins=bins, alpha=0.65, color=colour, label=f"{name} ({len(values)})")
    histogram.set_xlabel(score_name)
    histogram.set_ylabel("answers")
    histogram.set_title(f"{title}: distribution")
    histogram.legend()
    plot = boxes.boxplot(
        [values for _, values, _ in groups],
        tick_labels=[name for name, _, _ in groups],
        patch_artist=True,
        widths=0.5,
    )
    for patch, (_, _, colour) in zip(plot["boxes"], groups, strict=True):
        patch.set_facecolor(colour)
        patch.set_alpha(0.5)
    boxes.set_ylabel(score_name)
    boxes.set_title(f"{title}: box plots")
    return figure


def cost_figure(cost: dict) -> Figure:
    """Monthly cost of both paths against images a month (log-log), tier boundaries dotted."""
    rows = cost["rows"]
    volumes = [row["images"] for row in rows]
    figure = Figure(figsize=(9, 4.2), layout="constrained")
    axes = figure.subplots()
    axes.plot(
        volumes,
        [row["rekognition_total"] for row in rows],
        "o-",
        color=COLOURS["rekognition"],
        label="Rekognition (search + face storage)",
    )
    axes.plot(
        volumes,
        [row["facenet_total"] for row in rows],
        "s-",
        color=COLOURS["facenet"],
        label=f"FaceNet on Lambda ({cost['memory_mb']} MB, {cost['seconds_per_photo']:.3f} s)",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    lower = 0
    for index, (size, price) in enumerate(cost["prices"]["rekognition_tiers"]):
        upper = volumes[-1] if size is None else lower + size
        start, end = max(lower, volumes[0]), min(upper, volumes[-1])
        if start < end:
            axes.axvspan(start, end, color="grey", alpha=0.07 if index % 2 else 0.0)
            axes.text(
                (start * end) ** 0.5,
                0.97,
                f"${price * 1000:.2f} / 1,000",
                transform=axes.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=8,
                color="#555",
            )
        lower = upper
    axes.set_xlabel("photos a month")
    axes.set_ylabel("USD a month")
    axes.set_title("Monthly cost (bands: Rekognition's price per 1,000 images)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def threshold_position(value, low: float, high: float) -> float:
    """Where a routing threshold ("-inf", "inf" or a number) goes on a plot whose finite
    thresholds span [low, high]: the infinite ones just outside it."""
    value = float(value)
    pad = max(high - low, 0.1) * 0.12
    if value == -np.inf:
        return low - pad
    return high + pad if value == np.inf else value


def hybrid_figure(hybrid: dict) -> Figure:
    """Hybrid accuracy (left axis) and USD per 1,000 faces (right axis) against the routing
    threshold, as steps (a threshold's figures hold from just above the previous candidate up
    to it); both single engines as horizontal reference lines, the best threshold marked."""
    points = hybrid["points"]
    values = [float(point["threshold"]) for point in points]
    finite = [value for value in values if np.isfinite(value)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    xs = [threshold_position(value, low, high) for value in values]
    figure = Figure(figsize=(10, 4.8), layout="constrained")
    accuracy = figure.subplots()
    cost = accuracy.twinx()
    facenet, rekognition = hybrid["facenet_alone"], hybrid["rekognition_alone"]
    accuracy.plot(
        xs,
        [point["accuracy"] for point in points],
        "o-",
        drawstyle="steps-pre",
        markersize=3,
        color=COLOURS["hybrid"],
        label="hybrid: accuracy",
    )
    cost.plot(
        xs,
        [point["cost_per_1000"] for point in points],
        "s-",
        drawstyle="steps-pre",
        markersize=3,
        color=COLOURS["cost"],
        label="hybrid: USD per 1,000 faces",
    )
    for name, engine in (("facenet", facenet), ("rekognition", rekognition)):
        title = engine_title(name)
        accuracy.axhline(
            engine["accuracy"],
            color=COLOURS[name],
            ls="--",
            lw=1.2,
            label=f"{title} alone: accuracy",
        )
        cost.axhline(
            engine["cost_per_1000"],
            color=COLOURS[name],
            ls=":",
            lw=1.4,
            label=f"{title} alone: cost",
        )
    best = hybrid["best"]
    where = threshold_position(best["threshold"], low, high)
    accuracy.axvline(where, color="#333", lw=1, alpha=0.7)
    accuracy.plot([where], [best["accuracy"]], "*", markersize=14, color="#333", zorder=5)
    accuracy.annotate(
        f"best: {threshold_text(best['threshold'])}",
        (where, best["accuracy"]),
        xytext=(6, -14),
        textcoords="offset points",
        fontsize=9,
    )
    ticks = [tick for tick in MaxNLocator(6).tick_values(low, high) if low <= tick <= high]
    ticks = ticks if finite else []
    positions = [
        threshold_position("-inf", low, high),
        *ticks,
        threshold_position("inf", low, high),
    ]
    accuracy.set_xticks(positions, ["−∞", *(f"{tick:g}" for tick in ticks), "+∞"])
    lowest = min(point["accuracy"] for point in [*points, facenet, rekognition])
    accuracy.set_ylim(max(0.0, lowest - 0.05), 1.02)
    top = max(point["cost_per_1000"] for point in [*points, facenet, rekognition])
    cost.set_ylim(0, top * 1.1 if top > 0 else 1)
    accuracy.set_xlabel("routing threshold on FaceNet's open-set score (below it: Rekognition)")
    accuracy.set_ylabel("accuracy on the held-out faces")
    cost.set_ylabel("USD per 1,000 faces")
    accuracy.set_title("Hybrid routing: accuracy and cost against the routing threshold")
    accuracy.grid(True, alpha=0.3)
    handles = [
        handle for axes in (accuracy, cost) for handle in axes.get_legend_handles_labels()[0]
    ]
    figure.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    return figure


def history_figure(history: list[dict]) -> Figure:
    """Training time against gallery size for every model in the models store."""
    figure = Figure(figsize=(7, 3.4), layout="constrained")
    axes = figure.subplots()
    axes.plot(
        [item["train_faces"] for item in history],
        [item["training_seconds"] for item in history],
        "o",
        color=COLOURS["facenet"],
    )
    axes.set_xlabel("training faces")
    axes.set_ylabel("training time (s)")
    axes.set_title("SVC training time against gallery size (every model trained here)")
    axes.grid(True, alpha=0.3)
    return figure


def thumbnail(read_crop: Callable[[str], bytes], key: str) -> str | None:
    """A face crop as a small PNG data URI, or None when the crop cannot be read."""
    try:
        with Image.open(io.BytesIO(read_crop(key))) as image:
            small = image.convert("RGB").resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.LANCZOS)
    except (OSError, KeyError, ValueError):
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return _data_uri(buffer.getvalue())
