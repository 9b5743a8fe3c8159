"""OneVsRestSVM (one linear SVM per person against their nearest people and a background
sample) and choose_classifier, on synthetic clusters of 128-d unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.core.errors import NotEnoughData, NotFittedError
from facerec.core.settings import SVC_MAX_PEOPLE
from facerec.engines.classifier import FaceClassifier, OneVsRestSVM, choose_classifier
from tests.unit.engines.test_gallery import DIMENSIONS, people, queries_near

SPREAD = 1.0  # same-person cosine about 0.5, as in test_unknown_candidate


def faces_around(centres: np.ndarray, faces: int, spread: float, seed: int):
    """(unit vectors (K * faces, 128) float32, labels (K * faces,)): ``faces`` around each of
    the K ``centres``, person k named "p<k>"."""
    rng = np.random.default_rng(seed)
    points = np.repeat(centres, faces, axis=0)
    points = points + spread * rng.normal(size=points.shape) / np.sqrt(DIMENSIONS)
    labels = np.repeat([f"p{k:03d}" for k in range(len(centres))], faces)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


def twins(pairs: int, closeness: float, seed: int) -> np.ndarray:
    """(2 * pairs, 128) unit centres: ``pairs`` random ones, then one near each of them
    (``closeness`` the spread of the twin: 0.3 is a cosine of about 0.96)."""
    rng = np.random.default_rng(seed)
    first = rng.normal(size=(pairs, DIMENSIONS))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = first + closeness * rng.normal(size=first.shape) / np.sqrt(DIMENSIONS)
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    return np.concatenate([first, second])


@pytest.fixture(scope="module")
def forty():
    """40 people x 8 faces, the OneVsRestSVM fitted on them, and one new face near each."""
    _, labels, vectors, centres = people(40, 8, spread=SPREAD)
    model = OneVsRestSVM(random_state=0).fit(vectors, labels)
    return vectors, labels, model, queries_near(centres, seed=1, spread=SPREAD)


def test_it_names_the_right_people_on_new_faces(forty):
    _, labels, model, probes = forty
    assert list(model.classes_) == sorted(set(labels))
    assert list(model.predict(probes)) == list(model.classes_)  # person k's probe is k
    decisions = model.decision_function(probes)
    assert decisions.shape == (40, 40)
    np.testing.assert_array_equal(np.argmax(decisions, axis=1), np.arange(40))


def test_cross_validation_has_up_to_folds_folds_and_a_score_each(forty):
    _, _, model, _ = forty
    assert model.cv_["folds"] == 3 and len(model.cv_["scores"]) == 3
    assert model.cv_["mean"] == pytest.approx(np.mean(model.cv_["scores"]))
    assert model.cv_["std"] == pytest.approx(np.std(model.cv_["scores"]))
    assert all(0 <= score <= 1 for score in model.cv_["scores"])
    # a person with 2 faces: 2 folds (each fold keeps a face of everybody to train on)
    vectors, labels = faces_around(twins(3, 2.0, seed=4), 5, 0.5, seed=5)
    keep = np.r_[0:2, 5 : len(labels)]
    assert OneVsRestSVM().fit(vectors[keep], labels[keep]).cv_["folds"] == 2
    assert len(OneVsRestSVM(folds=5).fit(vectors, labels).cv_["scores"]) == 5


def test_probabilities_are_higher_on_right_answers_than_on_wrong_ones():
    """15 pairs of look-alikes (centres at cosine about 0.96): about a quarter of new faces
    go to the twin. The probability, calibrated on out-of-fold decisions, says so."""
    centres = twins(15, 0.3, seed=0)
    vectors, labels = faces_around(centres, 8, SPREAD, seed=1)
    probes, truth = faces_around(centres, 10, SPREAD, seed=2)
    model = OneVsRestSVM(random_state=0).fit(vectors, labels)
    answers, probabilities = model.predict_with_probability(probes)
    np.testing.assert_array_equal(answers, model.predict(probes))
    right = answers == truth
    assert 0.5 < right.mean() < 0.95  # both kinds of answers to compare
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert probabilities[right].mean() > probabilities[~right].mean() + 0.03
    assert abs(probabilities.mean() - right.mean()) < 0.1  # calibrated, not just ordered
    # P(right) grows with the top decision: the calibration's slope a is negative
    assert model.sigmoid_.shape == (1, 2) and model.sigmoid_[0, 0] < 0
    top = model.decision_function(probes).max(axis=1)
    order = np.argsort(top)
    assert (np.diff(probabilities[order]) >= 0).all()


def test_the_same_seed_fits_the_same_model_whatever_numpys_global_state():
    """The seed is the only randomness: the global NumPy state (which other code moves)
    must not change the fitted arrays."""
    _, labels, vectors, _ = people(12, 6, spread=SPREAD)
    np.random.seed(1)
    first = OneVsRestSVM(random_state=3).fit(vectors, labels)
    np.random.seed(2)
    second = OneVsRestSVM(random_state=3).fit(vectors, labels)
    assert first.cv_ == second.cv_
    for name, array in first.to_arrays().items():
        np.testing.assert_array_equal(second.to_arrays()[name], array, err_msg=name)


def test_another_seed_draws_other_background_faces():
    _, labels, vectors, _ = people(12, 6, spread=SPREAD)
    one = OneVsRestSVM(background=20, random_state=0).fit(vectors, labels)
    other = OneVsRestSVM(background=20, random_state=1).fit(vectors, labels)
    assert not np.allclose(one.coef_, other.coef_, atol=1e-3)


def test_saved_as_arrays_it_answers_identically_and_grows_linearly_in_people(forty):
    vectors, labels, model, probes = forty
    arrays = model.to_arrays()
    assert all(array.dtype != object for array in arrays.values())
    assert arrays["coef_"].shape == (40, DIMENSIONS)  # K x D
    assert arrays["intercept_"].shape == (40,) and arrays["sigmoid_"].shape == (1, 2)
    loaded = OneVsRestSVM.from_arrays(arrays, **model.get_params())
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.decision_function(probes), model.decision_function(probes))
    for got, expected in zip(
        loaded.predict_with_probability(probes), model.predict_with_probability(probes), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    pairwise = FaceClassifier().fit(vectors, labels).to_arrays()["coef_"]
    assert pairwise.shape == (40 * 39 // 2, DIMENSIONS)  # the SVC's K(K-1)/2


def test_more_neighbours_and_background_than_there_are_works():
    _, labels, vectors, centres = people(3, 6, seed=5, spread=SPREAD)
    model = OneVsRestSVM(neighbours=50, background=256).fit(vectors, labels)
    assert list(model.predict(queries_near(centres, seed=6, spread=SPREAD))) == list(model.classes_)


def test_bad_input_is_refused():
    _, labels, vectors, _ = people(4, 4, spread=SPREAD)
    broken = vectors.copy()
    broken[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        OneVsRestSVM().fit(broken, labels)
    with pytest.raises(ValueError, match="2-D"):
        OneVsRestSVM().fit(vectors[0], labels[:1])
    with pytest.raises(ValueError, match="16 samples but 15 labels"):
        OneVsRestSVM().fit(vectors, labels[:-1])
    with pytest.raises(NotEnoughData, match=r"person 003 \(1\)"):
        OneVsRestSVM().fit(vectors[:13], labels[:13])
    with pytest.raises(NotEnoughData, match="at least 2 people"):
        OneVsRestSVM().fit(vectors[:4], labels[:4])
    model = OneVsRestSVM().fit(vectors, labels)
    with pytest.raises(ValueError, match="64 features; the model was fitted on 128"):
        model.predict(vectors[:, :64])


@pytest.mark.parametrize("method", ["decision_function", "predict", "predict_with_probability"])
def test_an_unfitted_model_says_so(method):
    """As FaceClassifier does: NotFittedError "call fit first", not a missing attribute."""
    with pytest.raises(NotFittedError, match="call fit first"):
        getattr(OneVsRestSVM(), method)(np.zeros((1, DIMENSIONS)))


def test_each_persons_negatives_are_their_nearest_people():
    """neighbours=1, background=0: Ann's SVM sees only Ann and her look-alike Bea (and Bea's
    only them), so replacing the far people's faces leaves both unchanged, and the two are
    still told apart."""
    rng = np.random.default_rng(8)
    ann = rng.normal(size=DIMENSIONS)
    ann /= np.linalg.norm(ann)
    bea = ann + 0.5 * rng.normal(size=DIMENSIONS) / np.sqrt(DIMENSIONS)  # cosine about 0.9
    bea /= np.linalg.norm(bea)
    close, _ = faces_around(np.stack([ann, bea]), 8, 0.3, seed=9)
    models = []
    for seed in (10, 11):  # two other pairs of far people
        far, _ = faces_around(twins(1, 2.0, seed), 8, 0.3, seed)
        vectors = np.concatenate([close, far])
        labels = np.repeat(["ann", "bea", "cyd", "dan"], 8)
        np.random.seed(0)  # the same liblinear shuffles in both fits
        models.append(OneVsRestSVM(neighbours=1, background=0).fit(vectors, labels))
    first, second = models
    np.testing.assert_array_equal(first.coef_[:2], second.coef_[:2])
    np.testing.assert_array_equal(first.intercept_[:2], second.intercept_[:2])
    assert not np.allclose(first.coef_[2:], second.coef_[2:])  # theirs did change
    probes, truth = faces_around(np.stack([ann, bea]), 20, 0.3, seed=12)
    truth = np.where(truth == "p000", "ann", "bea")
    assert (first.predict(probes) == truth).mean() >= 0.95


@pytest.mark.parametrize(
    ("choice", "people_count", "expected"),
    [
        ("auto", 2, "svc"),
        ("auto", SVC_MAX_PEOPLE, "svc"),
        ("auto", SVC_MAX_PEOPLE + 1, "ovr"),
        ("auto", 10_000, "ovr"),
        ("svc", 10_000, "svc"),
        ("ovr", 2, "ovr"),
    ],
)
def test_choose_classifier(choice, people_count, expected):
    assert choose_classifier(choice, people_count) == expected


def test_choose_classifier_refuses_another_choice():
    with pytest.raises(ValueError, match="classifier must be one of auto, svc, ovr; got 'SVC'"):
        choose_classifier("SVC", 10)
