"""The nearest-neighbour engine: every labelled face is the gallery, so enrolling a person
needs no retraining, and "unknown" falls out of the open-set score (facerec.openset).

Locally the gallery is read from the catalog (exact search, an HNSW index past
``gallery.APPROXIMATE_FROM`` faces) and calibrates its own threshold; in the cloud the faces
and centroids live in S3 Vectors (facerec.vectors) and the threshold is the one the training
workflow calibrated on every labelled face (``metadata["nearest"]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerec.errors import ModelNotFound
from facerec.openset import COHORT, DEFAULT_FAR, OpenSetIdentifier, accept


@dataclass(frozen=True)
class NearestAnswers:
    """``labels`` (N,) str, a person or "unknown"; ``scores`` (N,) float32 open-set scores;
    ``threshold``: a face is named only when its score is above it."""

    labels: np.ndarray
    scores: np.ndarray
    threshold: float


class LocalNearest:
    """Over the pipeline's SQLite catalog. The gallery is rebuilt and recalibrated (to
    ``far``, leave-one-person-out) when the catalog has changed since it was built (by this
    process or another: ``SqliteCatalog.version``)."""

    name = "nearest"
    available = True

    def __init__(self, pipeline, far: float = DEFAULT_FAR):
        self.pipeline, self.far = pipeline, far
        self._identifier: OpenSetIdentifier | None = None
        self._built_for: tuple[int, int] | None = None  # the catalog version it was built at

    def identifier(self) -> OpenSetIdentifier:
        """The current gallery; NotEnoughData when fewer than 2 people are enrolled."""
        state = self.pipeline.catalog.version()
        if self._identifier is None or state != self._built_for:
            faces = self.pipeline.labelled_faces()
            self._identifier = OpenSetIdentifier(far=self.far).fit(
                np.stack([face.embedding for face in faces]),
                np.array([face.person for face in faces]),
                np.array([face.face_id for face in faces]),
            )
            self._built_for = state
        return self._identifier

    def identify(self, embeddings) -> NearestAnswers:
        """float32 (N, D) unit vectors -> the nearest person or "unknown"."""
        identifier = self.identifier()
        labels, scores = identifier.predict_with_score(embeddings)
        return NearestAnswers(labels, scores, identifier.calibration_.threshold)

    def describe(self) -> dict:
        identifier = self.identifier()
        gallery = identifier.gallery_
        return {
            "gallery_faces": len(gallery),
            "people": len(gallery.people),
            "approximate": gallery.approximate["faces"],
            "calibration": identifier.calibration_.method,
            "far_target": identifier.calibration_.far_target,
        }


class VectorNearest:
    """Over an S3 Vectors gallery (facerec.vectors.VectorGallery) with the threshold of the
    current model's ``metadata["nearest"]`` (``model()`` returns it; ModelNotFound before the
    first training)."""

    name = "nearest"
    available = True

    def __init__(self, gallery, model, cohort: int = COHORT):
        self.gallery, self.model, self.cohort = gallery, model, cohort

    def threshold(self) -> float:
        calibration = self.model().metadata.get("nearest")
        if calibration is None:
            raise ModelNotFound(
                "the current model has no nearest-neighbour calibration; run the training "
                "workflow again"
            )
        return float(calibration["threshold"])

    def identify(self, embeddings) -> NearestAnswers:
        threshold = self.threshold()
        labels, scores = self.gallery.search(np.asarray(embeddings, np.float32), self.cohort)
        return NearestAnswers(accept(labels, scores, threshold), scores, threshold)

    def describe(self) -> dict:
        return {"store": "s3vectors", "calibration": "training workflow, every labelled face"}
