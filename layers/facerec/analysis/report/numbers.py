"""The report's numbers from a comparison (``build``), and the text formats that the page, its
figures and the CLI share (USD, durations, counts, routing thresholds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facerec.core.metrics import confusion_cells, threshold_table

DEFAULT_TARGET_WRONG_RATE = 0.01
COLLECTION_FACE_LIMIT = 20_000_000
LAMBDA_CONCURRENCY_DEFAULT = 1_000
ENGINE_TITLES = {
    "facenet": "FaceNet + SVC",
    "nearest": "Nearest face (open set)",
    "rekognition": "Amazon Rekognition",
}
# In running text (the page's title and lead).
ENGINE_NAMES = {
    "facenet": "FaceNet",
    "nearest": "nearest face",
    "rekognition": "Amazon Rekognition",
}


def engine_title(name: str) -> str:
    return ENGINE_TITLES.get(name, name)


def engine_list(names: Sequence[str]) -> str:
    """Engines in running text: "FaceNet, nearest face and Amazon Rekognition"."""
    words = [ENGINE_NAMES.get(name, name) for name in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def answered(data: dict, engine: str) -> tuple[np.ndarray, np.ndarray]:
    """(correct bool (N,), score float (N,)) of the faces ``engine`` answered."""
    pairs = [
        (face["answers"][engine]["person"] == face["truth"], face["answers"][engine]["score"])
        for face in data["faces"]
        if engine in face["answers"] and face["answers"][engine]["score"] is not None
    ]
    correct = np.array([pair[0] for pair in pairs], dtype=bool)
    return correct, np.array([pair[1] for pair in pairs], dtype=np.float64)


def pick_threshold(correct: np.ndarray, scores: np.ndarray, grid: Sequence[float], target: float):
    """The lowest threshold (from ``grid`` and every observed score) at which at most
    ``target`` of the wrong answers are still accepted, as a threshold_table row (None when
    no candidate reaches it)."""
    candidates = sorted(set(grid) | set(scores.tolist()))
    for row in threshold_table(correct, scores, candidates):
        if row["wrong_accepted_rate"] <= target:
            return row
    return None


def imperfect_classes(evaluation: dict) -> dict[str, dict]:
    """Classes seen in truth or answers whose precision or recall is not 1 (from either
    confusion form)."""
    per_class = evaluation["per_class"]
    answered_wrongly = {predicted for _, predicted, _ in confusion_cells(evaluation)}
    return {
        label: per_class[label]
        for label in evaluation["labels"]
        if (per_class[label]["support"] > 0 or label in answered_wrongly)
        and (per_class[label]["precision"] < 1 or per_class[label]["recall"] < 1)
    }


def wrong_faces(data: dict) -> list[dict]:
    """Held-out faces that some engine answered wrongly or refused, by truth then photo."""
    return sorted(
        (
            face
            for face in data["faces"]
            if any(answer["person"] != face["truth"] for answer in face["answers"].values())
        ),
        key=lambda face: (face["truth"], face["photo_key"]),
    )


def usd(value: float) -> str:
    """Cents from 0.10 up, two significant digits below: $1,000.00, $0.20, $0.014."""
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if value >= 0.1 else f"${value:.2g}"


def duration(seconds: float) -> str:
    """Seconds to 3 decimals, or milliseconds under 10 ms: "0.240 s", "0.12 ms"."""
    return f"{seconds:.3f} s" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"


def short_count(value: float) -> str:
    """Three significant digits with k, M or B: "999", "1.5 k", "10 M"."""
    for size, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:g}"


def threshold_text(value) -> str:
    """A routing threshold for reading: "−∞", "+∞", a number, or "–" for none."""
    if value is None:
        return "–"
    value = float(value)
    if not np.isfinite(value):
        return "−∞" if value < 0 else "+∞"
    return f"{value:.4g}"


def operations_notes(data: dict) -> list[str]:
    """Scalability and operations notes drawn from the comparison's own numbers."""
    model, cost = data["model"], data["cost"]
    people, train_faces, seconds = model["people"], model["train_faces"], model["training_seconds"]
    engines = data["engines"]
    notes = [
        f"Training: {people} people and {train_faces} training faces took {seconds:.2f} s "
        f"({model['cv']['folds']}-fold cross-validation and the calibrated fit included). A "
        f"linear SVC is one-vs-one: {people * (people - 1) // 2} binary SVCs here, 499,500 for "
        "1,000 people, and its fit time grows at least quadratically with the faces: 10 times "
        f"this gallery would take at least about {seconds * 100:,.0f} s. Adding a person means "
        "retraining; with Rekognition it means IndexFaces for the new photos only."
        + (
            " With the nearest-face engine it means adding the new faces' embeddings to its "
            "gallery (and recalibrating its unknown threshold): no SVC, no retraining."
            if "nearest" in engines
            else ""
        )
    ]
    per_person = train_faces / people
    limit_cost = COLLECTION_FACE_LIMIT * cost["prices"]["face_storage_month"]
    notes.append(
        f"A Rekognition collection holds at most {COLLECTION_FACE_LIMIT / 1e6:g} M faces: at "
        f"this gallery's {per_person:.1f} faces per person that is about "
        f"{short_count(COLLECTION_FACE_LIMIT / per_person)} people per collection, and storing "
        f"{COLLECTION_FACE_LIMIT / 1e6:g} M faces costs {usd(limit_cost)} a month."
    )
    version = engines.get("rekognition", {}).get("describe", {}).get("face_model_version")
    notes.append(
        "A collection is tied to one face-model version"
        + (f" (version {version} here)" if version else "")
        + ": moving to a newer model means a new collection and indexing every face again: "
        f"{cost['stored_faces']:,} faces cost {usd(cost['indexing_once'])} at the first tier. "
        "Keep the source photos and crops (the faces store keeps every crop) so the gallery can "
        "be re-indexed. FaceNet has the same kind of lock-in: new weights mean re-embedding "
        "every crop and retraining, paid in Lambda time only."
    )
    busiest = cost["rows"][-1]
    notes.append(
        f"At {short_count(busiest['images'])} photos a month ({busiest['photos_per_second']:,.1f} "
        "photos a second on average) the FaceNet path keeps about "
        f"{busiest['lambda_concurrency']:,.1f} Lambda executions busy at the measured duration "
        f"(the default quota is {LAMBDA_CONCURRENCY_DEFAULT:,} concurrent executions per "
        "region; peaks need headroom). Rekognition's SearchFacesByImage has a "
        "transactions-per-second quota per account and region (Service Quotas) that must cover "
        "the same rate."
    )
    first = cost["rows"][0]
    notes.append(
        f"Per 1,000 photos at {short_count(first['images'])} a month: FaceNet on Lambda "
        f"{usd(first['facenet_per_1000'])}, Rekognition {usd(first['rekognition_per_1000'])} "
        f"(search and storage). At {short_count(busiest['images'])} a month: "
        f"{usd(busiest['facenet_per_1000'])} against "
        f"{usd(busiest['rekognition_per_1000'])}."
    )
    latency = []
    for name, engine in engines.items():
        if engine["ran"]:
            timing = engine["seconds"]
            latency.append(
                f"{engine_title(name)} {duration(timing['p50'])} (p95 {duration(timing['p95'])}) "
                f"{engine['describe'].get('timed', '')}"
            )
    notes.append(
        "Latency measured here: "
        + "; ".join(latency)
        + ". Rekognition's figure includes the network round trip from where the report ran."
    )
    return notes


def build(comparison: dict, target_wrong_rate: float = DEFAULT_TARGET_WRONG_RATE) -> dict:
    """The report's numbers: the comparison plus, per engine that ran, the threshold that
    meets the target and the classes that are not perfect; the wrong answers; the notes."""
    if not 0 <= target_wrong_rate < 1:
        raise ValueError(f"target_wrong_rate is a fraction in [0, 1); got {target_wrong_rate}")
    per_engine = {}
    for name, engine in comparison["engines"].items():
        if not engine["ran"]:
            continue
        correct, scores = answered(comparison, name)
        grid = [row["threshold"] for row in engine["evaluation"]["thresholds"]]
        per_engine[name] = {
            "threshold": pick_threshold(correct, scores, grid, target_wrong_rate),
            "imperfect_classes": imperfect_classes(engine["evaluation"]),
        }
    return {
        **comparison,
        "report": {
            "target_wrong_rate": target_wrong_rate,
            "engines": per_engine,
            "wrong_faces": [face["face_id"] for face in wrong_faces(comparison)],
            "notes": operations_notes(comparison),
        },
    }
