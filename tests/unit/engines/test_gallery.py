"""The nearest-neighbour gallery on synthetic unit vectors: exact and HNSW search, enrolling and
forgetting people, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.engines.gallery import Gallery, IndexSettings

DIMENSIONS = 128


def people(count: int, faces: int, seed: int = 0, spread: float = 0.5):
    """(ids (N,), labels (N,), unit vectors (N, 128), centres (count, 128)): ``faces`` around
    each of ``count`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, DIMENSIONS))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat([f"person {i:03d}" for i in range(count)], faces)
    points = np.repeat(centres, faces, axis=0) + spread * rng.normal(
        size=(count * faces, DIMENSIONS)
    ) / np.sqrt(DIMENSIONS)
    vectors = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    ids = np.array([f"{seed}-{i}" for i in range(len(labels))])
    return ids, labels, vectors, centres


def queries_near(centres: np.ndarray, seed: int, spread: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = centres + spread * rng.normal(size=centres.shape) / np.sqrt(DIMENSIONS)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def exact_and_approximate(ids, labels, vectors):
    exact = Gallery(approximate_from=10**9).add(ids, labels, vectors)
    approximate_from = len(set(labels))  # both faces and centroids go through an index
    approximate = Gallery(approximate_from=approximate_from).add(ids, labels, vectors)
    assert exact.approximate == {"faces": False, "centroids": False}
    assert approximate.approximate == {"faces": True, "centroids": True}
    return exact, approximate


def test_exact_search_is_the_best_face_per_person():
    ids, labels, vectors, centres = people(20, 6)
    gallery = Gallery().add(ids, labels, vectors)
    queries = queries_near(centres, seed=1)
    found, scores = gallery.search(queries, k=3)
    similarities = queries @ vectors.T
    for q in range(len(queries)):
        best = {name: similarities[q, labels == name].max() for name in np.unique(labels)}
        expected = sorted(best, key=best.get, reverse=True)[:3]
        assert list(found[q]) == expected
        np.testing.assert_allclose(scores[q], [best[name] for name in expected], rtol=1e-5)
    assert list(found[:, 0]) == [f"person {i:03d}" for i in range(20)]


def test_centroid_search_and_centroids():
    ids, labels, vectors, centres = people(10, 5)
    gallery = Gallery().add(ids, labels, vectors)
    mean = vectors[labels == "person 003"].mean(axis=0)
    np.testing.assert_allclose(
        gallery.centroids(["person 003", "nobody"]),
        [mean / np.linalg.norm(mean), np.zeros(DIMENSIONS)],
        atol=1e-6,
    )
    found, scores = gallery.search_centroids(queries_near(centres, seed=2), k=2)
    assert list(found[:, 0]) == sorted(set(labels))
    assert (scores[:, 0] >= scores[:, 1]).all()


def test_exact_and_approximate_search_agree():
    ids, labels, vectors, centres = people(60, 8)
    exact, approximate = exact_and_approximate(ids, labels, vectors)
    queries = np.concatenate([queries_near(centres, seed=3), vectors[::7]])
    for search in ("search", "search_centroids"):
        exact_labels, exact_scores = getattr(exact, search)(queries, k=3)
        approximate_labels, approximate_scores = getattr(approximate, search)(queries, k=3)
        np.testing.assert_array_equal(approximate_labels, exact_labels)
        # candidates come from the index, similarities from the stored float32 vectors
        np.testing.assert_allclose(approximate_scores, exact_scores, rtol=1e-5, atol=1e-6)


def test_exclude_leaves_people_out_in_both_modes():
    ids, labels, vectors, _ = people(30, 5)
    for gallery in exact_and_approximate(ids, labels, vectors):
        found, _ = gallery.search(vectors, k=2, exclude=labels)
        assert not (found == labels[:, None]).any()
        both = np.stack([labels, found[:, 0]], axis=1)
        second, _ = gallery.search_centroids(vectors, k=1, exclude=both)
        assert not (second[:, 0] == labels).any() and not (second[:, 0] == found[:, 0]).any()


def test_fewer_people_than_asked_are_padded():
    ids, labels, vectors, _ = people(2, 3)
    found, scores = Gallery().add(ids, labels, vectors).search(vectors[:1], k=4)
    assert list(found[0]) == ["person 000", "person 001", "", ""]
    assert np.isfinite(scores[0, :2]).all() and np.isneginf(scores[0, 2:]).all()
    empty_labels, empty_scores = Gallery().search(vectors[:2], k=1)
    assert empty_labels.tolist() == [[""], [""]] and np.isneginf(empty_scores).all()


@pytest.mark.parametrize("approximate_from", [10**9, 50])
def test_enrol_and_forget_a_person_without_retraining(approximate_from):
    ids, labels, vectors, centres = people(12, 6)
    gallery = Gallery(approximate_from=approximate_from).add(ids[6:], labels[6:], vectors[6:])
    query = queries_near(centres[:1], seed=4)
    assert "person 000" not in gallery.people
    assert gallery.search(query)[0][0, 0] != "person 000"

    gallery.add(ids[:6], labels[:6], vectors[:6])
    assert gallery.search(query)[0][0, 0] == "person 000"
    assert len(gallery) == 72 and gallery.face_counts(["person 000"]).tolist() == [6]

    assert gallery.remove_label("person 000") == 6
    assert gallery.remove_label("person 000") == 0  # idempotent
    assert gallery.remove_label("never enrolled") == 0
    assert "person 000" not in gallery.people and len(gallery) == 66
    assert not (gallery.labels == "person 000").any()
    for search in (gallery.search, gallery.search_centroids):
        found, _ = search(np.concatenate([query, vectors[:6]]), k=11)
        assert not (found == "person 000").any()
    np.testing.assert_array_equal(gallery.centroids(["person 000"]), 0.0)

    gallery.add(ids[:2], labels[:2], vectors[:2])  # back again, with two faces
    assert gallery.search(query)[0][0, 0] == "person 000"
    assert gallery.remove_ids([ids[0], "unknown id"]) == 1
    assert gallery.face_counts(["person 000"]).tolist() == [1]


def test_index_follows_the_size_of_the_gallery():
    ids, labels, vectors, _ = people(10, 10)
    gallery = Gallery(approximate_from=60).add(ids[:50], labels[:50], vectors[:50])
    assert gallery.approximate["faces"] is False
    gallery.add(ids[50:], labels[50:], vectors[50:])
    assert gallery.approximate["faces"] is True
    for name in ("person 000", "person 001", "person 002", "person 003", "person 004"):
        gallery.remove_label(name)
    assert len(gallery) == 50 and gallery.approximate["faces"] is True  # kept above half
    gallery.remove_label("person 005")
    assert len(gallery) == 40 and gallery.approximate["faces"] is True
    gallery.remove_label("person 006")
    assert len(gallery) == 30 and gallery.approximate["faces"] is True
    gallery.remove_label("person 007")
    assert len(gallery) == 20 and gallery.approximate["faces"] is False


@pytest.mark.parametrize("approximate_from", [10**9, 30])
def test_save_and_load_round_trip(approximate_from):
    ids, labels, vectors, centres = people(40, 5)
    gallery = Gallery(approximate_from=approximate_from).add(ids, labels, vectors)
    gallery.remove_label("person 007")
    loaded = Gallery.from_bytes(gallery.to_bytes())
    assert loaded.approximate == gallery.approximate
    np.testing.assert_array_equal(loaded.ids, gallery.ids)
    np.testing.assert_array_equal(loaded.labels, gallery.labels)
    np.testing.assert_array_equal(loaded.vectors, gallery.vectors)
    np.testing.assert_array_equal(loaded.people, gallery.people)
    queries = queries_near(centres, seed=5)
    for search in ("search", "search_centroids"):
        before, after = getattr(gallery, search)(queries, 3), getattr(loaded, search)(queries, 3)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
    loaded.add(["new"], ["person 007"], vectors[:1])  # keys keep counting after a reload
    assert loaded.face_counts(["person 007"]).tolist() == [1]


def test_approximate_builds_are_deterministic():
    ids, labels, vectors, _ = people(80, 6)
    queries = vectors[::3]
    first, second = (
        Gallery(approximate_from=50, index=IndexSettings(dtype="bf16")).add(ids, labels, vectors)
        for _ in range(2)
    )
    np.testing.assert_array_equal(first.to_bytes(), second.to_bytes())
    np.testing.assert_array_equal(first.search(queries, 5)[0], second.search(queries, 5)[0])


def test_bad_input_is_refused():
    ids, labels, vectors, _ = people(3, 2)
    gallery = Gallery().add(ids, labels, vectors)
    with pytest.raises(ValueError, match="already enrolled"):
        gallery.add(ids[:1], labels[:1], vectors[:1])
    with pytest.raises(ValueError, match="repeated"):
        Gallery().add(["a", "a"], ["x", "x"], vectors[:2])
    with pytest.raises(ValueError, match="unit length"):
        gallery.add(["b"], ["x"], vectors[:1] * 2)
    with pytest.raises(ValueError, match=r"shape \(N, 128\)"):
        gallery.search(vectors[:, :64])
    with pytest.raises(ValueError, match="differ in length"):
        gallery.add(["c", "d"], ["x"], vectors[:2])
    with pytest.raises(ValueError, match="non-empty"):
        gallery.add(["e"], [""], vectors[:1])
    assert len(gallery) == 6


def test_memory_is_reported():
    ids, labels, vectors, _ = people(20, 5)
    exact, approximate = exact_and_approximate(ids, labels, vectors)
    assert exact.nbytes >= vectors.nbytes
    assert approximate.nbytes > exact.nbytes


def test_search_expansion_is_changed_without_rebuilding_and_kept():
    ids, labels, vectors, centres = people(40, 5)
    gallery = Gallery(approximate_from=30).add(ids, labels, vectors)
    queries = queries_near(centres, seed=6)
    before = gallery.search(queries, 3)
    assert gallery.set_search_expansion(48) is gallery
    assert gallery.index_settings.expansion_search == 48
    np.testing.assert_array_equal(gallery.search(queries, 3)[0], before[0])  # easy: same answers
    assert Gallery.from_bytes(gallery.to_bytes()).index_settings.expansion_search == 48
