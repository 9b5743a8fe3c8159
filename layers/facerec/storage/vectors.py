"""Amazon S3 Vectors as the cloud's nearest-neighbour store (docs/adr/0004-vector-store.md).

Two indexes in one vector bucket, both 128-dimensional float32 with the cosine metric:

- faces: one vector per labelled face crop; key = the crop key (``Ada_Lovelace/photo1-0.png``),
  metadata ``{"person": <name>}``;
- centroids: one vector per person; key = the name; the vector is the L2-normalised mean of
  the person's face embeddings (``facerec.engines.gallery.Gallery.centroids`` computes the same).

The nearest engine (``facerec.engines.nearest.VectorNearest``) scores faces from these two
indexes alone. S3 Vectors answers a cosine index with a *distance*, 1 - cosine similarity;
its searches are approximate, so on a large index a label or a cohort member may differ from
the exact in-process gallery's.

boto3 is not imported here: the caller passes an ``s3vectors`` client.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from facerec.core.errors import VectorStoreError
from facerec.core.settings import EMBEDDING_SIZE
from facerec.core.vectors import l2_normalise

PERSON = "person"  # the faces index's metadata key naming the face's person
WRITE_BATCH = 500  # PutVectors and DeleteVectors: at most 500 vectors per call
GET_BATCH = 100  # GetVectors: at most 100 keys per call
UNIT_TOLERANCE = 1e-3


class VectorGallery:
    """The faces and centroids indexes of one vector bucket, through an ``s3vectors`` client."""

    def __init__(self, client, bucket_name: str, faces_index: str, centroids_index: str):
        self.client = client
        self.bucket_name = bucket_name
        self.faces_index = faces_index
        self.centroids_index = centroids_index

    # ---- writes ----------------------------------------------------------------------------

    def put_faces(self, keys: Sequence[str], people: Sequence[str], vectors) -> int:
        """Write (or overwrite) faces: ``keys`` (N,) crop keys, ``people`` (N,) names,
        ``vectors`` float32 (N, 128) embeddings. PutVectors in batches of 500; returns N."""
        keys, people = [str(key) for key in keys], [str(person) for person in people]
        vectors = _check_vectors(vectors)
        if not len(keys) == len(people) == len(vectors):
            raise ValueError(
                f"keys, people and vectors differ in length: {len(keys)}, {len(people)}, "
                f"{len(vectors)}"
            )
        if any(not person for person in people):
            raise ValueError("every face needs a person")
        for start in range(0, len(keys), WRITE_BATCH):
            batch = slice(start, start + WRITE_BATCH)
            self._put(
                self.faces_index,
                [
                    {"key": key, "data": {"float32": vector.tolist()}, "metadata": {PERSON: who}}
                    for key, who, vector in zip(
                        keys[batch], people[batch], vectors[batch], strict=True
                    )
                ],
            )
        return len(keys)

    def delete_faces(self, keys: Sequence[str]) -> int:
        """Delete faces by crop key, DeleteVectors in batches of 500. Returns how many keys
        were sent: the service does not say which of them existed."""
        keys = [str(key) for key in keys]
        for start in range(0, len(keys), WRITE_BATCH):
            with self._errors(self.faces_index):
                self.client.delete_vectors(
                    vectorBucketName=self.bucket_name,
                    indexName=self.faces_index,
                    keys=keys[start : start + WRITE_BATCH],
                )
        return len(keys)

    def put_centroid(self, person: str, vectors) -> np.ndarray:
        """Write ``person``'s centroid, the L2-normalised mean of their ``vectors`` float32
        (M, 128) face embeddings (M >= 1), and return it: float32 (128,)."""
        vectors = _check_vectors(vectors)
        if not person or not len(vectors):
            raise ValueError("a centroid needs a person and at least one face")
        mean = vectors.astype(np.float64).mean(axis=0)
        if not np.linalg.norm(mean):
            raise ValueError("the faces' mean is the zero vector: no direction to store")
        centroid = l2_normalise(mean).astype(np.float32)
        self._put(self.centroids_index, [{"key": person, "data": {"float32": centroid.tolist()}}])
        return centroid

    def delete_centroid(self, person: str) -> None:
        """Delete ``person``'s centroid (absent: nothing happens)."""
        with self._errors(self.centroids_index):
            self.client.delete_vectors(
                vectorBucketName=self.bucket_name, indexName=self.centroids_index, keys=[person]
            )

    # ---- reads -----------------------------------------------------------------------------

    def nearest_face(self, query: np.ndarray) -> str | None:
        """The person of the face nearest to ``query`` float32 (128,), or None when no face is
        stored (one QueryVectors on the faces index). ValueError unless ``query`` is a unit
        vector."""
        query = _check_vectors(np.asarray(query)[None], unit=True)[0]
        hits = self._query(self.faces_index, query, 1, metadata=True)
        if not hits:
            return None
        person = (hits[0].get("metadata") or {}).get(PERSON)
        if not person:
            raise VectorStoreError(
                f"face vector {hits[0]['key']!r} in index {self.faces_index!r} has no "
                f"{PERSON!r} metadata"
            )
        return str(person)

    def nearest_centroids(self, query: np.ndarray, count: int) -> list[tuple[str, float]]:
        """The ``count`` centroids nearest to ``query``: (person, cosine similarity), nearest
        first (one QueryVectors on the centroids index)."""
        query = _check_vectors(np.asarray(query)[None], unit=True)[0]
        hits = self._query(self.centroids_index, query, count, metadata=False)
        return [(hit["key"], 1.0 - hit["distance"]) for hit in hits]

    def centroids(self, people: list[str]) -> dict[str, np.ndarray]:
        """name -> float32 (128,) centroid, for the names whose centroid exists."""
        found = self._get(self.centroids_index, people, data=True)
        return {key: np.asarray(data, dtype=np.float32) for key, data in found.items()}

    def stored_faces(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` (crop keys) whose face vector is stored (GetVectors, no data)."""
        return set(self._get(self.faces_index, list(keys), data=False))

    def _get(self, index: str, keys: list[str], *, data: bool) -> dict[str, list | None]:
        """key -> its float32 values (None without ``data``) for the keys that exist; GetVectors
        in batches of 100."""
        found = {}
        for start in range(0, len(keys), GET_BATCH):
            with self._errors(index):
                response = self.client.get_vectors(
                    vectorBucketName=self.bucket_name,
                    indexName=index,
                    keys=keys[start : start + GET_BATCH],
                    returnData=data,
                    returnMetadata=False,
                )
            for vector in response["vectors"]:
                found[vector["key"]] = vector["data"]["float32"] if data else None
        return found

    def _query(self, index: str, query: np.ndarray, top_k: int, *, metadata: bool) -> list[dict]:
        """QueryVectors hits (key, distance[, metadata]), nearest first, every page read."""
        request = {
            "vectorBucketName": self.bucket_name,
            "indexName": index,
            "topK": top_k,
            "queryVector": {"float32": query.tolist()},
            "returnMetadata": metadata,
            "returnDistance": True,
        }
        hits: list[dict] = []
        token = None
        while True:
            with self._errors(index):
                response = self.client.query_vectors(
                    **request, **({"nextToken": token} if token else {})
                )
            if response.get("distanceMetric", "cosine") != "cosine":
                raise VectorStoreError(
                    f"index {index!r} uses {response['distanceMetric']} distance, not cosine"
                )
            hits += response["vectors"]
            token = response.get("nextToken")
            if not token:
                return hits

    def _put(self, index: str, vectors: list[dict]) -> None:
        with self._errors(index):
            self.client.put_vectors(
                vectorBucketName=self.bucket_name, indexName=index, vectors=vectors
            )

    @contextmanager
    def _errors(self, index: str) -> Iterator[None]:
        """A missing bucket or index, or a request S3 Vectors rejects, as VectorStoreError;
        throttling, access denied and service errors propagate unchanged."""
        try:
            yield
        except self.client.exceptions.NotFoundException as error:
            raise VectorStoreError(
                f"vector bucket {self.bucket_name!r} or its index {index!r} does not exist: "
                f"{_message(error)}"
            ) from error
        except self.client.exceptions.ValidationException as error:
            raise VectorStoreError(
                f"S3 Vectors rejected a request on index {index!r}: {_message(error)}"
            ) from error


def _check_vectors(vectors, unit: bool = False) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != EMBEDDING_SIZE:
        raise ValueError(f"expected vectors of shape (N, {EMBEDDING_SIZE}), got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors must be finite")
    norms = np.linalg.norm(vectors, axis=1)
    if unit and len(norms) and np.abs(norms - 1.0).max() > UNIT_TOLERANCE:
        raise ValueError("vectors must be unit length (L2-normalised embeddings)")
    return vectors


def _message(error) -> str:
    return getattr(error, "response", {}).get("Error", {}).get("Message", str(error))
