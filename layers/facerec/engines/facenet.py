"""The FaceNet engine: a trained model as one artifact (the SVC, its open-set identifier with
the training faces and the calibrated "unknown" threshold, and its metadata, with a clear
warning when it is loaded under library versions other than those it was made with) and the
engine that answers with it."""

from __future__ import annotations

import io
import platform
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

import joblib
import numpy as np

from facerec.engines.base import UNKNOWN, Answer, Identification, Probe, number
from facerec.engines.classifier import FaceClassifier
from facerec.engines.openset import OpenSetIdentifier, accept, open_set_scores

TRACKED_LIBRARIES = ("scikit-learn", "numpy", "tensorflow-cpu", "keras", "mtcnn", "joblib")
ARTIFACT_FORMAT = 2  # 2 added the open-set identifier


class ModelVersionWarning(UserWarning):
    """The model was saved with other library versions; its predictions may differ or fail."""


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@dataclass(frozen=True)
class FaceNetAnswers:
    """The FaceNet engine's answers for N faces: ``labels`` (N,) str, the SVC's label
    (``candidates`` (N,) str) or "unknown" when ``scores`` (N,) float32, the open-set score,
    is not above ``threshold``; ``probabilities`` (N,) the calibrated probability of the
    SVC's label (reported only)."""

    labels: np.ndarray
    candidates: np.ndarray
    probabilities: np.ndarray
    scores: np.ndarray
    threshold: float

    @property
    def accepted(self) -> np.ndarray:
        return self.labels != UNKNOWN


@dataclass(frozen=True)
class TrainedModel:
    """``metadata`` holds: model_id, created_at, labels, C, cv, embedding (model id, sha256,
    preprocessing), crop (method, margin, size), split, open_set (its calibration),
    libraries, evaluation summary. ``open_set`` is None for models saved before format 2:
    their answers are never "unknown"."""

    classifier: FaceClassifier
    metadata: dict
    open_set: OpenSetIdentifier | None = None

    def identify(self, embeddings) -> FaceNetAnswers:
        """float32 (N, D) unit vectors -> the SVC's labels, accepted or "unknown" by the
        open-set score of that label (facerec.engines.openset; bench/OPEN_SET.md measures it)."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        labels, probabilities = self.classifier.predict_with_probability(embeddings)
        labels = np.asarray(labels, dtype=str)
        if self.open_set is None:
            scores = probabilities.astype(np.float32)
            return FaceNetAnswers(labels, labels, probabilities, scores, 0.0)
        scores = open_set_scores(self.open_set.gallery_, embeddings, labels, self.open_set.cohort)
        threshold = self.open_set.calibration_.threshold
        accepted = accept(labels, scores, threshold)
        return FaceNetAnswers(accepted, labels, probabilities, scores, threshold)

    @property
    def model_id(self) -> str:
        return self.metadata["model_id"]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        open_set = None if self.open_set is None else self.open_set.to_bytes()
        joblib.dump(
            {
                "format": ARTIFACT_FORMAT,
                "classifier": self.classifier,
                "open_set": open_set,
                "metadata": self.metadata,
            },
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        """Load an artifact this package wrote (joblib: only load artifacts you trust)."""
        payload = joblib.load(io.BytesIO(data))
        open_set = payload.get("open_set")
        model = cls(
            classifier=payload["classifier"],
            metadata=payload["metadata"],
            open_set=None if open_set is None else OpenSetIdentifier.from_bytes(open_set),
        )
        saved = model.metadata.get("libraries", {})
        current = library_versions()
        drift = {
            name: (saved.get(name), version)
            for name, version in current.items()
            if saved.get(name) != version
        }
        if drift:
            changes = ", ".join(
                f"{name} {old} -> {new}" for name, (old, new) in sorted(drift.items())
            )
            warnings.warn(
                f"model {model.model_id} was saved with other library versions ({changes}); "
                "retrain it (`facerec train`) if its answers look wrong",
                ModelVersionWarning,
                stacklevel=2,
            )
        return model


class FaceNetEngine:
    """The SVC's label, accepted by its open-set score (TrainedModel.identify); answers
    whose calibrated probability is under ``min_probability`` are "unknown" too (0: never).
    ``model()`` returns the model to answer with (ModelNotFound before the first training)."""

    name = "facenet"
    available = True
    reason = ""

    def __init__(self, model: Callable[[], TrainedModel], min_probability: float = 0.0):
        self.model, self.min_probability = model, min_probability

    def identify(self, faces: Sequence[Probe]) -> Identification:
        """Per face ``probability`` (0-1, reported only) and the open-set ``score``."""
        model = self.model()
        found = model.identify(np.stack([face.embedding for face in faces]))
        labels = np.where(found.probabilities >= self.min_probability, found.labels, UNKNOWN)
        answers = tuple(
            Answer(
                str(labels[n]),
                float(found.scores[n]),
                str(found.candidates[n]),
                {
                    "probability": round(float(found.probabilities[n]), 4),
                    "score": number(found.scores[n]),
                },
            )
            for n in range(len(faces))
        )
        summary = {
            "model_id": model.model_id,
            "min_probability": self.min_probability,
            "unknown_threshold": number(found.threshold, 6),
        }
        return Identification(answers, summary, model.model_id)

    def describe(self) -> dict:
        meta = self.model().metadata
        classifier = meta["classifier"]
        return {
            "model_id": meta["model_id"],
            "classifier": f"{classifier['kind']} {classifier['kernel']}, C = {classifier['C']}",
            "embedding": meta["embedding"]["model_id"],
            "crop": meta["crop"]["method"],
            "open_set_threshold": (meta.get("open_set") or {}).get("threshold"),
            "open_set_score": (meta.get("open_set") or {}).get(
                "score", "none: a model without an open-set part (its probability is used)"
            ),
        }
