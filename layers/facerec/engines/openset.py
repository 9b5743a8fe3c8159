"""Open-set identification over a Gallery: every answer may be "unknown".

A face takes the label of the person with the most similar enrolled face; it is accepted when
its open-set score, the cosine similarity to that person's centroid minus the mean similarity
to the ``cohort`` nearest other centroids, exceeds a threshold. The subtraction is a cohort
score normalisation: a face close to many enrolled people is held to a higher bar. On LFW
dev-train (bench/OPEN_SET.md) it lifts DIR at 1 % FAR from 0.94 (nearest face) to 0.96.

The threshold is calibrated to a false-accept rate without strangers: leave-one-person-out
scores each enrolled face against the gallery without its person, exactly the score a
stranger gets, so any user's gallery of two or more people calibrates itself. Held-out
strangers can be passed instead when there are some.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

from facerec.core.errors import NotEnoughData
from facerec.core.settings import DEFAULT_FAR
from facerec.engines.base import UNKNOWN, Estimator, as_samples
from facerec.engines.gallery import APPROXIMATE_FROM, Gallery

COHORT = 20  # other people's centroids averaged; 10-200 measured within 0.005 DIR of it
CALIBRATION_FACES = 20_000  # leave-one-person-out scores at most this many enrolled faces
SCORE = "centroid cosine minus mean of the {cohort} nearest other centroids"
LEAVE_ONE_PERSON_OUT = "leave-one-person-out"
HELD_OUT_STRANGERS = "held-out strangers"
# Stranger faces training needs per FAR target: enough for this many expected false accepts
# among them, so the threshold sits among >= 10 scores, not on one or two look-alikes.
EXPECTED_FALSE_ACCEPTS = 10


def open_set_scores(gallery: Gallery, vectors, labels, cohort: int = COHORT, exclude=None):
    """float32 (Q,): each query's open-set score for its proposed ``labels`` (Q,) str.

    ``vectors`` (Q, D) unit vectors. The cohort leaves out the label itself and ``exclude``
    (Q,) labels (leave-one-person-out); a gallery of fewer people averages fewer centroids
    (none: 0 is subtracted). -inf for labels with no enrolled face."""
    labels = np.asarray(labels, dtype=str)
    own = np.einsum("qd,qd->q", np.asarray(vectors, np.float32), gallery.centroids(labels))
    left_out = labels[:, None] if exclude is None else np.stack([labels, exclude], axis=1)
    _, others = gallery.search_centroids(vectors, cohort, exclude=left_out)
    scores = cohort_normalised(own, others)
    return np.where(gallery.face_counts(labels) > 0, scores, -np.inf).astype(np.float32)


def cohort_normalised(own, others) -> np.ndarray:
    """float32 (Q,): ``own`` (Q,) cosine to the proposed person's centroid minus the mean of
    ``others`` (Q, K) cosines to the nearest other people's centroids (-inf pads missing
    ones; a row with none subtracts 0)."""
    others = np.asarray(others, dtype=np.float32)
    finite = np.isfinite(others)
    mean = np.where(finite, others, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    return (np.asarray(own, dtype=np.float32) - mean).astype(np.float32)


def far_threshold(impostor_scores, far: float) -> float:
    """The threshold (accept when score > threshold) that accepts at most ``far`` of these
    impostor scores: the (floor(far * M) + 1)-th highest of the M scores."""
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if not 0 <= far < 1:
        raise ValueError(f"far must be in [0, 1), got {far}")
    if not len(scores):
        raise NotEnoughData("no impostor scores to calibrate a threshold on")
    return float(scores[int(np.floor(far * len(scores)))])


def calibrated_threshold(impostor_scores, far: float) -> float:
    """The threshold (accept when score > threshold) whose expected false-accept rate on NEW
    impostors is ``far``, from M impostor scores of the same kind.

    The k-th highest of M scores accepts a new one with probability k / (M + 1) on average
    (any continuous distribution), so far_threshold's (floor(far * M) + 1)-th highest lets
    (floor(far * M) + 1) / (M + 1) through, above ``far`` by up to 1 / (M + 1): 1.3 % instead
    of 1 % from 150 scores, 0.2 % instead of 0.1 % from 1,000. Here the rank is
    r = far * (M + 1), interpolated between the scores around it; with M < 1 / far - 1 no
    rank is that high and the highest score is used (expected rate 1 / (M + 1))."""
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    if not len(scores):
        raise NotEnoughData("no impostor scores to calibrate a threshold on")
    rank = far * (len(scores) + 1) - 1  # 0-based, fractional
    if rank <= 0:
        return float(scores[0])
    below = min(int(np.floor(rank)), len(scores) - 1)
    above = min(below + 1, len(scores) - 1)
    return float(scores[below] + (rank - below) * (scores[above] - scores[below]))


def min_stranger_faces(far: float) -> int:
    """The fewest stranger faces training calibrates on at ``far``: ceil(EXPECTED_FALSE_
    ACCEPTS / far), 1,000 at 1 %, 100 at 10 %."""
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    return math.ceil(round(EXPECTED_FALSE_ACCEPTS / far, 9))


def check_strangers(strangers, far: float, dimensions: int) -> np.ndarray:
    """``strangers`` as float32 (S, ``dimensions``) when S >= min_stranger_faces(far); else
    NotEnoughData (ValueError for another shape)."""
    strangers = np.asarray(strangers, dtype=np.float32)
    if strangers.ndim != 2 or strangers.shape[1] != dimensions:
        raise ValueError(f"strangers must be (S, {dimensions}) embeddings, got {strangers.shape}")
    needed = min_stranger_faces(far)
    if len(strangers) < needed:
        raise NotEnoughData(
            f"{len(strangers)} stranger faces found; calibrating to a {far:g} false-accept rate "
            f"needs at least {needed} (ceil({EXPECTED_FALSE_ACCEPTS} / far)): add photos of "
            "people not enrolled, or raise --far"
        )
    return strangers


def leave_one_person_out_scores(
    gallery: Gallery,
    cohort: int = COHORT,
    max_faces: int = CALIBRATION_FACES,
    seed: int = 0,
) -> np.ndarray:
    """float32 (M,): impostor scores, M = min(len(gallery), max_faces) enrolled faces (a
    seeded sample), each scored as a stranger against the gallery without its own person."""
    if len(gallery.people) < 2:
        raise NotEnoughData("leave-one-person-out calibration needs at least 2 enrolled people")
    rows = np.arange(len(gallery))
    if len(rows) > max_faces:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_faces, replace=False))
    vectors, own = gallery.vectors[rows], gallery.labels[rows]
    labels, _ = gallery.search(vectors, 1, exclude=own)
    return open_set_scores(gallery, vectors, labels[:, 0], cohort, exclude=own)


@dataclass(frozen=True)
class Calibration:
    """How the unknown threshold was set; ``to_dict`` goes into the model's metadata."""

    threshold: float
    far_target: float
    method: str
    impostor_scores: int
    impostor_false_accepts: int
    score: str
    cohort: int
    calibrated_at: str

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(
    gallery: Gallery,
    far: float = DEFAULT_FAR,
    strangers=None,
    cohort: int = COHORT,
    max_faces: int = CALIBRATION_FACES,
    seed: int = 0,
) -> Calibration:
    """Threshold for an expected false-accept rate of ``far`` on new strangers
    (calibrated_threshold) from impostor scores: leave-one-person-out over the gallery, or
    the scores of ``strangers`` (S, D) unit vectors of people not enrolled when given."""
    if strangers is None:
        method = LEAVE_ONE_PERSON_OUT
        impostors = leave_one_person_out_scores(gallery, cohort, max_faces, seed)
    else:
        method = HELD_OUT_STRANGERS
        labels, _ = gallery.search(strangers, 1)
        impostors = open_set_scores(gallery, strangers, labels[:, 0], cohort)
    threshold = calibrated_threshold(impostors, far)
    return Calibration(
        threshold=threshold,
        far_target=far,
        method=method,
        impostor_scores=len(impostors),
        impostor_false_accepts=int((impostors > threshold).sum()),
        score=SCORE.format(cohort=cohort),
        cohort=cohort,
        calibrated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def identify(gallery: Gallery, vectors, threshold: float, cohort: int = COHORT):
    """(labels (Q,) str, scores float32 (Q,)): the nearest person, or UNKNOWN when the
    open-set score is not above ``threshold`` (or nobody is enrolled)."""
    labels = gallery.search(vectors, 1)[0][:, 0]
    scores = open_set_scores(gallery, vectors, labels, cohort)  # -inf for NO_LABEL
    return accept(labels, scores, threshold), scores


def accept(labels, scores, threshold: float) -> np.ndarray:
    """(N,) str: each of ``labels`` (N,) whose open-set score (``scores`` (N,)) is above
    ``threshold``, else UNKNOWN: the one place the acceptance rule is written."""
    return np.where(np.asarray(scores) > threshold, np.asarray(labels, dtype=str), UNKNOWN)


class OpenSetIdentifier(Estimator):
    """Nearest-neighbour identification with a calibrated "unknown".

    ``fit(X (N, D) unit vectors, y (N,) str, ids=None, strangers=None)`` enrols every face in
    ``gallery_`` and calibrates ``calibration_`` to ``far`` (leave-one-person-out, or on
    ``strangers`` (S, D) unit vectors of people not enrolled, or keeps a recorded
    ``calibration``); ``predict`` -> (N,) labels or
    "unknown". Enrol or forget people later through ``gallery_`` and ``recalibrate()``."""

    def __init__(
        self,
        far: float = DEFAULT_FAR,
        cohort: int = COHORT,
        calibration_faces: int = CALIBRATION_FACES,
        approximate_from: int = APPROXIMATE_FROM,
        random_state: int = 0,
    ):
        self.far = far
        self.cohort = cohort
        self.calibration_faces = calibration_faces
        self.approximate_from = approximate_from
        self.random_state = random_state

    def fit(self, X, y, ids=None, strangers=None, calibration: Calibration | None = None):
        """``calibration``: one recorded before (on strangers this gallery does not hold),
        kept as it is instead of calibrating."""
        X, y = as_samples(X, dtype=np.float32), np.asarray(y).astype(str)
        if len(X) != len(y):
            raise ValueError(f"{len(X)} samples but {len(y)} labels")
        ids = np.arange(len(y)).astype(str) if ids is None else ids
        self.gallery_ = Gallery(X.shape[1], self.approximate_from).add(ids, y, X)
        if calibration is None:
            return self.recalibrate(strangers)
        self.calibration_, self.classes_ = calibration, self.gallery_.people
        return self

    def recalibrate(self, strangers=None):
        """Recalibrate the threshold on the gallery as it is now (on ``strangers`` (S, D)
        when given, else leave-one-person-out); returns self."""
        self.calibration_ = calibrate(
            self.gallery_,
            self.far,
            strangers,
            cohort=self.cohort,
            max_faces=self.calibration_faces,
            seed=self.random_state,
        )
        self.classes_ = self.gallery_.people
        return self

    def predict(self, X) -> np.ndarray:
        return self.predict_with_score(X)[0]

    def predict_with_score(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(N,) labels or "unknown", and (N,) float32 open-set scores."""
        self.require_fitted("calibration_")
        return identify(self.gallery_, X, self.calibration_.threshold, self.cohort)

    def to_bytes(self) -> bytes:
        """Parameters, calibration and gallery as one .npz (no pickle)."""
        self.require_fitted("calibration_")
        state = {"params": self.get_params(), "calibration": self.calibration_.to_dict()}
        buffer = io.BytesIO()
        np.savez(
            buffer,
            state=np.array(json.dumps(state)),
            gallery=np.frombuffer(self.gallery_.to_bytes(), dtype=np.uint8),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> OpenSetIdentifier:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            state = json.loads(str(arrays["state"]))
            gallery = Gallery.from_bytes(arrays["gallery"].tobytes())
        identifier = cls(**state["params"])
        identifier.gallery_ = gallery
        identifier.calibration_ = Calibration(**state["calibration"])
        identifier.classes_ = gallery.people
        return identifier


def detection_identification_rate(
    correct, known_scores, stranger_scores, far: float
) -> tuple[float, float]:
    """Open-set identification rate at a false-accept rate: the threshold that accepts at most
    ``far`` of ``stranger_scores`` (S,), then the share of known probes answered correctly
    (``correct`` (K,) bool) with a score above it (``known_scores`` (K,)). -> (DIR, threshold)"""
    threshold = far_threshold(stranger_scores, far)
    accepted = np.asarray(known_scores) > threshold
    return float((np.asarray(correct, dtype=bool) & accepted).mean()), threshold
