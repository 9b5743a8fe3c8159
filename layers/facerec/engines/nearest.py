"""The nearest-neighbour engine: every labelled face is the gallery, so enrolling a person
needs no retraining, and "unknown" falls out of the open-set score (facerec.engines.openset).

In process (``NearestEngine``) the gallery is an OpenSetIdentifier: the local catalog's
faces (exact search, an HNSW index past ``gallery.APPROXIMATE_FROM`` faces, its own
threshold, calibrated to the false-accept rate the current model was trained with, or the
model's own threshold when it was calibrated on held-out strangers: ``model_calibration``)
or a model's training part in an evaluation. In the cloud (``VectorNearest``)
the faces and centroids live in S3 Vectors and the threshold is the one the training workflow
calibrated on every labelled face (``metadata["nearest"]``). Either way one setting,
``TrainOptions.far`` (``facerec train --far``), calibrates both engines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Protocol

import numpy as np

from facerec.core.errors import ModelNotFound
from facerec.core.records import FaceRecord
from facerec.core.settings import DEFAULT_FAR
from facerec.engines.base import UNKNOWN, Answer, Identification, Probe, number
from facerec.engines.openset import (
    COHORT,
    HELD_OUT_STRANGERS,
    Calibration,
    OpenSetIdentifier,
    accept,
    cohort_normalised,
    open_set_scores,
)
from facerec.storage.ports import VectorStore


def _identification(labels, candidates, scores, threshold: float, summary: dict):
    answers = tuple(
        Answer(
            str(label),
            float(score),
            str(candidate) if candidate not in (UNKNOWN, "") else None,
            {"score": number(score)},
        )
        for label, candidate, score in zip(labels, candidates, scores, strict=True)
    )
    return Identification(answers, {**summary, "unknown_threshold": number(threshold, 6)})


class NearestEngine:
    """Over an in-process gallery: ``identifier()`` returns the OpenSetIdentifier to search
    (NotEnoughData when it cannot be built); ``about`` describes the gallery in words."""

    name = "nearest"
    available = True
    reason = ""

    def __init__(self, identifier: Callable[[], OpenSetIdentifier], about: str = ""):
        self.identifier, self.about = identifier, about

    def identify(self, faces: Sequence[Probe]) -> Identification:
        """Per face the nearest enrolled face's person, or "unknown", and its open-set score."""
        identifier = self.identifier()
        embeddings = np.stack([face.embedding for face in faces]).astype(np.float32)
        gallery, threshold = identifier.gallery_, identifier.calibration_.threshold
        candidates = gallery.search(embeddings, 1)[0][:, 0]
        scores = open_set_scores(gallery, embeddings, candidates, identifier.cohort)
        labels = accept(candidates, scores, threshold)
        return _identification(labels, candidates, scores, threshold, self._summary(identifier))

    def _summary(self, identifier: OpenSetIdentifier) -> dict:
        gallery, calibration = identifier.gallery_, identifier.calibration_
        summary = {
            "gallery_faces": len(gallery),
            "people": len(gallery.people),
            "approximate": gallery.approximate["faces"],
            "calibration": calibration.method,
            "far_target": calibration.far_target,
        }
        return {**summary, "gallery": self.about} if self.about else summary

    def describe(self) -> dict:
        identifier = self.identifier()
        calibration = identifier.calibration_
        return {
            **self._summary(identifier),
            "open_set_threshold": float(calibration.threshold),
            "open_set_score": calibration.score,
        }


class VersionedCatalog(Protocol):
    """A catalog that says when it changed (SqliteCatalog.version)."""

    def version(self) -> tuple[int, int]: ...
    def faces(self, person: str | None = None, labelled_only: bool = True) -> list[FaceRecord]: ...


def model_calibration(model: Callable) -> tuple[float, Calibration | None]:
    """How the current model (``model()``, a TrainedModel) calibrated the nearest engine:
    (its false-accept rate, ``metadata["nearest"]["far_target"]``; the recorded calibration
    when it was made on held-out strangers, else None). (DEFAULT_FAR, None) before the first
    training (ModelNotFound)."""
    try:
        nearest = model().metadata["nearest"]
    except ModelNotFound:
        return DEFAULT_FAR, None
    if nearest.get("method") != HELD_OUT_STRANGERS:
        return float(nearest["far_target"]), None
    names = {field.name for field in fields(Calibration)}
    return float(nearest["far_target"]), Calibration(**{name: nearest[name] for name in names})


