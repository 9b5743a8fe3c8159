"""The SVC estimator, splitting and cross-validation on synthetic unit-vector clusters."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from facerec.core.errors import NotEnoughData
from facerec.engines import classifier as classifier_module
from facerec.engines.classifier import (
    C_GRID,
    FaceClassifier,
    cross_validate,
    holdout_split,
    require_photos_per_class,
    select_c,
)


def clusters(counts: dict[str, int], spread: float = 0.35, seed: int = 0):
    """Unit vectors (N, 128) around one random centre per class, and their labels (N,)."""
    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for name, count in counts.items():
        centre = rng.normal(size=128)
        centre /= np.linalg.norm(centre)
        points = centre + spread * rng.normal(size=(count, 128)) / np.sqrt(128)
        vectors.append(points / np.linalg.norm(points, axis=1, keepdims=True))
        labels += [name] * count
    return np.concatenate(vectors).astype(np.float32), np.array(labels)


def test_fit_predict_and_probabilities():
    X, y = clusters({"ana": 12, "bo": 12, "Iñaki Diaz": 8})
    model = FaceClassifier().fit(X, y)
    assert list(model.classes_) == sorted(set(y))
    labels, winning = model.predict_with_probability(X)
    assert (labels == y).mean() == 1.0
    probabilities = model.predict_proba(X)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    columns = [list(model.classes_).index(label) for label in labels]
    np.testing.assert_allclose(winning, probabilities[np.arange(len(X)), columns])


def test_label_comes_from_the_svc_decision_not_the_probabilities():
    X, y = clusters({"a": 4, "b": 4, "c": 4, "d": 4}, spread=1.6, seed=3)
    model = FaceClassifier().fit(X, y)
    probe, _ = clusters({"x": 200}, spread=3.0, seed=9)
    svc = SVC(kernel="linear", C=model.C).fit(X, y)
    np.testing.assert_array_equal(model.predict(probe), svc.predict(probe))


@pytest.fixture(scope="module")
def many_classes():
    """FaceClassifier and scikit-learn's calibrated SVC on 25 people x 6 faces (300 pairs),
    and 400 probes spread everywhere (votes often tied)."""
    X, y = clusters({f"p{n:02d}": 6 for n in range(25)}, spread=1.0, seed=4)
    ours = FaceClassifier(C=10.0, random_state=0).fit(X, y)
    splitter = StratifiedKFold(3, shuffle=True, random_state=0)
    theirs = CalibratedClassifierCV(SVC(kernel="linear", C=10.0), cv=splitter, ensemble=False)
    probe, _ = clusters({"x": 400}, spread=4.0, seed=5)
    return ours, theirs.fit(X, y), probe


def test_votes_over_many_classes_answer_as_scikit_learn(many_classes):
    ours, theirs, probe = many_classes
    assert ours.coef_.shape[0] == 25 * 24 // 2
    svc = theirs.calibrated_classifiers_[0].estimator
    np.testing.assert_array_equal(ours.predict(probe), svc.predict(probe))
    assert len(set(ours.predict(probe))) > 10  # the probes reach many of the people
    np.testing.assert_allclose(ours.predict_proba(probe), theirs.predict_proba(probe), atol=1e-12)


@pytest.mark.parametrize("block", [1, 299, 1000])
def test_votes_in_blocks_equal_votes_at_once(many_classes, monkeypatch, block):
    """PAIR_BLOCK (faces x pairs) decisions at a time: 1 and 299 (fewer than one face's 300
    pairs: a face per block), 1000 (3 faces, the last block short) answer as one block."""
    ours, _, probe = many_classes
    at_once = ours.predict(probe), ours.predict_proba(probe)
    monkeypatch.setattr(classifier_module, "PAIR_BLOCK", block)
    np.testing.assert_array_equal(ours.predict(probe), at_once[0])
    np.testing.assert_array_equal(ours.predict_proba(probe), at_once[1])


def test_too_few_photos_is_a_clear_error():
    X, y = clusters({"ana": 5, "bo": 1})
    with pytest.raises(NotEnoughData, match=r"bo \(1\)"):
        FaceClassifier().fit(X, y)
    with pytest.raises(NotEnoughData, match="at least 2 people"):
        require_photos_per_class(["ana"] * 5, 2, "train")


def test_holdout_split_is_seeded_and_stratified():
    _, y = clusters({"a": 20, "b": 8, "c": 4})
    train, test = holdout_split(y, 0.25, seed=42)
    _, again_test = holdout_split(y, 0.25, seed=42)
    np.testing.assert_array_equal(test, again_test)
    assert len(test) == 8 and set(train).isdisjoint(test) and len(train) + len(test) == 32
    assert {label: list(y[test]).count(label) for label in "abc"} == {"a": 5, "b": 2, "c": 1}
    all_train, none = holdout_split(y, 0.0, seed=1)
    assert len(all_train) == 32 and len(none) == 0


def test_cross_validation_uses_fewer_folds_for_small_classes():
    X, y = clusters({"a": 12, "b": 12, "c": 4})
    result = cross_validate(X, y, C=10.0, seed=0)
    assert result["folds"] == 4 and len(result["scores"]) == 4
    X, y = clusters({"a": 12, "b": 12})
    assert cross_validate(X, y, C=10.0, seed=0)["folds"] == 10


def test_select_c_covers_the_grid():
    X, y = clusters({"a": 10, "b": 10, "c": 10})
    best, table = select_c(X, y, seed=0)
    assert [row["C"] for row in table] == list(C_GRID)
    assert best in C_GRID
    assert max(row["mean"] for row in table) == next(r["mean"] for r in table if r["C"] == best)
