"""The FaceNet engine's classifiers, whose own decision gives the label, with a calibrated
probability reported beside it; splitting, cross-validation and C selection.

- ``FaceClassifier``: the thesis's linear SVC (one-vs-one, libsvm), up to SVC_MAX_PEOPLE.
  Its state grows with the pairs of people, K(K-1)/2 weight vectors: 20 MB at 200 people,
  51 GB at 10,000; the one-vs-one decisions of its calibration take minutes at 400 people.
- ``OneVsRestSVM``: one linear SVM per person (liblinear) against the people nearest to them
  and a sample of everybody else: K weight vectors, a fit linear in people and faces
  (bench/TRAINING_SCALE.md: the same top-1 and DIR as the SVC at 600 and 1,000 people).

Taking the most probable class of a calibrated SVC instead of its decision drops top-1 from
0.99 to 0.61 on a 125-person LFW gallery, so probabilities never change a label.

scikit-learn fits (imported then); a fitted classifier predicts with NumPy alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from facerec.core.errors import NotEnoughData
from facerec.core.settings import CLASSIFIER_CHOICES, SVC_MAX_PEOPLE
from facerec.core.vectors import l2_normalise
from facerec.engines.base import Estimator, as_samples, sigmoid

C_GRID = (0.01, 0.25, 0.5, 1.0, 2.0, 10.0, 100.0)  # the grid the thesis cross-validated
MAX_FOLDS = 10
PAIR_BLOCK = 4_000_000  # decisions (faces x pairs or people) held at once: 32 MB of float64


class LinearClassifier(Estimator):
    """A fitted linear classifier saved and loaded as plain arrays (FITTED_ARRAYS)."""

    def _checked(self, X, y, folds: int):
        """(X (N, D) float64, y (N,), a seeded stratified splitter of ``folds`` folds, fewer
        when a person has fewer photos); ValueError for mismatched or non-finite samples,
        NotEnoughData below 2 people or 2 photos of one of them."""
        from sklearn.model_selection import StratifiedKFold

        X, y = as_samples(X), np.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"{len(X)} samples but {len(y)} labels")
        require_photos_per_class(y, 2, "train a classifier with calibrated probabilities")
        folds = min(folds, min(Counter(y).values()))
        return X, y, StratifiedKFold(folds, shuffle=True, random_state=self.random_state)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (no object dtype: saved without pickle)."""
        self.require_fitted("coef_")
        return {name: np.asarray(getattr(self, name)) for name in FITTED_ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], **params) -> LinearClassifier:
        """The classifier ``to_arrays`` described; ``params`` its constructor's."""
        classifier = cls(**params)
        for name in FITTED_ARRAYS:
            setattr(classifier, name, np.asarray(arrays[name]))
        classifier.classes_ = classifier.classes_.astype(str)
        classifier.n_features_in_ = classifier.coef_.shape[1]
        return classifier


