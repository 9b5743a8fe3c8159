"""The interfaces the pipeline stores through, and the records that cross them.

Local adapters (folder, SQLite) live in ``storage.local``; the AWS adapters (S3, DynamoDB)
implement the same protocols.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class BlobStore(Protocol):
    """One bucket: bytes by key (``<Person>/<file>``). ``purge`` removes every object under
    a prefix for good (every version, where the store keeps versions) and counts the keys."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str = "") -> Iterator[str]: ...
    def purge(self, prefix: str) -> int: ...


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


@dataclass(frozen=True)
class FaceRecord:
    """One face crop. ``person`` is None for faces that are not the photo's labelled person.
    ``box`` (x1, y1, x2, y2) px; ``embedding`` float32 (D,) unit vector."""

    face_id: str
    photo_key: str
    index: int
    person: str | None
    box: tuple[int, int, int, int]
    confidence: float
    crop_key: str
    crop_method: str
    embedding: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    artifact_key: str
    created_at: str
    metadata: dict = field(repr=False)


class Catalog(Protocol):
    """People, photos, faces with embeddings, and trained models. ``forget_person`` deletes
    every record of a person's photos (any status) and their faces, returning counts."""

    def get_photo(self, key: str) -> PhotoRecord | None: ...
    def photo_with_sha256(self, sha256: str) -> PhotoRecord | None: ...
    def put_photo(self, photo: PhotoRecord, faces: list[FaceRecord]) -> None: ...
    def faces(self, person: str | None = None, labelled_only: bool = True) -> list[FaceRecord]: ...
    def put_model(self, model: ModelRecord) -> None: ...
    def current_model(self) -> ModelRecord | None: ...
    def models(self) -> list[ModelRecord]: ...
    def delete_model(self, model_id: str) -> None: ...
    def forget_person(self, person: str) -> dict[str, int]: ...
    def counts(self) -> dict[str, int]: ...
