"""The FaceNet engine: a trained model as one artifact of arrays and JSON, which loading cannot
make run code (the classifier, its open-set identifier with the training faces and the calibrated
"unknown" threshold, and its metadata, with a clear warning when it is loaded under library
versions other than those it was made with) and the engine that answers with it."""

from __future__ import annotations

import io
import json
import platform
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

import numpy as np

from facerec.core.errors import EngineUnavailable, ModelIntegrityError
from facerec.engines.base import UNKNOWN, Answer, Identification, Probe, number
from facerec.engines.classifier import (
    FITTED_ARRAYS,
    FaceClassifier,
    LinearClassifier,
    OneVsRestSVM,
)
from facerec.engines.openset import OpenSetIdentifier, accept, open_set_scores
from facerec.vision.embedding import embedding_stamp

TRACKED_LIBRARIES = ("scikit-learn", "numpy", "onnxruntime")
ARTIFACT_FORMAT = 3  # 2 added the open-set identifier; 3 arrays and JSON, no pickle
# The classifier types an artifact names (``classifier_type``; absent: FaceClassifier).
CLASSIFIER_TYPES = {kind.__name__: kind for kind in (FaceClassifier, OneVsRestSVM)}


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
    """The FaceNet engine's answers for N faces: ``labels`` (N,) str, the classifier's label
    (``candidates`` (N,) str) or "unknown" when ``scores`` (N,) float32, the open-set score,
    is not above ``threshold``; ``probabilities`` (N,) the calibrated probability of the
    classifier's label (reported only)."""

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
    libraries, evaluation summary. ``open_set`` None (a model made without one):
    its answers are never "unknown"."""

    classifier: LinearClassifier
    metadata: dict
    open_set: OpenSetIdentifier | None = None

    def identify(self, embeddings) -> FaceNetAnswers:
        """float32 (N, D) unit vectors -> the classifier's labels, accepted or "unknown" by the
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
        """One .npz, no pickle: ``document`` (JSON: format, the classifier's type and
        parameters, metadata), the classifier's arrays (``classifier.<name>``) and ``open_set`` (its
        own .npz as bytes; absent for a model without one)."""
        document = {
            "format": ARTIFACT_FORMAT,
            "classifier_type": type(self.classifier).__name__,
            "classifier": self.classifier.get_params(),
            "metadata": self.metadata,
        }
        arrays = {f"classifier.{k}": v for k, v in self.classifier.to_arrays().items()}
        if self.open_set is not None:
            arrays["open_set"] = np.frombuffer(self.open_set.to_bytes(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, document=np.array(json.dumps(document)), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "the model") -> TrainedModel:
        """Load an artifact written by ``to_bytes``: arrays and JSON only, nothing in it
        runs. Anything else (a joblib pickle of format 2 or before, a truncated file) is
        refused with ModelIntegrityError naming ``name``."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                document = json.loads(str(arrays["document"]))
                if document.get("format") != ARTIFACT_FORMAT:
                    raise ValueError(f"format {document.get('format')}")
                kind = CLASSIFIER_TYPES[document.get("classifier_type", "FaceClassifier")]
                classifier = kind.from_arrays(
                    {k: arrays[f"classifier.{k}"] for k in FITTED_ARRAYS},
                    **document["classifier"],
                )
                open_set = (
                    OpenSetIdentifier.from_bytes(arrays["open_set"].tobytes())
                    if "open_set" in arrays
                    else None
                )
        except (ValueError, KeyError, TypeError, AttributeError, OSError, zipfile.BadZipFile):
            raise ModelIntegrityError(
                f"{name} is not a model artifact of format {ARTIFACT_FORMAT} (arrays and "
                "JSON); models saved as pickles before are never loaded: retrain "
                "(`facerec train`)"
            ) from None
        model = cls(classifier, document["metadata"], open_set)
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
    """The classifier's label, accepted by its open-set score (TrainedModel.identify); answers
    whose calibrated probability is under ``min_probability`` are "unknown" too (0: never).
    ``model()`` returns the model to answer with (ModelNotFound before the first training).
    ``embedding_model``: the stamp of the embeddings it is given (vision.embedding); a model
    trained on another network's embeddings is refused ("": not checked)."""

    name = "facenet"
    available = True
    reason = ""

    def __init__(
        self,
        model: Callable[[], TrainedModel],
        min_probability: float = 0.0,
        embedding_model: str = "",
    ):
        self.model, self.min_probability = model, min_probability
        self.embedding_model = embedding_model

    def identify(self, faces: Sequence[Probe]) -> Identification:
        """Per face ``probability`` (0-1, reported only) and the open-set ``score``."""
        model = self.model()
        trained_on = self.embedding_model and embedding_stamp(model.metadata["embedding"])
        if trained_on != self.embedding_model:
            raise EngineUnavailable(
                f"model {model.model_id} was trained on embeddings of {trained_on}; faces are "
                f"now embedded by {self.embedding_model}: re-embed the gallery and train again"
            )
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
