"""The one engine interface: faces in, one answer per face out, "unknown" when nobody matches.

Every engine (FaceNet, nearest face, Rekognition, hybrid) implements ``Engine``; the identify
flow, the evaluation and the report compose them by name without knowing their types.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from facerec.core.errors import EngineUnavailable, NotFittedError

UNKNOWN = "unknown"  # the answer for a face that no enrolled person matches


class Probe(Protocol):
    """A face to identify: ``crop`` uint8 (160, 160, 3) RGB, ``embedding`` float32 (128,)
    unit vector (the analyser's AnalysedFace is one)."""

    crop: np.ndarray
    embedding: np.ndarray


@dataclass(frozen=True)
class Answer:
    """One engine's answer for one face. ``person``: a name or UNKNOWN; ``candidate``: the
    best match before the engine's threshold (None when there was none); ``score``: the
    engine's own score on its own scale (None when it has none); ``fields``: JSON-ready
    values the API shows beside ``person``."""

    person: str
    score: float | None = None
    candidate: str | None = None
    fields: Mapping = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{"person", **fields}``; an "unknown" answer with a candidate also carries
        ``"candidate": {"person", "score"}``: the best match it did not accept and its score
        (the engine's own scale, None when not finite), shown beside "unknown", never as it."""
        answer = {"person": self.person, **self.fields}
        if self.person == UNKNOWN and self.candidate is not None:
            score = None if self.score is None else number(self.score)
            answer["candidate"] = {"person": self.candidate, "score": score}
        return answer


@dataclass(frozen=True)
class Identification:
    """An engine's answers for N faces, in order (None where it gave none), with a JSON-ready
    ``summary`` of how it answered and the ``model_id`` of the trained model behind it."""

    answers: tuple[Answer | None, ...]
    summary: dict
    model_id: str | None = None


class Engine(Protocol):
    """``identify`` answers every face it is given; ``available`` False says why not in
    ``reason`` (then ``identify`` raises EngineUnavailable); ``describe`` is for reports."""

    name: str
    available: bool
    reason: str

    def identify(self, faces: Sequence[Probe]) -> Identification: ...
    def describe(self) -> dict: ...


def number(value: float, digits: int = 4) -> float | None:
    """A score for JSON: rounded, or None when it is not finite (-inf: nobody to compare
    with), which JSON cannot carry."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


class UnavailableEngine:
    """Stands where an engine cannot run (Rekognition with no AWS account): it says why and
    never answers."""

    available = False

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def identify(self, faces: Sequence[Probe]) -> Identification:
        raise EngineUnavailable(f"{self.name} is not available: {self.reason}")

    def describe(self) -> dict:
        return {"engine": self.name, "available": False, "reason": self.reason}


class Estimator:
    """The part of scikit-learn's estimator contract the engines' models keep (fit, predict,
    ``get_params`` from the constructor's parameters, fitted state in ``*_`` attributes),
    without importing scikit-learn: serving loads a fitted model and predicts with NumPy,
    and scikit-learn's import alone took about a second of a fresh ``identify``."""

    def get_params(self, deep: bool = True) -> dict:
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def require_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit first")


def as_samples(X, features: int | None = None, dtype=np.float64) -> np.ndarray:
    """``X`` as a finite 2-D (N, D) array of ``dtype``; ValueError otherwise, or when D is not
    ``features`` (the number the model was fitted on)."""
    X = np.asarray(X, dtype=dtype)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array (samples, features), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("the samples hold NaN or infinite values")
    if features is not None and X.shape[1] != features:
        raise ValueError(f"X has {X.shape[1]} features; the model was fitted on {features}")
    return X


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))
