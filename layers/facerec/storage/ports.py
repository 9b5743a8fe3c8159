"""The interfaces the flows store through, and the one bundle of them (``Stores``).

Local adapters (folders, SQLite) live in ``storage.local``; the AWS adapters (S3, DynamoDB,
Rekognition, S3 Vectors) in ``storage.aws``, ``storage.rekognition`` and
``storage.vectors``. The records that cross them are in ``facerec.core.records``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Protocol

import numpy as np

from facerec.core.errors import NotEnoughData
from facerec.core.records import FaceRecord, ModelRecord, PhotoRecord


class BlobStore(Protocol):
    """One bucket: bytes by key (``<Person>/<file>``). ``purge`` removes every object under
    a prefix for good (every version, where the store keeps versions) and counts the keys."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str = "") -> Iterator[str]: ...
    def purge(self, prefix: str) -> int: ...


class Catalog(Protocol):
    """People, photos, faces with embeddings, and trained models. ``forget_person`` deletes
    every record of a person's photos (any status) and their faces, returning counts;
    ``photos(person)`` and ``unlabelled_faces()`` (the other faces of group photos) are read
    through indexes, never by scanning every record.

    Models are registered as the pointers they are given (core.records.ModelRecord).
    ``put_model`` registers one and makes it current in one step, only if the current model is
    still ``replaces`` (its id; None: no current model; ``...``: whichever is current now):
    False, with nothing written, when another model became current meanwhile."""

    def get_photo(self, key: str) -> PhotoRecord | None: ...
    def photo_with_sha256(self, sha256: str) -> PhotoRecord | None: ...
    def put_photo(self, photo: PhotoRecord, faces: list[FaceRecord]) -> None: ...
    def faces(self, person: str | None = None, labelled_only: bool = True) -> list[FaceRecord]: ...
    def photos(self, person: str) -> list[PhotoRecord]: ...
    def unlabelled_faces(self) -> list[FaceRecord]: ...
    def delete_faces(self, faces: list[FaceRecord]) -> int: ...
    def put_model(self, model: ModelRecord, replaces: str | EllipsisType | None = ...) -> bool: ...
    def current_model(self) -> ModelRecord | None: ...
    def models(self) -> list[ModelRecord]: ...
    def delete_model(self, model_id: str) -> None: ...
    def forget_person(self, person: str) -> dict[str, int]: ...
    def counts(self) -> dict[str, int]: ...


class CropCatalog(Catalog, Protocol):
    """The cloud's catalog: faces found by their crop, and what embedded them
    (``embedding_model`` is stamped on every face it writes; FaceRecord.embedding_model)."""

    embedding_model: str

    def face_by_crop(self, crop_key: str) -> FaceRecord | None: ...
    def set_embedding(self, face: FaceRecord, embedding: np.ndarray) -> None: ...


class EventLedger(Protocol):
    """Which object versions (bucket, key, ETag) an event was already handled for."""

    def object_handled(self, bucket: str, key: str, etag: str) -> bool: ...
    def mark_object_handled(self, bucket: str, key: str, etag: str, outcome: str) -> None: ...


class IndexClaims(Protocol):
    """At most one IndexFaces per collection, crop and crop version: a conditional claim,
    finished as indexed (with its FaceId), refused (with Rekognition's reason) or failed (an
    error between claim and finish; a retry takes it over at once)."""

    def claim_indexing(self, collection_id: str, crop_key: str, etag: str) -> dict | None: ...
    def finish_indexing(
        self, claim: dict, state: str, face_id: str = "", reason: str = ""
    ) -> bool: ...
    def indexing_state(self, collection_id: str, crop_key: str) -> dict | None: ...
    def release_indexing(self, collection_id: str, crop_key: str) -> None: ...


class FaceMatchLike(Protocol):
    face_id: str
    similarity: float


class IndexedFaceLike(Protocol):
    face_id: str


class FaceCollection(Protocol):
    """A Rekognition collection: index one face crop, search with one, delete FaceIds."""

    collection_id: str

    def index(self, crop: bytes, external_id: str) -> IndexedFaceLike: ...
    def search(
        self, crop: bytes, threshold: float = 0.0, max_faces: int = 1
    ) -> list[FaceMatchLike]: ...
    def delete(self, face_ids: Iterable[str]) -> list[str]: ...
    def face_model_version(self) -> str: ...


class IndexRowLike(Protocol):
    face_id: str
    person: str
    crop_key: str
    collection_id: str


class FaceIndex(Protocol):
    """FaceId -> person rows (``storage.rekognition.IndexRow``)."""

    def put(self, row) -> None: ...
    def people(self, face_ids: Iterable[str]) -> dict[str, str]: ...
    def by_person(self, person: str) -> list[IndexRowLike]: ...
    def for_crop(self, person: str, crop_key: str, collection_id: str) -> list[IndexRowLike]: ...
    def rows(self, collection_id: str | None = None) -> list[IndexRowLike]: ...
    def delete(self, face_id: str) -> None: ...


class VectorStore(Protocol):
    """Labelled faces and per-person centroids, float32 (128,) unit vectors, by key."""

    def put_faces(self, keys: Sequence[str], people: Sequence[str], vectors) -> int: ...
    def delete_faces(self, keys: Sequence[str]) -> int: ...
    def put_centroid(self, person: str, vectors) -> np.ndarray: ...
    def delete_centroid(self, person: str) -> None: ...
    def nearest_face(self, query: np.ndarray) -> str | None: ...
    def nearest_centroids(self, query: np.ndarray, count: int) -> list[tuple[str, float]]: ...
    def centroids(self, people: list[str]) -> dict[str, np.ndarray]: ...
    def stored_faces(self, keys: Sequence[str]) -> set[str]: ...


@dataclass(frozen=True)
class Stores:
    """Every store of one deployment. The cloud adds the Rekognition collections (by id) and
    their FaceId table (``collections``, ``face_index``) and the vector store (``vectors``);
    the embedded default has none of them."""

    catalog: Catalog
    ingest: BlobStore
    faces: BlobStore
    quarantine: BlobStore
    models: BlobStore
    reports: BlobStore
    collections: Callable[[str], FaceCollection] | None = None  # collection id -> collection
    face_index: FaceIndex | None = None
    vectors: VectorStore | None = None


def labelled_faces(catalog: Catalog, crop_method: str) -> list[FaceRecord]:
    """Every labelled face; NotEnoughData when there are none, some were cropped otherwise or
    (for a catalog that stamps its faces) embedded by another network than its own."""
    faces = catalog.faces()
    stale = [face for face in faces if face.crop_method != crop_method]
    if stale:
        raise NotEnoughData(
            f"{len(stale)} enrolled faces were cropped with another method than "
            f"{crop_method!r}; re-ingest them or use that method"
        )
    stamp = getattr(catalog, "embedding_model", "")
    others = Counter(
        face.embedding_model for face in faces if stamp and face.embedding_model != stamp
    )
    if others:
        made_by = ", ".join(
            f"{count} by {name or 'an unknown network'}" for name, count in others.items()
        )
        raise NotEnoughData(
            f"enrolled faces were embedded by another network than this run's {stamp} "
            f"({made_by}): re-embed them first (`facerec reembed`; in the cloud, the "
            "re-index workflow) or run with the precision they were made with"
        )
    if not faces:
        raise NotEnoughData(
            "no labelled faces enrolled yet; enrol photos first (`facerec ingest DIR`, "
            "or upload them to the ingest bucket)"
        )
    return faces
