"""Galleries that outgrow an SVC: nearest-neighbour search at 10 k, 100 k and 1 M faces.

Synthetic embeddings fitted to the real LFW dev-train ones (person centres from a Gaussian of
the real centroids, faces from the real within-person covariance scaled by real residual norms)
plus the real ones. Measures enrolment time, query time and memory for exact and approximate
search, recall@1 of the approximate index against exact search, four ANN libraries side by
side, where exact search gets slow, and SVC training time against the number of people.
Writes ``scale.json`` and ``SCALE.md``. Run ``.venv/bin/python bench/scale.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
from open_set import DEFAULT_CACHE, DEFAULT_LFW, REPO_ROOT, load_embeddings, machine, variant
from threadpoolctl import threadpool_limits

from facerec.core.vectors import l2_normalise
from facerec.engines.classifier import FaceClassifier
from facerec.engines.gallery import APPROXIMATE_FROM, Gallery, IndexSettings
from facerec.engines.openset import calibrate, identify

SIZES = (10_000, 100_000, 1_000_000)
FACES_PER_PERSON = 10
QUERIES = 1000  # half new faces of enrolled synthetic people, half held-out real LFW photos
CROSSOVER_SIZES = (1_000, 3_000, 10_000, 30_000, 50_000, 100_000, 300_000)
LIBRARY_SIZE = 100_000
EXPANSIONS = (64, 128, 256, 512)  # HNSW ef values swept on each approximate gallery
SVC_PEOPLE = (10, 50, 100, 200, 400, 600, 900, 1350, 2000, 3000)  # x1.5 steps late on
SVC_LIMIT_SECONDS = 120.0


class SyntheticFaces:
    """A generator of embeddings that look like ``vectors`` (N, D) unit vectors of ``labels``.

    Person centres ~ N(mean of the real centroids, their covariance less the part the
    within-person spread explains); a face is unit(centre + s * e), e ~ N(0, within-person
    covariance), s the norm of a real residual (drawn at random) over the expected norm, so the
    spread varies from face to face as it does in real photos."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray):
        _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        keep = counts[codes] >= 2
        vectors, codes = vectors[keep].astype(np.float64), codes[keep]
        used, codes = np.unique(codes, return_inverse=True)
        n = np.bincount(codes).astype(np.float64)
        means = np.zeros((len(used), vectors.shape[1]))
        np.add.at(means, codes, vectors)
        means /= n[:, None]
        residuals = (vectors - means[codes]) * np.sqrt(n[codes] / (n[codes] - 1))[:, None]
        self.within = residuals.T @ residuals / len(residuals)
        self.residual_scale = np.linalg.norm(residuals, axis=1) / np.sqrt(np.trace(self.within))
        self.mean = means.mean(axis=0)
        between = np.cov(means.T) - self.within * np.mean(1.0 / n)
        values, vectors_ = np.linalg.eigh(between)
        self.between = (vectors_ * values.clip(0)) @ vectors_.T

    def centres(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """float64 (count, D) person centres."""
        return rng.multivariate_normal(self.mean, self.between, size=count, method="eigh")

    def faces(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 (len(centres), D) unit vectors: one face around each given centre."""
        out = np.empty(centres.shape, dtype=np.float32)
        for start in range(0, len(centres), 100_000):
            chunk = centres[start : start + 100_000]
            noise = rng.multivariate_normal(
                np.zeros(len(self.mean)), self.within, size=len(chunk), method="eigh"
            )
            scale = rng.choice(self.residual_scale, size=len(chunk))[:, None]
            out[start : start + len(chunk)] = l2_normalise(chunk + scale * noise)
        return out


def pair_statistics(vectors: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict:
    """Cosine similarity of same-person pairs (up to 20 faces per person) and of 200,000 random
    different-person pairs: mean, std and the tail quantiles that decide a nearest neighbour."""
    same = []
    for label, count in Counter(labels).items():
        if count >= 2:
            rows = np.flatnonzero(labels == label)[:20]
            similarities = vectors[rows] @ vectors[rows].T
            same.append(similarities[np.triu_indices(len(rows), 1)])
    same = np.concatenate(same)
    left, right = rng.integers(0, len(vectors), (2, 200_000))
    different = labels[left] != labels[right]
    other = np.einsum("ij,ij->i", vectors[left[different]], vectors[right[different]])
    return {
        "same_mean": float(same.mean()),
        "same_std": float(same.std()),
        "same_q01": float(np.quantile(same, 0.01)),
        "different_mean": float(other.mean()),
        "different_std": float(other.std()),
        "different_q999": float(np.quantile(other, 0.999)),
    }


def rss_mib() -> float:
    """This process's resident set size now, MiB."""
    status = Path("/proc/self/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        / 1024
    )


def latencies(call, queries: np.ndarray) -> dict[str, float]:
    """One query per call (after 20 untimed): median and p95 ms."""
    for query in queries[:20]:
        call(query[None])
    seconds = []
    for query in queries:
        started = time.perf_counter()
        call(query[None])
        seconds.append(time.perf_counter() - started)
    return {
        "p50_ms": float(np.median(seconds) * 1000),
        "p95_ms": float(np.percentile(seconds, 95) * 1000),
    }


class Data:
    """Real embeddings (aligned + flipped) with a held-out set of real queries, and the
    synthetic generator fitted to the rest."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, seed: int):
        self.rng = np.random.default_rng(seed)
        counts = Counter(labels)
        candidates = np.flatnonzero([counts[label] >= 2 for label in labels])
        held_out = np.sort(self.rng.choice(candidates, QUERIES // 2, replace=False))
        keep = np.ones(len(labels), bool)
        keep[held_out] = False
        self.real, self.real_labels = vectors[keep], labels[keep]
        self.real_queries = vectors[held_out]
        self.model = SyntheticFaces(self.real, self.real_labels)

    def gallery_data(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ids (size,), labels (size,), vectors (size, D), queries (QUERIES, D)): the real faces
        plus synthetic people of FACES_PER_PERSON faces; queries are new faces of the synthetic
        people and the held-out real photos (or, below the real set's size, real faces only)."""
        if size <= len(self.real):
            rows = np.sort(self.rng.choice(len(self.real), size, replace=False))
            vectors, labels = self.real[rows], self.real_labels[rows]
            queries = self.real_queries
        else:
            people = -(-(size - len(self.real)) // FACES_PER_PERSON)
            centres = self.model.centres(people, self.rng)
            synthetic = self.model.faces(np.repeat(centres, FACES_PER_PERSON, axis=0), self.rng)
            vectors = np.concatenate([self.real, synthetic[: size - len(self.real)]])
            names = np.char.add("synthetic-", np.arange(people).astype(str))
            labels = np.concatenate(
                [self.real_labels, np.repeat(names, FACES_PER_PERSON)[: size - len(self.real)]]
            )
            asked = self.model.faces(centres[self.rng.integers(0, people, QUERIES // 2)], self.rng)
            queries = np.concatenate([asked, self.real_queries])
        return np.arange(size).astype(str), labels, vectors, queries


# ---- benchmarks -----------------------------------------------------------------------------


def bench_gallery(data: Data, size: int, threshold: float) -> dict:
    """Exact and approximate galleries of ``size`` faces: enrolment time, memory, identify
    latency (search + open-set score), and how often the approximate answers match exact."""
    ids, labels, vectors, queries = data.gallery_data(size)
    result = {"faces": size, "people": len(np.unique(labels))}
    answers = {}
    for mode, approximate_from in (("exact", sys.maxsize), ("approximate", 1)):
        before = rss_mib()
        started = time.perf_counter()
        gallery = Gallery(approximate_from=approximate_from).add(ids, labels, vectors)
        enrol = time.perf_counter() - started
        result[mode] = {
            "enrol_s": enrol,
            "enrol_faces_per_s": size / enrol,
            "memory_mib": gallery.nbytes / 2**20,
            "rss_growth_mib": rss_mib() - before,
            "identify": latencies(lambda q, g=gallery: identify(g, q, threshold), queries),
            "search_top1": latencies(lambda q, g=gallery: g.search(q, 1), queries),
        }
        extra = data.model.faces(data.model.centres(1, data.rng).repeat(5, axis=0), data.rng)
        started = time.perf_counter()
        gallery.add(np.char.add("new-", np.arange(5).astype(str)), ["new person"] * 5, extra)
        result[mode]["enrol_one_person_5_faces_ms"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        gallery.remove_label("new person")
        result[mode]["remove_one_person_ms"] = (time.perf_counter() - started) * 1000
        answers[mode] = (
            gallery.search(queries, 1)[0][:, 0],
            identify(gallery, queries, threshold)[0],
        )
        print(f"  {size} faces, {mode}: {result[mode]}", flush=True)
        if mode == "approximate":
            result["expansion"] = sweep_expansion(gallery, queries, threshold, answers["exact"])
        del gallery
    default = IndexSettings().expansion_search
    chosen = next(row for row in result["expansion"] if row["expansion_search"] == default)
    result["recall_at_1"], result["identify_agreement"] = (
        chosen["recall_at_1"],
        chosen["identify_agreement"],
    )
    return result


def sweep_expansion(gallery: Gallery, queries, threshold: float, exact) -> list[dict]:
    """recall@1 against exact search (the top person), identify agreement and identify
    latency for several HNSW search breadths (ef) of the same approximate gallery."""
    rows = []
    for expansion in EXPANSIONS:
        gallery.set_search_expansion(expansion)
        labels = gallery.search(queries, 1)[0][:, 0]
        answers = identify(gallery, queries, threshold)[0]
        rows.append(
            {
                "expansion_search": expansion,
                "recall_at_1": float((labels == exact[0]).mean()),
                "identify_agreement": float((answers == exact[1]).mean()),
                "identify": latencies(lambda q: identify(gallery, q, threshold), queries),
            }
        )
        print(f"    ef {expansion}: {rows[-1]}", flush=True)
    gallery.set_search_expansion(IndexSettings().expansion_search)
    return rows


def bench_crossover(data: Data) -> list[dict]:
    """Face search time of exact and approximate galleries against their size, and the
    approximate index's build time: where exact search stops being cheap."""
    rows = []
    for size in CROSSOVER_SIZES:
        ids, labels, vectors, queries = data.gallery_data(size)
        row = {"faces": size}
        for mode, approximate_from in (("exact", sys.maxsize), ("approximate", 1)):
            started = time.perf_counter()
            gallery = Gallery(approximate_from=approximate_from).add(ids, labels, vectors)
            row[f"{mode}_enrol_s"] = time.perf_counter() - started
            row[f"{mode}_search"] = latencies(lambda q, g=gallery: g.search(q, 1), queries[:300])
        rows.append(row)
        print(f"  crossover {row}", flush=True)
    return rows


def bench_blas_threads(data: Data, threshold: float, size: int) -> dict:
    """identify on an exact gallery with OpenBLAS's default threads and with one: a single
    query's matrix product gains nothing from threads and loses much when other processes
    keep the cores busy."""
    ids, labels, vectors, queries = data.gallery_data(size)
    gallery = Gallery(approximate_from=sys.maxsize).add(ids, labels, vectors)
    result = {"faces": size, "load_average": [round(v, 2) for v in os.getloadavg()]}
    result["default_threads"] = latencies(lambda q: identify(gallery, q, threshold), queries)
    with threadpool_limits(1, "blas"):
        result["one_thread"] = latencies(lambda q: identify(gallery, q, threshold), queries)
    print(f"  {result}", flush=True)
    return result


def bench_libraries(data: Data) -> list[dict]:
    """hnswlib, faiss (HNSW and IVF) and usearch (float32 and bfloat16) on the same
    LIBRARY_SIZE faces: build time (2 threads), query p50/p95 (k=10, 1 thread), memory and
    recall@1 of the nearest face against exact search. Libraries not installed are skipped."""
    _, _, vectors, queries = data.gallery_data(LIBRARY_SIZE)
    exact = np.argmax(queries @ vectors.T, axis=1)
    settings = IndexSettings()
    rows = []

    def record(name, build, search, nbytes, note=""):
        started = time.perf_counter()
        index = build()
        built = time.perf_counter() - started
        nearest = np.array([search(index, query[None], 1)[0] for query in queries])
        row = {
            "library": name,
            "version": version_of(name.split()[0]),
            "build_s": built,
            "query": latencies(lambda q: search(index, q, 10), queries),
            "memory_mib": nbytes(index) / 2**20,
            "recall_at_1": float((nearest == exact).mean()),
            "note": note,
        }
        rows.append(row)
        print(f"  {row}", flush=True)

    hnsw = (
        f"M={settings.connectivity}, efConstruction={settings.expansion_add}, "
        f"ef={settings.expansion_search}"
    )
    try:
        import hnswlib

        def build_hnswlib():
            index = hnswlib.Index(space="ip", dim=vectors.shape[1])
            index.init_index(
                len(vectors),
                M=settings.connectivity,
                ef_construction=settings.expansion_add,
                random_seed=0,
            )
            index.set_num_threads(2)
            index.add_items(vectors, np.arange(len(vectors)))
            index.set_num_threads(1)
            index.set_ef(settings.expansion_search)
            return index

        record(
            "hnswlib",
            build_hnswlib,
            lambda index, q, k: index.knn_query(q, k)[0][0],
            lambda index: index.index_file_size(),
            f"HNSW {hnsw}; sdist only on PyPI (needs a C++ compiler)",
        )
    except ImportError:
        print("  hnswlib not installed: skipped")
    try:
        import faiss

        def build_faiss_hnsw():
            faiss.omp_set_num_threads(2)
            index = faiss.IndexHNSWFlat(
                vectors.shape[1], settings.connectivity, faiss.METRIC_INNER_PRODUCT
            )
            index.hnsw.efConstruction = settings.expansion_add
            index.add(vectors)
            faiss.omp_set_num_threads(1)
            index.hnsw.efSearch = settings.expansion_search
            return index

        def build_faiss_ivf():
            faiss.omp_set_num_threads(2)
            lists = int(4 * np.sqrt(len(vectors)))
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(vectors.shape[1]),
                vectors.shape[1],
                lists,
                faiss.METRIC_INNER_PRODUCT,
            )
            index.cp.seed = 0
            index.train(vectors)
            index.add(vectors)
            faiss.omp_set_num_threads(1)
            index.nprobe = 64
            return index

        def faiss_size(index):
            return faiss.serialize_index(index).nbytes

        def faiss_search(index, q, k):
            return index.search(q, k)[1][0]

        record(
            "faiss-cpu HNSWFlat",
            build_faiss_hnsw,
            faiss_search,
            faiss_size,
            f"HNSW {hnsw}; no removal",
        )
        record(
            "faiss-cpu IVFFlat",
            build_faiss_ivf,
            faiss_search,
            faiss_size,
            "4 sqrt(N) lists, nprobe 64; trained k-means",
        )
    except ImportError:
        print("  faiss-cpu not installed: skipped")
    from usearch.index import Index

    for dtype in ("f32", "bf16"):

        def build_usearch(dtype=dtype):
            index = Index(
                ndim=vectors.shape[1],
                metric="ip",
                dtype=dtype,
                connectivity=settings.connectivity,
                expansion_add=settings.expansion_add,
                expansion_search=settings.expansion_search,
            )
            index.add(np.arange(len(vectors)), vectors, threads=2)
            return index

        record(
            f"usearch {dtype}",
            build_usearch,
            lambda index, q, k: index.search(q, k, threads=1).keys.reshape(-1),
            lambda index: index.memory_usage,
            f"HNSW {hnsw}; raw index, without the gallery's exact rescoring",
        )
    return rows


def bench_svc(data: Data, limit: float) -> dict:
    """The package's FaceClassifier (linear SVC, C=10, plus sigmoid calibration) fitted on
    FACES_PER_PERSON synthetic faces per person, for more and more people until one fit
    takes over ``limit`` seconds; then extrapolated with the growth of the last fits. The
    gallery's enrolment and calibration of the same faces beside it."""
    rows = []
    for people in SVC_PEOPLE:
        centres = data.model.centres(people, data.rng)
        X = data.model.faces(np.repeat(centres, FACES_PER_PERSON, axis=0), data.rng)
        y = np.repeat(np.char.add("p", np.arange(people).astype(str)), FACES_PER_PERSON)
        started = time.perf_counter()
        FaceClassifier(C=10.0, random_state=0).fit(X, y)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        gallery = Gallery().add(np.arange(len(y)).astype(str), y, X)
        enrol = time.perf_counter() - started
        started = time.perf_counter()
        calibrate(gallery)
        rows.append(
            {
                "people": people,
                "faces": len(y),
                "svc_fit_s": fit,
                "gallery_enrol_s": enrol,
                "gallery_calibrate_s": time.perf_counter() - started,
            }
        )
        print(f"  {rows[-1]}", flush=True)
        if fit > limit:
            break
    tail = rows[-3:]
    growth = np.polyfit(
        np.log([r["people"] for r in tail]), np.log([r["svc_fit_s"] for r in tail]), 1
    )
    exponent, intercept = float(growth[0]), float(growth[1])

    def people_for(seconds):
        return float(np.exp((np.log(seconds) - intercept) / exponent))

    return {
        "faces_per_person": FACES_PER_PERSON,
        "rows": rows,
        "growth_exponent": exponent,
        "extrapolated": {
            "people_for_10_min_fit": people_for(600),
            "people_for_1_h_fit": people_for(3600),
            "fit_s_at_10000_people": float(np.exp(intercept) * 10_000**exponent),
            "fit_s_at_100000_people": float(np.exp(intercept) * 100_000**exponent),
        },
    }


def version_of(name: str) -> str:
    package = {"faiss-cpu": "faiss-cpu", "hnswlib": "hnswlib", "usearch": "usearch"}[name]
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "absent"


# ---- results --------------------------------------------------------------------------------


def render_markdown(results: dict) -> str:
    """scale.json as SCALE.md."""
    realism = results["realism"]
    lines = [
        "# Galleries that outgrow an SVC",
        "",
        f"`{results['command']}`, {results['machine']['date']}; written by `bench/scale.py`. "
        f"{results['machine']['cores']} cores, load average at start "
        f"{results['machine']['load_average_1_5_15']} (other work shares this machine: "
        "timings are noisy). "
        + ", ".join(f"{k} {v}" for k, v in results["machine"]["libraries"].items()),
        "",
        "## The embeddings",
        "",
        f"Real: {results['real_faces']} LFW dev-train faces (aligned + flipped), "
        f"{QUERIES // 2} more held out as queries. Synthetic people have {FACES_PER_PERSON} "
        "faces each; the queries are half new faces of enrolled synthetic people, half the "
        "held-out real photos.",
        "",
        "| cosine similarity | same person: mean | std | 1 % quantile "
        "| different people: mean | std | 99.9 % quantile |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("real", "synthetic"):
        row = realism[name]
        lines.append(
            f"| {name} | {row['same_mean']:.3f} | {row['same_std']:.3f} | {row['same_q01']:.3f} "
            f"| {row['different_mean']:.3f} | {row['different_std']:.3f} "
            f"| {row['different_q999']:.3f} |"
        )
    blas = results["blas_threads"]
    lines += [
        "",
        "## One BLAS thread",
        "",
        f"identify on an exact gallery of {blas['faces']:,} faces, load average "
        f"{blas['load_average']}: p50 / p95 {blas['default_threads']['p50_ms']:.2f} / "
        f"{blas['default_threads']['p95_ms']:.2f} ms with OpenBLAS's default threads, "
        f"{blas['one_thread']['p50_ms']:.2f} / {blas['one_thread']['p95_ms']:.2f} ms with one "
        "(`threadpoolctl.threadpool_limits(1, 'blas')`). Every other figure below was measured "
        "with one BLAS thread, as a serving process should run; SVC fits are libsvm, single "
        "threaded either way.",
    ]
    lines += [
        "",
        "## Exact and approximate galleries",
        "",
        "identify = nearest face + open-set score (two searches: faces, then centroids); one "
        "query per call. Memory: the gallery's arrays and index (`Gallery.nbytes`) and the "
        "process RSS growth while enrolling. recall@1: approximate top person = exact top "
        "person; identify agreement: same answer, unknown included.",
        "",
        "| faces | people | search | enrol (s) | faces/s | memory (MiB) | RSS growth (MiB) "
        "| identify p50 / p95 (ms) | search p50 (ms) | enrol 1 person (ms) "
        "| forget 1 person (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["galleries"]:
        for mode in ("exact", "approximate"):
            m = row[mode]
            lines.append(
                f"| {row['faces']:,} | {row['people']:,} | {mode} | {m['enrol_s']:.1f} "
                f"| {m['enrol_faces_per_s']:,.0f} | {m['memory_mib']:.0f} "
                f"| {m['rss_growth_mib']:.0f} | {m['identify']['p50_ms']:.2f} / "
                f"{m['identify']['p95_ms']:.2f} | {m['search_top1']['p50_ms']:.2f} "
                f"| {m['enrol_one_person_5_faces_ms']:.1f} | {m['remove_one_person_ms']:.1f} |"
            )
    lines += [
        "",
        "The HNSW search breadth (ef) trades recall for time without a rebuild "
        f"(`Gallery.set_search_expansion`); the default is {IndexSettings().expansion_search}.",
        "",
        "| faces | ef | recall@1 (approximate vs exact) | identify agreement "
        "| identify p50 / p95 (ms) |",
        "|---|---|---|---|---|",
    ]
    for row in results["galleries"]:
        for sweep in row["expansion"]:
            lines.append(
                f"| {row['faces']:,} | {sweep['expansion_search']} | {sweep['recall_at_1']:.4f} "
                f"| {sweep['identify_agreement']:.4f} | {sweep['identify']['p50_ms']:.2f} / "
                f"{sweep['identify']['p95_ms']:.2f} |"
            )
    lines += [
        "",
        "## Where exact search gets slow",
        "",
        f"A face search costs time linear in the faces when exact; the HNSW index answers in "
        f"well under a millisecond at any size here but takes a build. `Gallery` searches "
        f"exactly below {APPROXIMATE_FROM:,} faces (`gallery.APPROXIMATE_FROM`; people's "
        "centroids likewise), where an exact search still costs a few milliseconds and "
        "needs no build, no graph memory and gives exact answers.",
        "",
        "| faces | exact search p50 / p95 (ms) | approximate search p50 / p95 (ms) "
        "| approximate build (s) |",
        "|---|---|---|---|",
    ]
    for row in results["crossover"]:
        e, a = row["exact_search"], row["approximate_search"]
        lines.append(
            f"| {row['faces']:,} | {e['p50_ms']:.2f} / {e['p95_ms']:.2f} "
            f"| {a['p50_ms']:.2f} / {a['p95_ms']:.2f} | {row['approximate_enrol_s']:.1f} |"
        )
    lines += [
        "",
        f"## ANN libraries, {LIBRARY_SIZE:,} faces",
        "",
        "| library | version | build, 2 threads (s) | query k=10 p50 / p95 (ms) | memory (MiB) "
        "| recall@1 (nearest face) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["libraries"]:
        lines.append(
            f"| {row['library']} | {row['version']} | {row['build_s']:.1f} "
            f"| {row['query']['p50_ms']:.3f} / {row['query']['p95_ms']:.3f} "
            f"| {row['memory_mib']:.0f} | {row['recall_at_1']:.4f} | {row['note']} |"
        )
    svc = results["svc"]
    lines += [
        "",
        f"## SVC training time against people ({svc['faces_per_person']} faces each)",
        "",
        "The package's FaceClassifier (linear SVC, C=10, one-vs-one, plus 3-fold sigmoid "
        "calibration): what `facerec train` fits. Beside it, the gallery: enrolling the same "
        "faces and calibrating its threshold (leave-one-person-out).",
        "",
        "| people | faces | SVC fit (s) | gallery enrol (s) | gallery calibrate (s) |",
        "|---|---|---|---|---|",
    ]
    for row in svc["rows"]:
        lines.append(
            f"| {row['people']:,} | {row['faces']:,} | {row['svc_fit_s']:.1f} "
            f"| {row['gallery_enrol_s']:.3f} | {row['gallery_calibrate_s']:.2f} |"
        )
    extrapolated = svc["extrapolated"]
    lines += [
        "",
        f"Fit time grows as people^{svc['growth_exponent']:.2f} over the last three sizes; "
        f"extrapolated: a 10-minute fit at {extrapolated['people_for_10_min_fit']:,.0f} people, "
        f"an hour at {extrapolated['people_for_1_h_fit']:,.0f}; "
        f"{extrapolated['fit_s_at_10000_people'] / 3600:,.1f} h at 10,000 people and "
        f"{extrapolated['fit_s_at_100000_people'] / 86400:,.0f} days at 100,000.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW dev-train folder")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embeddings cache")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="gallery sizes")
    parser.add_argument("--svc-limit", type=float, default=SVC_LIMIT_SECONDS, help="seconds")
    parser.add_argument("--quick", action="store_true", help="small sizes, a quick check")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench", help="results folder")
    parser.add_argument(
        "--cache-dir", type=Path, default=REPO_ROOT / ".cache", help="`make setup` cache"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global CROSSOVER_SIZES, LIBRARY_SIZE, SVC_PEOPLE
    args = parse_args(argv)
    if not (args.lfw / "images").is_dir():
        print(f"skipped: {args.lfw / 'images'} not found (the synthetic faces are fitted to it)")
        return 0
    if args.quick:
        args.sizes, args.svc_limit = (2_000, 20_000), 5.0
        CROSSOVER_SIZES, LIBRARY_SIZE, SVC_PEOPLE = (1_000, 20_000), 20_000, (10, 50, 100)
    started = time.perf_counter()
    _, people, embeddings, found = load_embeddings(args.lfw.resolve(), args.cache, args.cache_dir)
    vectors = variant(embeddings, "aligned", flip=True)[found]
    data = Data(vectors, people[found], seed=0)
    synthetic_centres = data.model.centres(2000, data.rng)
    synthetic = data.model.faces(np.repeat(synthetic_centres, 5, axis=0), data.rng)
    realism = {
        "real": pair_statistics(data.real, data.real_labels, np.random.default_rng(0)),
        "synthetic": pair_statistics(
            synthetic, np.repeat(np.arange(2000), 5), np.random.default_rng(0)
        ),
    }
    print(f"realism: {realism}")
    real = Gallery().add(np.arange(len(data.real)).astype(str), data.real_labels, data.real)
    threshold = calibrate(real).threshold
    print("== BLAS threads")
    blas = bench_blas_threads(data, threshold, min(100_000, max(args.sizes)))
    with threadpool_limits(1, "blas"):  # what a serving process should do (see above)
        print("== ANN libraries")
        libraries = bench_libraries(data)
        print("== crossover")
        crossover = bench_crossover(data)
        print("== galleries")
        galleries = [bench_gallery(data, size, threshold) for size in args.sizes]
    print("== SVC")
    svc = bench_svc(data, args.svc_limit)
    command = " ".join(["python bench/scale.py", *(argv if argv is not None else sys.argv[1:])])
    results = {
        "command": command,
        "machine": machine(),
        "real_faces": len(data.real),
        "realism": realism,
        "blas_threads": blas,
        "libraries": libraries,
        "crossover": crossover,
        "galleries": galleries,
        "svc": svc,
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "SCALE.md").write_text(render_markdown(results))
    print(f"written: {args.out / 'scale.json'}, {args.out / 'SCALE.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