class CatalogIdentifier:
    """The catalog's labelled faces as an OpenSetIdentifier, rebuilt when the catalog has
    changed since it was built (by this process or another) or ``calibration()`` has (a
    model trained with another ``--far`` or on strangers). ``calibration()`` ->
    (far, recorded): recalibrated leave-one-person-out to ``far``, or, when ``recorded``
    (a Calibration made on held-out strangers the catalog does not hold), kept as it is.
    ``labelled()`` reads the faces (it checks the crop method)."""

    def __init__(
        self,
        catalog: VersionedCatalog,
        labelled: Callable[[], list[FaceRecord]],
        calibration: Callable[[], tuple[float, Calibration | None]] = lambda: (DEFAULT_FAR, None),
    ):
        self.catalog, self.labelled, self.calibration = catalog, labelled, calibration
        self._identifier: OpenSetIdentifier | None = None
        self._built_for: tuple | None = None

    def __call__(self) -> OpenSetIdentifier:
        """NotEnoughData when fewer than 2 people are enrolled."""
        far, recorded = self.calibration()
        state = (self.catalog.version(), far, recorded)
        if self._identifier is None or state != self._built_for:
            faces = self.labelled()
            self._identifier = OpenSetIdentifier(far=far).fit(
                np.stack([face.embedding for face in faces]),
                np.array([face.person for face in faces]),
                np.array([face.face_id for face in faces]),
                calibration=recorded,
            )
            self._built_for = state
        return self._identifier


class VectorNearest:
    """Over an S3 Vectors gallery with the threshold of the current model's
    ``metadata["nearest"]`` (``model()`` returns it; ModelNotFound before the first
    training). The score is ``facerec.engines.openset.open_set_scores``' from the two
    indexes: cosine to the nearest face's person's centroid minus the mean cosine to the
    ``cohort`` nearest other centroids."""

    name = "nearest"
    available = True
    reason = ""

    def __init__(self, store: VectorStore, model, cohort: int = COHORT):
        self.store, self.model, self.cohort = store, model, cohort

    def calibration(self) -> dict:
        """The current model's ``metadata["nearest"]``: ``threshold``, ``far_target``..."""
        calibration = self.model().metadata.get("nearest")
        if calibration is None:
            raise ModelNotFound(
                "the current model has no nearest-neighbour calibration; run the training "
                "workflow again"
            )
        return calibration

    def identify(self, faces: Sequence[Probe]) -> Identification:
        calibration = self.calibration()
        threshold = float(calibration["threshold"])
        embeddings = np.stack([face.embedding for face in faces]).astype(np.float32)
        labels, scores = self.search(embeddings)
        labels_accepted = accept(labels, scores, threshold)
        summary = {**self.describe(), "far_target": calibration["far_target"]}
        return _identification(labels_accepted, labels, scores, threshold, summary)

    def search(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        """float32 (Q, 128) unit vectors -> labels (Q,) str, the person of the nearest face
        ("unknown" when none is stored), and float32 (Q,) open-set scores (-inf with no face
        or no centroid for the label). Calls: one QueryVectors per query on each index and
        GetVectors for the labels' centroids."""
        queries = np.asarray(vectors, np.float32)
        labels = [self.store.nearest_face(query) for query in queries]
        centroids = self.store.centroids(sorted({label for label in labels if label}))
        own = np.full(len(queries), -np.inf, dtype=np.float32)
        others = np.full((len(queries), self.cohort), -np.inf, dtype=np.float32)
        for row, (query, label) in enumerate(zip(queries, labels, strict=True)):
            if label is None or label not in centroids:
                continue
            own[row] = float(query @ centroids[label])
            nearest = self.store.nearest_centroids(query, self.cohort + 1)
            similarities = [similarity for name, similarity in nearest if name != label]
            others[row, : min(self.cohort, len(similarities))] = similarities[: self.cohort]
        scores = np.where(np.isfinite(own), cohort_normalised(own, others), -np.inf)
        names = np.array([UNKNOWN if label is None else label for label in labels], dtype=str)
        return names, scores.astype(np.float32)

    def describe(self) -> dict:
        return {"store": "s3vectors", "calibration": "training workflow, every labelled face"}
