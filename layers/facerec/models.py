"""A trained model as one artifact: the classifier and its metadata, with a clear warning
when it is loaded under library versions other than those it was made with."""

from __future__ import annotations

import io
import platform
import warnings
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

import joblib

from facerec.classifier import FaceClassifier

TRACKED_LIBRARIES = ("scikit-learn", "numpy", "tensorflow-cpu", "keras", "mtcnn", "joblib")
ARTIFACT_FORMAT = 1


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
class TrainedModel:
    """``metadata`` holds: model_id, created_at, labels, C, cv, embedding (model id, sha256,
    preprocessing), crop (method, margin, size), split, libraries, evaluation summary."""

    classifier: FaceClassifier
    metadata: dict

    @property
    def model_id(self) -> str:
        return self.metadata["model_id"]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(
            {"format": ARTIFACT_FORMAT, "classifier": self.classifier, "metadata": self.metadata},
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        """Load an artifact this package wrote (joblib: only load artifacts you trust)."""
        payload = joblib.load(io.BytesIO(data))
        model = cls(classifier=payload["classifier"], metadata=payload["metadata"])
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
