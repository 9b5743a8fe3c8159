"""The hybrid engine: FaceNet answers first, Rekognition only the faces FaceNet is not sure of.

The rule (``route``, the one place it is written): a face goes to Rekognition when FaceNet
answered "unknown" or its open-set score is below the routing threshold t; otherwise FaceNet's
answer is kept and Rekognition is never called for it. A score equal to t is kept.

``routing_curve`` replays both engines' answers on the same held-out faces for every threshold
that changes which faces are routed, and prices each point. Thresholds in its output are JSON
numbers, or the strings "-inf" / "inf" (``float(value)`` reads all of them back). The
training workflow stores its chosen threshold in the model's metadata; ``routing_threshold``
is the one reader of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from facerec.engines.base import UNKNOWN, Answer, Engine, Identification, Probe, number

MAX_POINTS = 200
COST_MODEL = (
    "every face pays FaceNet's cost per face, a routed face also pays one Rekognition call; "
    "Rekognition alone pays one call per face and no FaceNet cost"
)


def route(labels, scores, threshold: float) -> np.ndarray:
    """bool (N,): True where the face goes to Rekognition.

    ``labels`` (N,) str: FaceNet's answers ("unknown" when not accepted); ``scores`` (N,)
    float: their open-set scores (no unit; higher = surer; NaN counts as not sure);
    ``threshold``: the routing threshold t, same scale (-inf routes the unknowns only, +inf
    routes every face)."""
    labels = np.asarray(labels, dtype=str)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and scores must be (N,) alike; got {labels.shape}, {scores.shape}"
        )
    return (labels == UNKNOWN) | ~(scores >= threshold)


def encode_threshold(value: float) -> float | str:
    """A threshold for JSON: the float itself, or "-inf" / "inf"."""
    value = float(value)
    if np.isnan(value):
        raise ValueError("a routing threshold cannot be NaN")
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf")


def _point(
    threshold, routed: int, correct: int, faces: int, facenet_cost: float, call_cost: float
) -> dict:
    """One operating point: counts, shares and USD per 1,000 faces."""
    return {
        "threshold": threshold,
        "routed": routed,
        "routed_share": routed / faces,
        "correct": correct,
        "accuracy": correct / faces,
        "rekognition_calls": routed,
        "cost_per_1000": 1000 * (facenet_cost + call_cost * routed / faces),
    }


def _thin(count: int, best: int, max_points: int) -> np.ndarray:
    """Sorted indices into ``count`` sorted candidates: all of them when there are at most
    ``max_points``, else ``max_points - 1`` evenly spaced in rank (the first and the last
    included) plus ``best``."""
    if count <= max_points:
        return np.arange(count)
    spaced = np.round(np.linspace(0, count - 1, max_points - 1)).astype(int)
    return np.union1d(spaced, [best])


def routing_curve(
    truth,
    facenet_labels,
    facenet_scores,
    rekognition_labels,
    facenet_cost_per_face: float,
    rekognition_cost_per_call: float,
    thresholds=None,
    max_points: int = MAX_POINTS,
) -> dict:
    """The hybrid's accuracy and cost against the routing threshold, on faces both engines
    answered (a JSON-ready dict).

    ``truth`` (N,) str: the true people; ``facenet_labels`` (N,) str and ``facenet_scores``
    (N,) float: FaceNet's answers and open-set scores (a None label is "unknown"; a None or
    NaN score is not sure: both always routed);
    ``rekognition_labels`` (N,): Rekognition's answers (None or "unknown" is a miss);
    ``facenet_cost_per_face``, ``rekognition_cost_per_call``: USD.
    ``thresholds``: the candidates; default every distinct finite score of an accepted
    FaceNet answer plus -inf and +inf, which gives the exact curve (routing only changes at
    those values; a candidate s stands for every threshold in (the previous candidate, s]).
    Every candidate is evaluated; the output ``points`` keep at most ``max_points`` of them
    (evenly spaced in rank, always the lowest, the highest and ``best``).

    Returns ``faces``, ``always_routed`` (faces FaceNet answered "unknown" or without a score),
    ``costs`` (``facenet_per_face``, ``rekognition_per_call``, ``model`` in words),
    ``facenet_alone`` and ``rekognition_alone`` (points with threshold None), ``target``
    (``engine``, ``correct``, ``accuracy``: the better single engine, FaceNet on a tie),
    ``best`` (a point plus ``reached``), ``points`` (sorted by threshold) and
    ``candidates`` (how many thresholds were evaluated). A point: ``threshold``, ``routed``,
    ``routed_share``, ``correct``, ``accuracy``, ``rekognition_calls`` (= routed),
    ``cost_per_1000`` (USD per 1,000 faces).

    ``best``: the cheapest candidate whose accuracy reaches the target (ties: the more
    accurate, then the lower threshold); if none does, the most accurate (ties: the cheaper,
    then the lower threshold) with ``reached`` False. With the default candidates the target
    is always reached: +inf routes everything (Rekognition alone's accuracy) and -inf is at
    least as accurate as FaceNet alone (its unknowns were misses)."""
    truth = np.asarray(truth, dtype=object).astype(str)
    faces = len(truth)
    if faces == 0:
        raise ValueError("routing_curve needs at least one face")
    facenet = np.array(
        [UNKNOWN if label is None else str(label) for label in facenet_labels], dtype=object
    ).astype(str)
    scores = np.array(
        [np.nan if score is None else float(score) for score in facenet_scores], dtype=np.float64
    )
    rekognition = np.array(
        [UNKNOWN if label is None else str(label) for label in rekognition_labels], dtype=object
    ).astype(str)
    if not (facenet.shape == scores.shape == rekognition.shape == truth.shape):
        raise ValueError("truth, FaceNet's labels and scores and Rekognition's labels differ")
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3; got {max_points}")
    if facenet_cost_per_face < 0 or rekognition_cost_per_call < 0:
        raise ValueError("costs must not be negative")
    facenet_right = (facenet == truth) & (facenet != UNKNOWN)
    rekognition_right = (rekognition == truth) & (rekognition != UNKNOWN)
    always = route(facenet, scores, -np.inf)  # unknowns and answers with no score
    if thresholds is None:
        finite = scores[~always & np.isfinite(scores)]
        candidates = np.concatenate([[-np.inf], np.unique(finite), [np.inf]])
    else:
        candidates = np.unique(np.asarray(thresholds, dtype=np.float64))
        if not len(candidates) or np.isnan(candidates).any():
            raise ValueError("thresholds must be one or more numbers (±inf allowed), not NaN")
    # O(faces x candidates), the rule applied as the live engine applies it.
    routed = np.empty(len(candidates), dtype=np.int64)
    correct = np.empty(len(candidates), dtype=np.int64)
    for index, threshold in enumerate(candidates):
        sent = route(facenet, scores, threshold)
        routed[index] = sent.sum()
        correct[index] = (facenet_right & ~sent).sum() + (rekognition_right & sent).sum()
    cost = facenet_cost_per_face + rekognition_cost_per_call * routed / faces

    alone = (int(facenet_right.sum()), int(rekognition_right.sum()))
    target = max(alone)
    reached = correct >= target
    if reached.any():
        # lexsort: the last key is the primary one.
        pick = np.lexsort((candidates, -correct, cost, ~reached))[0]
    else:
        pick = np.lexsort((candidates, cost, -correct))[0]

    def point(index: int) -> dict:
        return _point(
            encode_threshold(candidates[index]),
            int(routed[index]),
            int(correct[index]),
            faces,
            facenet_cost_per_face,
            rekognition_cost_per_call,
        )

    return {
        "faces": faces,
        "always_routed": int(always.sum()),
        "costs": {
            "facenet_per_face": facenet_cost_per_face,
            "rekognition_per_call": rekognition_cost_per_call,
            "model": COST_MODEL,
        },
        "facenet_alone": _point(None, 0, alone[0], faces, facenet_cost_per_face, 0.0),
        "rekognition_alone": _point(None, faces, alone[1], faces, 0.0, rekognition_cost_per_call),
        "target": {
            "engine": "facenet" if alone[0] >= alone[1] else "rekognition",
            "correct": target,
            "accuracy": target / faces,
        },
        "best": {**point(int(pick)), "reached": bool(reached[pick])},
        "points": [point(int(i)) for i in _thin(len(candidates), int(pick), max_points)],
        "candidates": len(candidates),
    }


def stored_threshold(metadata: Mapping) -> float | None:
    """The routing threshold the training workflow stored in a model's metadata
    (``metadata["routing"]``: a dict with ``"threshold"``, or a number; "-inf" / "inf"
    allowed), or None."""
    routing = metadata.get("routing")
    value = routing.get("threshold") if isinstance(routing, Mapping) else routing
    return None if value is None else float(value)


def routing_threshold(metadata: Mapping, override: float | None = None) -> float:
    """The threshold identify routes by: ``override``, else the stored one, else the model's
    "unknown" threshold (only unknown faces are routed; 0 for a model without one)."""
    if override is not None:
        return float(override)
    stored = stored_threshold(metadata)
    if stored is not None:
        return stored
    return float((metadata.get("open_set") or {}).get("threshold", 0.0))


class HybridEngine:
    """FaceNet's answer, or ``fallback``'s (Rekognition) for the faces ``route`` sends it.
    ``metadata()`` is the FaceNet model's, for its stored routing threshold; ``override``
    replaces that threshold. With the fallback unavailable, FaceNet's answer is kept and the
    answer says so."""

    name = "hybrid"
    available = True
    reason = ""

    def __init__(
        self,
        facenet: Engine,
        fallback: Engine,
        metadata: Callable[[], Mapping],
        override: float | None = None,
    ):
        self.facenet, self.fallback = facenet, fallback
        self.metadata, self.override = metadata, override

    def identify(self, faces: Sequence[Probe]) -> Identification:
        """Per face ``engine`` (which one answered), ``routed``, FaceNet's open-set ``score``
        and, when Rekognition answered, its ``similarity`` (or ``reason``)."""
        first = self.facenet.identify(faces)
        threshold = routing_threshold(self.metadata(), self.override)
        routed = route(
            [answer.person for answer in first.answers],
            [np.nan if answer.score is None else answer.score for answer in first.answers],
            threshold,
        )
        sent = [int(n) for n in np.flatnonzero(routed)]
        if self.fallback.available:
            second = self.fallback.identify([faces[n] for n in sent])
            asked, fallback = dict(zip(sent, second.answers, strict=True)), second.summary
        else:
            asked, fallback = {}, {"available": False, "reason": self.fallback.reason}
        answers = tuple(
            self._answer(first.answers[n], bool(routed[n]), asked.get(n)) for n in range(len(faces))
        )
        summary = {
            "routing_threshold": encode_threshold(round(threshold, 6)),
            "routed": len(sent),
            "rekognition": fallback,
        }
        return Identification(answers, summary, first.model_id)

    def _answer(self, facenet: Answer, routed: bool, asked: Answer | None) -> Answer:
        fields = {"engine": "facenet", "routed": routed, "score": number(facenet.score)}
        if routed and asked is not None:
            fields.update(engine="rekognition", **asked.fields)
            return Answer(asked.person, asked.score, asked.candidate, fields)
        if routed:
            fields["reason"] = "Rekognition is not available here; FaceNet's answer is kept"
        return Answer(facenet.person, facenet.score, facenet.candidate, fields)

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "routing_threshold": encode_threshold(
                routing_threshold(self.metadata(), self.override)
            ),
            "fallback": self.fallback.name,
        }