class FaceClassifier(LinearClassifier):
    """Linear SVC (one-vs-one votes decide) plus sigmoid-calibrated probabilities.

    ``fit(X (N, D) float, y (N,) str)``; ``predict`` -> (N,) labels;
    ``predict_proba`` -> (N, K) in ``classes_`` order, reported only. Fitted, it is only
    arrays (``to_arrays``): ``coef_`` (P, D) and ``intercept_`` (P,) of the P = K(K-1)/2
    one-vs-one decisions (P = 1 for two classes) and ``sigmoid_`` (C, 2) the calibration's
    (a, b) per calibrated class (C = K, or 1 for two classes); it predicts from them, as
    scikit-learn's SVC and CalibratedClassifierCV do (within float rounding), so a model
    saved as arrays answers exactly as the fitted one and loading it runs no code.
    """

    def __init__(self, C: float = 10.0, calibration_folds: int = 3, random_state: int = 0):
        self.C = C
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        X, y, splitter = self._checked(X, y, self.calibration_folds)
        # ensemble=False: one SVC fitted on all of X, calibrated on out-of-fold decisions.
        calibrated = CalibratedClassifierCV(
            SVC(kernel="linear", C=self.C), cv=splitter, ensemble=False
        ).fit(X, y)
        fitted = calibrated.calibrated_classifiers_[0]
        self.classes_ = fitted.estimator.classes_
        self.coef_ = np.asarray(fitted.estimator.coef_, dtype=np.float64)
        self.intercept_ = np.asarray(fitted.estimator.intercept_, dtype=np.float64)
        self.sigmoid_ = np.array([[c.a_, c.b_] for c in fitted.calibrators], dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        return self

    def _decisions(self, X) -> np.ndarray:
        """(N, P) one-vs-one decisions; > 0 favours the pair's first class."""
        self.require_fitted("coef_")
        return as_samples(X, self.n_features_in_) @ self.coef_.T + self.intercept_

    def _votes(self, decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K) one-vs-one votes and (N, K) summed confidences; ``decisions`` (N, P) in
        libsvm's pair order (0, 1), (0, 2) ... (1, 2) ..., that of np.triu_indices."""
        K = len(self.classes_)
        first, second = np.triu_indices(K, 1)
        votes = np.zeros((len(decisions), K))
        confidences = np.zeros_like(votes)
        step = max(1, PAIR_BLOCK // max(1, decisions.shape[1]))
        for start in range(0, len(decisions), step):
            block = decisions[start : start + step]
            cells = np.arange(len(block))[:, None] * K
            winners = cells + np.where(block > 0, first, second)
            size = len(block) * K
            votes[start : start + step] = np.bincount(winners.ravel(), minlength=size).reshape(
                len(block), K
            )
            gained = np.bincount((cells + first).ravel(), block.ravel(), minlength=size)
            lost = np.bincount((cells + second).ravel(), block.ravel(), minlength=size)
            confidences[start : start + step] = (gained - lost).reshape(len(block), K)
        return votes, confidences

    def predict(self, X) -> np.ndarray:
        decisions = self._decisions(X)
        if len(self.classes_) == 2:
            return self.classes_[(decisions[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(self._votes(decisions)[0], axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        decisions = self._decisions(X)
        if len(self.classes_) == 2:
            positive = sigmoid(-(self.sigmoid_[0, 0] * decisions[:, 0] + self.sigmoid_[0, 1]))
            return np.stack([1.0 - positive, positive], axis=1)
        votes, confidences = self._votes(decisions)
        # scikit-learn's one-vs-rest decision: votes, ties broken by the confidences.
        ovr = votes + confidences / (3 * (np.abs(confidences) + 1))
        proba = sigmoid(-(self.sigmoid_[:, 0] * ovr + self.sigmoid_[:, 1]))
        total = proba.sum(axis=1, keepdims=True)
        uniform = np.full_like(proba, 1 / len(self.classes_))
        return np.divide(proba, total, out=uniform, where=total != 0)

    def predict_with_probability(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(N,) labels from the SVC and (N,) the calibrated probability of that label."""
        labels = self.predict(X)
        probabilities = self.predict_proba(X)
        columns = np.searchsorted(self.classes_, labels)
        return labels, probabilities[np.arange(len(labels)), columns]


FITTED_ARRAYS = ("classes_", "coef_", "intercept_", "sigmoid_")


class OneVsRestSVM(LinearClassifier):
    """One linear SVM per person (liblinear, squared hinge), each fitted on that person's
    faces against the faces of the ``neighbours`` people whose centroids are nearest and a
    seeded sample of ``background`` faces of anybody else: the negatives that decide a
    boundary, so a fit costs K fits of about (neighbours + 1) x faces per person + background
    rows, linear in people (bench/TRAINING_SCALE.md).

    ``fit(X (N, D) float, y (N,) str)``; ``predict`` -> (N,) the person whose SVM decides
    highest. ``folds``-fold cross-validation (fewer when a person has fewer faces) gives
    ``cv_`` and the out-of-fold top decisions, on which the probability that an answer is
    right is calibrated (Platt): one fit per fold plus the final one, nothing fitted twice.
    Fitted, it is only arrays (``to_arrays``): ``coef_`` (K, D), ``intercept_`` (K,) and
    ``sigmoid_`` (1, 2), the (a, b) of P(right) = 1 / (1 + exp(a * decision + b)).
    """

    def __init__(
        self,
        C: float = 10.0,
        neighbours: int = 50,
        background: int = 256,
        folds: int = 3,
        random_state: int = 0,
    ):
        self.C = C
        self.neighbours = neighbours
        self.background = background
        self.folds = folds
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.calibration import _SigmoidCalibration

        X, y, splitter = self._checked(X, y, self.folds)
        self.classes_, codes = np.unique(y, return_inverse=True)
        top = np.empty(len(X))
        right = np.zeros(len(X), dtype=bool)
        scores = []
        for train, test in splitter.split(X, codes):
            coef, intercept = self._fit_people(X[train], codes[train])
            best, top[test] = top_decisions(X[test], coef, intercept)
            right[test] = best == codes[test]
            scores.append(float(right[test].mean()))
        self.cv_ = {
            "folds": splitter.n_splits,
            "mean": float(np.mean(scores)),
            "std": float(np.std(scores)),
            "scores": scores,
        }
        platt = _SigmoidCalibration().fit(top, right.astype(int))
        self.sigmoid_ = np.array([[platt.a_, platt.b_]], dtype=np.float64)
        self.coef_, self.intercept_ = self._fit_people(X, codes)
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_people(self, X: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(coef (K, D), intercept (K,)): every person's SVM on ``X`` (N, D) with ``codes``
        (N,) in range(K), each against its nearest people and the background sample."""
        from sklearn.svm import LinearSVC

        K = len(self.classes_)
        counts = np.bincount(codes, minlength=K)
        by_person = np.argsort(codes, kind="stable")
        bounds = np.r_[0, np.cumsum(counts)]
        sums = np.zeros((K, X.shape[1]))
        np.add.at(sums, codes, X)
        centroids = l2_normalise(sums)
        near_count = min(self.neighbours, K - 1)
        rng = np.random.default_rng(self.random_state)
        coef, intercept = np.zeros((K, X.shape[1])), np.zeros(K)
        for start in range(0, K, 1024):
            similarity = centroids[start : start + 1024] @ centroids.T
            similarity[
                np.arange(len(similarity)), np.arange(start, start + len(similarity))
            ] = -np.inf
            nearest = np.argpartition(-similarity, near_count - 1, axis=1)[:, :near_count]
            for person, others in enumerate(nearest, start):
                background = rng.integers(0, len(X), self.background)
                rows = np.concatenate(
                    [by_person[bounds[p] : bounds[p + 1]] for p in (person, *others)]
                    + [background[codes[background] != person]]
                )
                svm = LinearSVC(C=self.C, dual=True, max_iter=5000, random_state=self.random_state)
                svm.fit(X[rows], codes[rows] == person)
                coef[person], intercept[person] = svm.coef_[0], svm.intercept_[0]
        return coef, intercept

    def decision_function(self, X) -> np.ndarray:
        """(N, K) each person's SVM decision; the highest names the person."""
        self.require_fitted("coef_")
        return as_samples(X, self.n_features_in_) @ self.coef_.T + self.intercept_

    def predict(self, X) -> np.ndarray:
        return self.predict_with_probability(X)[0]

    def predict_with_probability(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(N,) labels and (N,) the calibrated probability that each is right."""
        self.require_fitted("coef_")
        X = as_samples(X, self.n_features_in_)
        best, top = top_decisions(X, self.coef_, self.intercept_)
        probabilities = sigmoid(-(self.sigmoid_[0, 0] * top + self.sigmoid_[0, 1]))
        return self.classes_[best], probabilities


def top_decisions(
    X: np.ndarray, coef: np.ndarray, intercept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the index of the highest of the K linear decisions ``X @ coef.T + intercept`` per
    row of ``X`` (N, D), and (N,) that decision; rows in blocks of at most PAIR_BLOCK
    decisions, so memory stays bounded (all at once: 3.4 GB for 43,000 faces of 10,000
    people)."""
    best, top = np.empty(len(X), dtype=np.intp), np.empty(len(X))
    step = max(1, PAIR_BLOCK // max(1, len(coef)))
    for start in range(0, len(X), step):
        decisions = X[start : start + step] @ coef.T + intercept
        best[start : start + step] = decisions.argmax(axis=1)
        top[start : start + step] = decisions[np.arange(len(decisions)), best[start : start + step]]
    return best, top


def choose_classifier(choice: str, people: int) -> str:
    """ "svc" or "ovr" for a ``choice`` of CLASSIFIER_CHOICES and the number of people."""
    if choice not in CLASSIFIER_CHOICES:
        raise ValueError(
            f"classifier must be one of {', '.join(CLASSIFIER_CHOICES)}; got {choice!r}"
        )
    if choice == "auto":
        return "svc" if people <= SVC_MAX_PEOPLE else "ovr"
    return choice


def require_photos_per_class(labels: Sequence[str], minimum: int, purpose: str) -> None:
    """Raise NotEnoughData naming every class with fewer than ``minimum`` photos."""
    counts = Counter(labels)
    if len(counts) < 2:
        raise NotEnoughData(f"need at least 2 people to {purpose}; found {len(counts)}")
    short = sorted(f"{name} ({count})" for name, count in counts.items() if count < minimum)
    if short:
        raise NotEnoughData(
            f"need at least {minimum} photos per person to {purpose}; too few: {', '.join(short)}"
        )


def holdout_split(
    labels: Sequence[str], test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split -> (train indices, test indices). ``test_size`` 0 keeps all."""
    indices = np.arange(len(labels))
    if test_size == 0:
        return indices, indices[:0]
    from sklearn.model_selection import train_test_split

    require_photos_per_class(labels, 2, f"hold out {test_size:.0%} stratified")
    train, test = train_test_split(
        indices, test_size=test_size, stratify=list(labels), random_state=seed
    )
    return np.sort(train), np.sort(test)


def cross_validate(X: np.ndarray, y: np.ndarray, C: float, seed: int) -> dict:
    """Stratified k-fold accuracy of the linear SVC, k = min(10, smallest class size)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    require_photos_per_class(y, 2, "cross-validate")
    folds = min(MAX_FOLDS, min(Counter(y).values()))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_score(SVC(kernel="linear", C=C), X, y, cv=splitter)
    return {
        "folds": folds,
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "scores": [float(score) for score in scores],
    }


def select_c(
    X: np.ndarray, y: np.ndarray, seed: int, grid: Sequence[float] = C_GRID
) -> tuple[float, list[dict]]:
    """Cross-validate every C of ``grid``; return the best C (smallest on ties) and the table."""
    table = [{"C": C, **cross_validate(X, y, C, seed)} for C in grid]
    return best_c(table), table


def best_c(table: Sequence[dict]) -> float:
    """The C of the best mean cross-validated accuracy in ``table`` (rows with "C" and
    "mean"); the smallest C on ties."""
    return max(table, key=lambda row: (round(row["mean"], 6), -row["C"]))["C"]
