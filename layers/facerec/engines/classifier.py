"""The FaceNet engine's classifier: a linear SVC whose own decision gives the label, with
calibrated class probabilities reported beside it; splitting, cross-validation and C selection.

Taking the most probable class of a calibrated SVC instead of its decision drops top-1 from
0.99 to 0.61 on a 125-person LFW gallery, so probabilities never change a label.

scikit-learn fits (imported then); a fitted classifier predicts with NumPy alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

from facerec.core.errors import NotEnoughData
from facerec.engines.base import Estimator, as_samples, sigmoid

C_GRID = (0.01, 0.25, 0.5, 1.0, 2.0, 10.0, 100.0)  # the grid the thesis cross-validated
MAX_FOLDS = 10


class FaceClassifier(Estimator):
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
        from sklearn.model_selection import StratifiedKFold
        from sklearn.svm import SVC

        X, y = as_samples(X), np.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"{len(X)} samples but {len(y)} labels")
        require_photos_per_class(y, 2, "train a classifier with calibrated probabilities")
        folds = min(self.calibration_folds, min(Counter(y).values()))
        splitter = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
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

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (no object dtype: saved without pickle)."""
        self.require_fitted("coef_")
        return {name: np.asarray(getattr(self, name)) for name in FITTED_ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], **params) -> FaceClassifier:
        """The classifier ``to_arrays`` described; ``params`` its constructor's."""
        classifier = cls(**params)
        for name in FITTED_ARRAYS:
            setattr(classifier, name, np.asarray(arrays[name]))
        classifier.classes_ = classifier.classes_.astype(str)
        classifier.n_features_in_ = classifier.coef_.shape[1]
        return classifier

    def _decisions(self, X) -> np.ndarray:
        """(N, P) one-vs-one decisions; > 0 favours the pair's first class."""
        self.require_fitted("coef_")
        return as_samples(X, self.n_features_in_) @ self.coef_.T + self.intercept_

    def _votes(self, decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K) one-vs-one votes and (N, K) summed confidences, in libsvm's pair order."""
        votes = np.zeros((len(decisions), len(self.classes_)))
        confidences = np.zeros_like(votes)
        pairs = combinations(range(len(self.classes_)), 2)
        for k, (i, j) in enumerate(pairs):
            first = decisions[:, k] > 0
            votes[:, i] += first
            votes[:, j] += ~first
            confidences[:, i] += decisions[:, k]
            confidences[:, j] -= decisions[:, k]
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
    best = max(table, key=lambda row: (round(row["mean"], 6), -row["C"]))
    return best["C"], table
