"""The nearest-neighbour engine's gallery: enrolled face embeddings searched by cosine similarity.

Enrolling or forgetting a person is an insert or a delete, never a retraining. Faces (unit
vectors, so cosine similarity is the inner product) are searched exactly with a matrix product
while the gallery is small, and through a usearch HNSW index once it holds ``approximate_from``
vectors (bench/SCALE.md measures where exact search gets slow). The index only proposes
candidates: every similarity returned is recomputed from the stored float32 vectors, so scores
are exact and the index can keep its vectors in bfloat16. Each person also has a centroid (the
mean of their unit vectors, renormalised), searched the same way; ``facerec.engines.openset`` scores
strangers with both.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, replace

import numpy as np

from facerec.core.settings import EMBEDDING_SIZE
from facerec.core.vectors import l2_normalise

# Exact search costs about 2.7 ms per face at 100 k faces (one BLAS thread) and needs no
# index build (about 20 s at 100 k, one thread); past it the HNSW index keeps identify far
# under 20 ms: 6 ms at 1 M faces (bench/SCALE.md).
APPROXIMATE_FROM = 100_000
UNIT_TOLERANCE = 1e-3
CANDIDATES = 32  # faces (or centroids) an approximate search fetches beyond what it needs
FORMAT = 1
NO_LABEL = ""


@dataclass(frozen=True)
class IndexSettings:
    """usearch HNSW parameters: ``connectivity`` (M), ``expansion_add`` (efConstruction),
    ``expansion_search`` (ef), the dtype the index stores vectors in (scores never use it),
    and ``threads`` for inserts: 1 builds the same graph every time (deterministic answers);
    0 uses every core, faster, but the graph then depends on thread timing."""

    connectivity: int = 16
    expansion_add: int = 100
    expansion_search: int = 256  # recall@1 0.99+ at 1 M faces (bench/SCALE.md)
    dtype: str = "bf16"
    threads: int = 1


class _ApproximateIndex:
    """usearch HNSW over (key, vector) pairs; keys are non-negative int64."""

    def __init__(self, dimensions: int, settings: IndexSettings, data: bytes | None = None):
        from usearch.index import Index

        self.settings = settings
        if data is None:
            self._index = Index(
                ndim=dimensions,
                metric="ip",
                dtype=settings.dtype,
                connectivity=settings.connectivity,
                expansion_add=settings.expansion_add,
                expansion_search=settings.expansion_search,
            )
        else:
            self._index = Index.restore(data)
            self._index.expansion_search = settings.expansion_search

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self._index.add(keys.astype(np.uint64), vectors, threads=self.settings.threads)

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self._index.remove(keys.astype(np.uint64))

    def search(self, vectors: np.ndarray, count: int) -> np.ndarray:
        """(Q, D) -> candidate keys int64 (Q, count), -1 where fewer were found."""
        matches = self._index.search(vectors, count, threads=1)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(vectors), -1)
        # One query gives Matches (only what was found); several give BatchMatches (padded).
        counts = np.asarray(getattr(matches, "counts", [keys.shape[1]])).reshape(-1, 1)
        return np.where(np.arange(keys.shape[1])[None, :] < counts, keys, -1)

    def set_search_expansion(self, expansion_search: int) -> None:
        self.settings = replace(self.settings, expansion_search=expansion_search)
        self._index.expansion_search = expansion_search

    @property
    def nbytes(self) -> int:
        """Memory the graph and its vectors take, bytes."""
        return int(self._index.memory_usage)

    def to_bytes(self) -> bytes:
        return bytes(self._index.save())


class Gallery:
    """Enrolled faces: ``ids`` (N,) str, ``labels`` (N,) str (the person), ``vectors`` float32
    (N, D) unit vectors. ``approximate_from``: how many faces (and, counted apart, how many
    people's centroids) make the gallery search them through an HNSW index instead of exactly;
    the index is dropped again below half of that."""

    def __init__(
        self,
        dimensions: int = EMBEDDING_SIZE,
        approximate_from: int = APPROXIMATE_FROM,
        index: IndexSettings = IndexSettings(),
    ):
        self.dimensions = dimensions
        self.approximate_from = approximate_from
        self.index_settings = index
        self._ids = np.zeros(0, dtype=str)
        self._codes = np.zeros(0, dtype=np.int64)  # face row -> person code
        self._keys = np.zeros(0, dtype=np.int64)  # face row -> key in the face index (increasing)
        self._vectors = np.zeros((0, dimensions), dtype=np.float32)
        # People in order of first enrolment: a code never changes, so it keys the centroid
        # index; a person whose faces were all removed keeps a code with a count of 0.
        self._people = np.zeros(0, dtype=str)
        self._code_of: dict[str, int] = {}
        self._sums = np.zeros((0, dimensions), dtype=np.float64)  # per person, sum of vectors
        self._counts = np.zeros(0, dtype=np.int64)
        self._next_key = 0
        self._faces_index: _ApproximateIndex | None = None
        self._centroids_index: _ApproximateIndex | None = None
        self._exact: dict[str, np.ndarray] = {}  # exact search's arrays, dropped on change

    # ---- contents ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def labels(self) -> np.ndarray:
        return self._people[self._codes]

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors

    @property
    def people(self) -> np.ndarray:
        """(P,) str, sorted: every person with at least one enrolled face."""
        return np.sort(self._people[self._counts > 0])

    @property
    def approximate(self) -> dict[str, bool]:
        """Whether faces and centroids are searched through an HNSW index right now."""
        return {
            "faces": self._faces_index is not None,
            "centroids": self._centroids_index is not None,
        }

    @property
    def nbytes(self) -> int:
        """Memory held: the arrays plus any HNSW index, bytes."""
        arrays = (self._ids, self._codes, self._keys, self._vectors, self._people)
        held = sum(array.nbytes for array in (*arrays, self._sums, self._counts))
        return held + sum(index.nbytes for index in self._indexes().values() if index)

    def face_counts(self, labels) -> np.ndarray:
        """(Q,) int64: how many faces each label has enrolled (0 when none)."""
        codes = self._codes_of(labels)
        return np.where(codes >= 0, self._counts[codes.clip(0)] if len(self._counts) else 0, 0)

    def centroids(self, labels) -> np.ndarray:
        """float32 (Q, D): each label's centroid (mean of its faces, renormalised); zero rows
        for labels with no faces."""
        codes = self._codes_of(labels)
        out = np.zeros((len(codes), self.dimensions), dtype=np.float32)
        known = self.face_counts(labels) > 0
        out[known] = l2_normalise(self._sums[codes[known]])
        return out

    # ---- changes -----------------------------------------------------------------------

    def add(self, ids, labels, vectors) -> Gallery:
        """Enrol faces: ``ids`` (N,) str new to the gallery, ``labels`` (N,) non-empty str,
        ``vectors`` (N, D) unit vectors. Returns self."""
        ids, labels = np.asarray(ids, dtype=str), np.asarray(labels, dtype=str)
        vectors = self._check_vectors(vectors)
        if not len(ids) == len(labels) == len(vectors):
            raise ValueError(
                f"ids, labels and vectors differ in length: {len(ids)}, {len(labels)}, "
                f"{len(vectors)}"
            )
        if np.any(labels == NO_LABEL):
            raise ValueError("labels must be non-empty strings")
        unique, counts = np.unique(ids, return_counts=True)
        clashes = sorted(set(unique[counts > 1]) | set(ids[np.isin(ids, self._ids)]))
        if clashes:
            raise ValueError(f"face ids repeated or already enrolled: {clashes[:5]}")
        if not len(ids):
            return self
        new = [name for name in dict.fromkeys(labels.tolist()) if name not in self._code_of]
        self._code_of.update((name, len(self._people) + i) for i, name in enumerate(new))
        self._people = np.concatenate([self._people, np.array(new, dtype=str)])
        self._sums = np.vstack([self._sums, np.zeros((len(new), self.dimensions))])
        self._counts = np.concatenate([self._counts, np.zeros(len(new), dtype=np.int64)])
        codes = self._codes_of(labels)
        keys = np.arange(self._next_key, self._next_key + len(ids), dtype=np.int64)
        self._next_key += len(ids)
        self._ids = np.concatenate([self._ids, ids])
        self._codes = np.concatenate([self._codes, codes])
        self._keys = np.concatenate([self._keys, keys])
        self._vectors = np.concatenate([self._vectors, vectors])
        np.add.at(self._sums, codes, vectors.astype(np.float64))
        np.add.at(self._counts, codes, 1)
        if self._faces_index is not None:
            self._faces_index.add(keys, vectors)
        self._refresh_indexes(np.unique(codes))
        return self

    def remove_ids(self, ids) -> int:
        """Forget these faces (ids not enrolled are ignored). Returns how many were removed."""
        rows = np.flatnonzero(np.isin(self._ids, np.asarray(ids, dtype=str)))
        if not len(rows):
            return 0
        codes = self._codes[rows]
        np.subtract.at(self._sums, codes, self._vectors[rows].astype(np.float64))
        np.subtract.at(self._counts, codes, 1)
        self._sums[self._counts == 0] = 0.0  # no rounding residue for people with no faces
        if self._faces_index is not None:
            self._faces_index.remove(self._keys[rows])
        keep = np.ones(len(self._ids), dtype=bool)
        keep[rows] = False
        self._ids, self._codes = self._ids[keep], self._codes[keep]
        self._keys, self._vectors = self._keys[keep], self._vectors[keep]
        self._refresh_indexes(np.unique(codes))
        return len(rows)

    def remove_label(self, label: str) -> int:
        """Forget every face of a person. Returns how many were removed (0: not enrolled)."""
        code = self._code_of.get(label, -1)
        return self.remove_ids(self._ids[self._codes == code]) if code >= 0 else 0

    def set_search_expansion(self, expansion_search: int) -> Gallery:
        """Change the HNSW search breadth (ef) without rebuilding: higher finds the true
        nearest neighbours more often and costs time. Kept by ``to_bytes``. Returns self."""
        self.index_settings = replace(self.index_settings, expansion_search=expansion_search)
        for index in self._indexes().values():
            if index is not None:
                index.set_search_expansion(expansion_search)
        return self

    # ---- search ------------------------------------------------------------------------

    def search(self, vectors, k: int = 1, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` people most similar to each query by their most similar enrolled face.

        ``vectors`` (Q, D) unit vectors; ``exclude`` (Q,) or (Q, m) labels to leave out per
        query ("" leaves out nothing). Returns labels (Q, k) str and cosine similarities
        float32 (Q, k), best first, padded with "" and -inf when fewer people qualify."""
        return self._search(vectors, k, exclude, self._face_scores)

    def search_centroids(self, vectors, k: int = 1, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, but every person is scored by their centroid's cosine similarity."""
        return self._search(vectors, k, exclude, self._centroid_scores)

    # ---- persistence -------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The gallery as one .npz (no pickle): faces, people, settings and any HNSW graphs."""
        meta = {
            "format": FORMAT,
            "dimensions": self.dimensions,
            "approximate_from": self.approximate_from,
            "index": asdict(self.index_settings),
            "next_key": self._next_key,
        }
        arrays = {
            "ids": self._ids,
            "codes": self._codes,
            "keys": self._keys,
            "vectors": self._vectors,
            "people": self._people,
            "meta": np.array(json.dumps(meta)),
        }
        for name, index in self._indexes().items():
            if index is not None:
                arrays[name] = np.frombuffer(index.to_bytes(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Gallery:
        """A gallery written by ``to_bytes``; the same searches give the same answers."""
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            if meta["format"] != FORMAT:
                raise ValueError(f"gallery format {meta['format']} is not {FORMAT}")
            settings = IndexSettings(**meta["index"])
            gallery = cls(meta["dimensions"], meta["approximate_from"], settings)
            gallery._ids, gallery._codes = arrays["ids"], arrays["codes"]
            gallery._keys, gallery._vectors = arrays["keys"], arrays["vectors"]
            gallery._people, gallery._next_key = arrays["people"], meta["next_key"]
            graphs = {name: arrays[name].tobytes() for name in cls._INDEXES if name in arrays}
        gallery._code_of = {name: code for code, name in enumerate(gallery._people.tolist())}
        gallery._sums = np.zeros((len(gallery._people), gallery.dimensions))
        np.add.at(gallery._sums, gallery._codes, gallery._vectors.astype(np.float64))
        gallery._counts = np.bincount(gallery._codes, minlength=len(gallery._people))
        for name, graph in graphs.items():
            setattr(gallery, f"_{name}", _ApproximateIndex(gallery.dimensions, settings, graph))
        return gallery

    # ---- internals ---------------------------------------------------------------------

    _INDEXES = ("faces_index", "centroids_index")

    def _indexes(self) -> dict[str, _ApproximateIndex | None]:
        return {name: getattr(self, f"_{name}") for name in self._INDEXES}

    def _check_vectors(self, vectors) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            raise ValueError(
                f"expected vectors of shape (N, {self.dimensions}), got {vectors.shape}"
            )
        norms = np.linalg.norm(vectors, axis=1)
        if len(norms) and np.abs(norms - 1.0).max() > UNIT_TOLERANCE:
            raise ValueError("vectors must be unit length (L2-normalised embeddings)")
        return np.ascontiguousarray(vectors)

    def _codes_of(self, labels) -> np.ndarray:
        """(Q,) int64 person codes of ``labels``, -1 for names never enrolled."""
        names = np.asarray(labels, dtype=str).ravel().tolist()
        return np.array([self._code_of.get(name, -1) for name in names], dtype=np.int64)

    def _refresh_indexes(self, changed: np.ndarray) -> None:
        """Build an index once past the threshold, drop it below half of it, and re-insert
        the centroids of the people whose faces changed (``changed``: codes)."""
        self._exact.clear()
        if self._faces_index is None and len(self) >= self.approximate_from:
            self._faces_index = _ApproximateIndex(self.dimensions, self.index_settings)
            self._faces_index.add(self._keys, self._vectors)
        elif self._faces_index is not None and len(self) < self.approximate_from // 2:
            self._faces_index = None
        enrolled = np.flatnonzero(self._counts > 0)
        if self._centroids_index is None and len(enrolled) >= self.approximate_from:
            self._centroids_index = _ApproximateIndex(self.dimensions, self.index_settings)
            changed = enrolled
        elif self._centroids_index is not None and len(enrolled) < self.approximate_from // 2:
            self._centroids_index = None
        elif self._centroids_index is not None:
            self._centroids_index.remove(changed)  # keys it does not hold are ignored
        if self._centroids_index is not None:
            changed = changed[self._counts[changed] > 0]
            self._centroids_index.add(changed, l2_normalise(self._sums[changed]).astype(np.float32))

    def _search(self, vectors, k, exclude, scores_of) -> tuple[np.ndarray, np.ndarray]:
        queries = self._check_vectors(vectors)
        excluded = self._excluded_codes(exclude, len(queries))
        labels = np.full((len(queries), k), NO_LABEL, dtype=self._people.dtype)
        similarities = np.full((len(queries), k), -np.inf, dtype=np.float32)
        if not len(self._people):
            return labels, similarities
        step = max(1, 2**24 // max(len(self._people), 1))  # at most 16 M scores (64 MB) at once
        for start in range(0, len(queries), step):
            chunk = slice(start, start + step)
            scores = scores_of(queries[chunk], k + excluded.shape[1], excluded[chunk])
            rows = np.arange(len(scores))[:, None]
            scores[rows, excluded[chunk].clip(0)] = np.where(
                excluded[chunk] >= 0, -np.inf, scores[rows, excluded[chunk].clip(0)]
            )
            width = min(k, scores.shape[1])
            if not width:
                continue
            best = np.argpartition(-scores, width - 1, axis=1)[:, :width]
            best = np.take_along_axis(best, np.argsort(-np.take_along_axis(scores, best, 1), 1), 1)
            top = np.take_along_axis(scores, best, 1)
            similarities[chunk, :width] = top
            labels[chunk, :width] = np.where(np.isfinite(top), self._people[best], NO_LABEL)
        return labels, similarities

    def _face_scores(self, queries: np.ndarray, k: int, excluded: np.ndarray) -> np.ndarray:
        """(Q, P) float32: each person's best face similarity (-inf: none, or not a candidate)."""
        scores = np.full((len(queries), len(self._people)), -np.inf, dtype=np.float32)
        if not len(self):
            return scores
        if self._faces_index is None:
            if "by_person" not in self._exact:
                order = np.argsort(self._codes, kind="stable")
                codes = self._codes[order]
                starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
                self._exact.update(
                    by_person=self._vectors[order], starts=starts, owners=codes[starts]
                )
            similarities = queries @ self._exact["by_person"].T
            scores[:, self._exact["owners"]] = np.maximum.reduceat(
                similarities, self._exact["starts"], axis=1
            )
            return scores
        # Faces of excluded people may fill the first places: fetch that many more.
        extra = int(self._counts[excluded[excluded >= 0]].max(initial=0))
        keys = self._faces_index.search(queries, min(len(self), k + CANDIDATES + extra))
        rows = np.searchsorted(self._keys, keys.clip(0)).clip(0, len(self) - 1)
        valid = (keys >= 0) & (self._keys[rows] == keys)
        similarities = np.einsum("qd,qcd->qc", queries, self._vectors[rows])
        return _scatter_max(scores, np.where(valid, self._codes[rows], -1), similarities)

    def _centroid_scores(self, queries: np.ndarray, k: int, excluded: np.ndarray) -> np.ndarray:
        """(Q, P) float32: each person's centroid similarity (-inf: none, or not a candidate)."""
        if self._centroids_index is None:
            if "centroids" not in self._exact:
                self._exact["centroids"] = l2_normalise(self._sums).astype(np.float32)
            scores = queries @ self._exact["centroids"].T
            scores[:, self._counts == 0] = -np.inf
            return scores
        codes = self._centroids_index.search(queries, min(len(self._people), k + CANDIDATES))
        similarities = np.einsum("qd,qcd->qc", queries, l2_normalise(self._sums[codes.clip(0)]))
        scores = np.full((len(queries), len(self._people)), -np.inf, dtype=np.float32)
        return _scatter_max(scores, codes, similarities.astype(np.float32))

    def _excluded_codes(self, exclude, count: int) -> np.ndarray:
        """(Q, m) int64 codes of the people to leave out per query, -1 for none."""
        if exclude is None:
            return np.full((count, 0), -1, dtype=np.int64)
        labels = np.asarray(exclude, dtype=str).reshape(count, -1)
        return self._codes_of(labels).reshape(labels.shape)


def _scatter_max(scores: np.ndarray, codes: np.ndarray, similarities: np.ndarray) -> np.ndarray:
    """Into ``scores`` (Q, P), each query's best similarity per candidate person code
    (``codes`` and ``similarities`` (Q, C); code -1: no candidate). Returns ``scores``."""
    rows = np.broadcast_to(np.arange(len(codes))[:, None], codes.shape)
    valid = codes >= 0
    np.maximum.at(scores, (rows[valid], codes[valid]), similarities[valid])
    return scores
