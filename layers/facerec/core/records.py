"""The records that cross the storage ports: photos, faces (with embeddings) and models."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PhotoRecord:
    """One ingested photo. ``status``: enrolled | no_face | rejected; ``reason`` says why."""

    key: str
    person: str
    sha256: str
    status: str
    reason: str = ""
    face_count: int = 0
    width: int = 0
    height: int = 0


# The stamp of embeddings made before stamps were stored: by the Keras FaceNet, whose numbers
# the converted fp32 network has (vision.embedding.embedding_stamp of its description).
LEGACY_EMBEDDING_MODEL = "facenet-keras-20170512-110547@6acdd8fb3a3f"


@dataclass(frozen=True)
class FaceRecord:
    """One face crop. ``person`` is None for faces that are not the photo's labelled person.
    ``box`` (x1, y1, x2, y2) px; ``embedding`` float32 (D,) unit vector, made by
    ``embedding_model`` (as the catalog stamped it when it wrote the face; "" before it did)."""

    face_id: str
    photo_key: str
    index: int
    person: str | None
    box: tuple[int, int, int, int]
    confidence: float
    crop_key: str
    crop_method: str
    embedding: np.ndarray = field(repr=False)
    embedding_model: str = ""  # what made the embedding (vision.embedding.embedding_stamp)


@dataclass(frozen=True)
class ModelRecord:
    """A model as the catalog registers it: a pointer that stays small whatever the number of
    faces. The artifact (``artifact_key``) and the whole metadata (``<model_id>/
    metadata.json``, flows.train.model_keys) live in the models store; ``metadata`` holds only
    the few figures read without them (flows.train.model_record: the options it was trained
    with, the size of its split, its held-out evaluation and how it was promoted).
    ``sha256``: the artifact's hex digest when it was published, checked before it is loaded
    ("" for a record from before hashes: its model is refused)."""

    model_id: str
    artifact_key: str
    created_at: str
    metadata: dict = field(repr=False)
    sha256: str = ""
