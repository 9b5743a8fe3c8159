"""The one evaluation: any engine's answers on a model's held-out faces, face by face, and the
figures drawn from them.

The training workflow runs each engine on the held-out faces of the model it just trained
(their stored embeddings and crops, the training part as the gallery) and stores the runs;
publishing and the comparison report read those same runs. ``hybrid_curve`` replays FaceNet's
and Rekognition's runs for the hybrid engine (facerec.engines.hybrid) in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from facerec.core.errors import FaceRecError, ImageError, InvalidLabel, NotEnoughData
from facerec.core.metrics import DEFAULT_THRESHOLDS, evaluate_predictions, score_statistics
from facerec.core.naming import validate_person_name
from facerec.engines.base import UNKNOWN, Engine
from facerec.engines.hybrid import routing_curve
from facerec.flows.enrol import PhotoInput, labelled_face
from facerec.storage.ports import Catalog
from facerec.vision.analyser import FaceAnalyser
from facerec.vision.images import decode_image

# Rekognition similarities are 0-100; its threshold table uses this scale.
SIMILARITY_THRESHOLDS = (50.0, 60.0, 70.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0, 99.5)
# The open-set score lies within about -0.1..0.8 on real faces; calibrated thresholds ~0.35.
NEAREST_THRESHOLDS = tuple(round(value, 2) for value in np.arange(0.0, 0.601, 0.05))


@dataclass(frozen=True)
class ScoreScale:
    """Which answer field an engine's threshold table is drawn on (None: the engine's own
    score, unrounded), in words, and the table."""

    field: str | None
    name: str
    thresholds: tuple[float, ...]


SCALES = {
    "facenet": ScoreScale("probability", "probability (0-1)", DEFAULT_THRESHOLDS),
    "nearest": ScoreScale(None, "open-set score (cohort-normalised cosine)", NEAREST_THRESHOLDS),
    "rekognition": ScoreScale("similarity", "similarity (0-100)", SIMILARITY_THRESHOLDS),
}


@dataclass(frozen=True)
class EngineRun:
    """One engine over the held-out faces.

    ``answers``: face id -> ``{"person": str | None, "candidate", "score": float | None,
    "engine_score", "accepted": bool, "seconds": float, ...the answer's own fields}``;
    ``person`` None with a ``reason`` when the engine refused the face; ``score`` is the
    field the threshold table is drawn on (``scale``); ``engine_score`` the engine's own
    score (FaceNet's open-set score, which hybrid routing reads). ``gallery_refusals``:
    training crops the engine could not take (``crop_key``, ``reason``); ``reason``: why the
    engine did not run at all (then ``answers`` is empty)."""

    name: str
    answers: dict[str, dict] = field(default_factory=dict)
    gallery_refusals: tuple[dict, ...] = ()
    describe: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def scale(self) -> ScoreScale:
        return SCALES[self.name]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> EngineRun:
        return cls(
            data["name"],
            dict(data["answers"]),
            tuple(data.get("gallery_refusals", ())),
            dict(data.get("describe", {})),
            data.get("reason", ""),
        )


class Case(Protocol):
    """A face to evaluate an engine on: a Probe (``crop``, ``embedding``) with its
    ``face_id``, true person ``truth`` and ``crop_key`` (where its crop is stored, or "")."""

    face_id: str
    truth: str
    crop_key: str
    crop: np.ndarray
    embedding: np.ndarray


@dataclass(frozen=True)
class PhotoFace:
    """The labelled face of a photo that is not enrolled (``face_id`` is the photo's path)."""

    face_id: str
    truth: str
    crop: np.ndarray = field(repr=False)
    embedding: np.ndarray = field(repr=False)
    crop_key: str = ""


@dataclass(frozen=True)
class HeldOutFace:
    """One held-out face: ``embedding`` float32 (128,), its crop read from the faces store
    on demand (``crop``, uint8 (160, 160, 3)); a Probe for every engine."""

    face_id: str
    truth: str
    crop_key: str
    embedding: np.ndarray = field(repr=False)
    read_crop: Callable[[str], bytes] = field(repr=False, default=None)

    @property
    def crop(self) -> np.ndarray:
        return decode_image(self.read_crop(self.crop_key))

    @property
    def photo_key(self) -> str:
        """The ingest key of its photo (face ids are ``<photo key>#<face index>``)."""
        return self.face_id.rsplit("#", 1)[0]


def held_out_faces(
    metadata: Mapping,
    face_ids: Sequence[str],
    labels: Sequence[str],
    crop_keys: Sequence[str],
    embeddings: np.ndarray,
    read_crop: Callable[[str], bytes],
) -> tuple[list[int], list[HeldOutFace]]:
    """(indices of the training part, the held-out faces) of a model (its ``metadata``)
    within the labelled faces given as (N,) arrays, in their order. NotEnoughData when the
    model held nothing out or some held-out faces are no longer enrolled."""
    held_out = set(metadata["split"]["test_face_ids"])
    if not held_out:
        raise NotEnoughData(
            f"model {metadata['model_id']} was trained without a held-out part; run "
            "`facerec train` (25 % held out by default) first"
        )
    test = [i for i, face_id in enumerate(face_ids) if str(face_id) in held_out]
    if len(test) != len(held_out):
        raise NotEnoughData(
            f"{len(held_out) - len(test)} held-out faces of model {metadata['model_id']} are "
            "no longer enrolled; retrain (`facerec train`) before comparing"
        )
    faces = [
        HeldOutFace(str(face_ids[i]), str(labels[i]), str(crop_keys[i]), embeddings[i], read_crop)
        for i in test
    ]
    chosen = set(test)
    return [i for i in range(len(face_ids)) if i not in chosen], faces


def sample_faces(
    faces: Sequence[HeldOutFace], limit: int | None, seed: int
) -> tuple[list[HeldOutFace], dict]:
    """At most ``limit`` of the held-out ``faces`` (None: all of them), drawn without
    replacement by ``seed`` and kept in their order, and how they were drawn: ``{"faces",
    "held_out_faces", "limit", "seed", "about"}``, ``about`` in words ("10 of 23 held-out
    faces (a seeded sample, seed 42)")."""
    if limit is not None and limit < 1:
        raise ValueError(f"a sample holds at least one face; got a limit of {limit}")
    total = len(faces)
    if limit is None or total <= limit:
        chosen, about = list(faces), f"all {total:,} held-out faces"
    else:
        drawn = np.sort(np.random.default_rng(seed).choice(total, limit, replace=False))
        chosen = [faces[i] for i in drawn]
        about = f"{limit:,} of {total:,} held-out faces (a seeded sample, seed {seed})"
    sample = {"faces": len(chosen), "held_out_faces": total, "limit": limit, "seed": seed}
    return chosen, {**sample, "about": about}


def run_engine(
    engine: Engine,
    faces: Sequence[Case],
    gallery_refusals: Sequence[dict] = (),
    batch_size: int = 1,
) -> EngineRun:
    """Ask ``engine`` about the held-out faces, ``batch_size`` at a time (1: each on its own;
    a batch's time is shared evenly by its faces), timed. A face it cannot answer (a
    FaceRecError) is a refusal with its reason: a batch that raises is asked again face by
    face, so give batches only to engines whose calls cost nothing (the local ones). An
    engine that is not available did not run, with its reason."""
    if not engine.available:
        return EngineRun(engine.name, reason=engine.reason)
    scale = SCALES[engine.name]
    answers = {}
    for start in range(0, len(faces), batch_size):
        batch = faces[start : start + batch_size]
        started = time.perf_counter()
        try:
            found = engine.identify(batch).answers
        except FaceRecError as error:
            if len(batch) > 1:  # which face: each asked on its own
                for face in batch:
                    answers.update(run_engine(engine, [face]).answers)
                continue
            answers[batch[0].face_id] = {
                "person": None,
                "score": None,
                "engine_score": None,
                "accepted": False,
                "reason": str(error),
                "seconds": time.perf_counter() - started,
            }
            continue
        seconds = (time.perf_counter() - started) / len(batch)
        for face, answer in zip(batch, found, strict=True):
            answers[face.face_id] = _record(answer, scale.field, seconds)
    timed = (
        "per face: one identify call on its stored embedding and crop"
        if batch_size == 1
        else f"per face: its share of one identify call on up to {batch_size} stored embeddings"
    )
    describe = {**engine.describe(), "timed": timed}
    return EngineRun(engine.name, answers, tuple(gallery_refusals), describe)


def _record(answer, score_field: str | None, seconds: float) -> dict:
    """One answer as a run stores it: ``score`` is the engine's own (or ``score_field`` of
    its fields); no score (nobody to compare with) is no answer."""
    own = answer.score if answer.score is not None and np.isfinite(answer.score) else None
    record = {
        "person": answer.person,
        "candidate": answer.candidate,
        **answer.fields,
        "score": own if score_field is None else answer.fields.get(score_field),
        "engine_score": own,
        "accepted": answer.person != UNKNOWN,
        "seconds": seconds,
    }
    if record["score"] is None:
        record["person"] = None
        record.setdefault("reason", "the engine had no score for this face")
    return record


def seconds_statistics(seconds: Sequence[float]) -> dict:
    """count, mean, std, min, max, p50, p95, total of durations in seconds (None when empty)."""
    values = np.asarray(seconds, dtype=np.float64)
    stats = score_statistics(values)
    empty = len(values) == 0
    stats["p50"] = None if empty else float(np.percentile(values, 50))
    stats["p95"] = None if empty else float(np.percentile(values, 95))
    stats["total"] = float(values.sum())
    return stats


def summarise(run: EngineRun, faces: Sequence[Case], labels: Sequence[str]) -> dict:
    """A run's figures: ``evaluation`` (evaluate_predictions over the faces it answered),
    ``accuracy_all`` over all held-out faces (refusals and "unknown" are misses),
    ``closed_set_accuracy`` (the best candidate, before the engine's threshold), the
    ``open_set`` unknown count, refusals with reasons, and durations. A run on a sample of
    the faces (``describe["sample"]``, sample_faces) is summarised over its sample."""
    scale = SCALES[run.name]
    summary = {
        "name": run.name,
        "ran": not run.reason,
        "reason": run.reason,
        "score": scale.name,
        "describe": dict(run.describe),
        "held_out_faces": len(faces),
    }
    if run.reason:
        return summary
    if "sample" in run.describe:  # a run on a sample of the faces (sample_faces): its figures
        faces = [face for face in faces if face.face_id in run.answers]
        summary["held_out_faces"] = len(faces)
    answers = [run.answers[face.face_id] for face in faces]
    answered = [(face, a) for face, a in zip(faces, answers, strict=True) if a["score"] is not None]
    evaluation = evaluate_predictions(
        [face.truth for face, _ in answered],
        [answer["person"] or UNKNOWN for _, answer in answered],
        [answer["score"] for _, answer in answered],
        labels,
        scale.thresholds,
    )
    refusals = [
        {"stage": "identify", "key": face.crop_key, "reason": answer["reason"]}
        for face, answer in zip(faces, answers, strict=True)
        if answer["score"] is None
    ] + [
        {"stage": "gallery", "key": item["crop_key"], "reason": item["reason"]}
        for item in run.gallery_refusals
    ]
    closed = sum(a.get("candidate") == face.truth for face, a in zip(faces, answers, strict=True))
    if "open_set_threshold" in run.describe:  # an engine that answers "unknown" by a threshold
        summary["open_set"] = {
            "unknown": sum(answer["person"] == UNKNOWN for answer in answers),
            "threshold": run.describe["open_set_threshold"],
        }
    return {
        **summary,
        "answered": len(answered),
        "correct": evaluation["correct"],
        "accuracy_all": evaluation["correct"] / len(faces) if faces else None,
        "closed_set_accuracy": closed / len(faces) if faces else None,
        "evaluation": evaluation,
        "refusals": refusals,
        "seconds": seconds_statistics([answer["seconds"] for answer in answers]),
    }


def hybrid_curve(
    facenet: EngineRun,
    rekognition: EngineRun,
    faces: Sequence[HeldOutFace],
    facenet_usd: float,
    call_usd: float,
    thresholds=None,
) -> dict:
    """The hybrid replayed on the held-out faces both runs answered: ``routing_curve``'s
    result plus ``faces``. FaceNet's "unknown" and refusals are always routed; a Rekognition
    refusal or "unknown" is a miss. USD per face and per routed call."""
    both = [face for face in faces if face.face_id in rekognition.answers]
    if not both:
        raise NotEnoughData("no held-out face was answered by both FaceNet and Rekognition")
    first = [facenet.answers[face.face_id] for face in both]
    return routing_curve(
        [face.truth for face in both],
        [answer["person"] for answer in first],
        [answer["engine_score"] for answer in first],
        [rekognition.answers[face.face_id]["person"] for face in both],
        facenet_usd,
        call_usd,
        thresholds=thresholds,
    )


def evaluate_photos(
    analyser: FaceAnalyser,
    catalog: Catalog,
    engine: Engine,
    labels: Sequence[str],
    items: Iterable[PhotoInput],
) -> dict:
    """An engine on labelled photos that are not enrolled: core.metrics.evaluate_predictions
    over the photos' labelled faces (chosen as at enrolment) plus ``photos``, ``refused``
    (photos that could not be used, with their reason: misses in ``photo_accuracy``)."""
    items = list(items)
    cases, refused = [], []
    for item in items:
        photo = f"{item.person}/{item.name}"
        try:
            image, faces = analyser.analyse_photo(item.data)
            person = validate_person_name(item.person)
        except (ImageError, InvalidLabel) as error:
            refused.append({"photo": photo, "code": error.code, "reason": str(error)})
            continue
        chosen, _ = labelled_face(catalog, analyser, person, faces, image.shape)
        cases.append(PhotoFace(photo, person, faces[chosen].crop, faces[chosen].embedding))
    run = run_engine(engine, cases)
    evaluation = summarise(run, cases, labels)["evaluation"]
    evaluation["model_id"] = run.describe.get("model_id")
    evaluation["photos"] = len(items)
    evaluation["refused"] = refused
    evaluation["photo_accuracy"] = evaluation["correct"] / len(items) if items else None
    return evaluation
