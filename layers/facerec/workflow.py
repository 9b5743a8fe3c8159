"""The training workflow as separate steps, so each can run in its own process (a Step
Functions task) with only keys passed between them:

    gather -> fit (seeded stratified split, CV, SVC) -> evaluate FaceNet on the held-out part
    -> evaluate Rekognition on the same held-out part -> publish (promote only if not worse)

``Pipeline.train`` runs the same steps in one process; they work through the storage ports.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from facerec.classifier import FaceClassifier, cross_validate, holdout_split, select_c
from facerec.embedding import EMBEDDING_SIZE, MODEL_ID
from facerec.errors import NotEnoughData
from facerec.evaluation import evaluate_predictions, render_markdown
from facerec.gallery import Gallery
from facerec.models import TrainedModel, library_versions
from facerec.openset import DEFAULT_FAR, UNKNOWN, OpenSetIdentifier, calibrate
from facerec.storage.ports import BlobStore, Catalog, FaceRecord, ModelRecord

if TYPE_CHECKING:
    from facerec.pipeline import PipelineSettings


@dataclass(frozen=True)
class TrainOptions:
    """``test_size`` 0 trains on everything (no held-out evaluation); ``far`` is the
    false-accept rate the "unknown" threshold is calibrated to."""

    C: float = 10.0
    select_c: bool = False
    test_size: float = 0.25
    seed: int = 42
    far: float = DEFAULT_FAR

    @classmethod
    def of(cls, metadata: dict) -> TrainOptions:
        """The options a model was trained with (its C as chosen), to train it again."""
        split = metadata["split"]
        far = (metadata.get("open_set") or {}).get("far_target", DEFAULT_FAR)
        return cls(metadata["classifier"]["C"], False, split["test_size"], split["seed"], far)


# Rekognition similarities are 0-100; its threshold table uses this scale.
SIMILARITY_THRESHOLDS = (50.0, 60.0, 70.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0, 99.5)


@dataclass(frozen=True)
class TrainingSet:
    """The labelled faces, in catalog order: ``embeddings`` float32 (N, D) unit vectors and
    (N,) string arrays ``face_ids``, ``crop_keys``, ``labels``."""

    face_ids: np.ndarray
    crop_keys: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray = field(repr=False)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{name: getattr(self, name) for name in _SET_FIELDS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingSet:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(**{name: arrays[name] for name in _SET_FIELDS})

    def __len__(self) -> int:
        return len(self.labels)


_SET_FIELDS = ("face_ids", "crop_keys", "labels", "embeddings")


def labelled_faces(catalog: Catalog, crop_method: str) -> list[FaceRecord]:
    """Every labelled face; NotEnoughData when there are none or some were cropped otherwise."""
    faces = catalog.faces()
    stale = [face for face in faces if face.crop_method != crop_method]
    if stale:
        raise NotEnoughData(
            f"{len(stale)} enrolled faces were cropped with another method than "
            f"{crop_method!r}; re-ingest them or use that method"
        )
    if not faces:
        raise NotEnoughData(
            "no labelled faces enrolled yet; enrol photos first (`facerec ingest DIR`, "
            "or upload them to the ingest bucket)"
        )
    return faces


def gather(catalog: Catalog, crop_method: str) -> TrainingSet:
    """Every labelled face as arrays (see labelled_faces for the errors)."""
    faces = labelled_faces(catalog, crop_method)
    return TrainingSet(
        np.array([face.face_id for face in faces]),
        np.array([face.crop_key for face in faces]),
        np.array([face.person for face in faces]),
        np.stack([face.embedding for face in faces]).astype(np.float32),
    )


def describe_analysis(settings: PipelineSettings, weights_sha256: str) -> dict:
    """How faces were found, cropped and embedded, for a model's metadata; needs no loaded
    model, so the training steps run without TensorFlow."""
    return {
        "embedding": {
            "model_id": MODEL_ID,
            "weights_sha256": weights_sha256,
            "preprocessing": "prewhiten",
            "dimensions": EMBEDDING_SIZE,
        },
        "crop": {
            "method": settings.crop_method,
            "margin": settings.margin,
            "size": settings.crop_size,
        },
        "detector": {"name": "mtcnn", **asdict(settings.detector)},
    }


def fit(
    training_set: TrainingSet, options: TrainOptions, analysis: dict
) -> tuple[TrainedModel, np.ndarray]:
    """Split, (select C,) cross-validate and fit as ``Pipeline.train`` does.
    Returns the model and the held-out indices into ``training_set``."""
    X, y = training_set.embeddings, training_set.labels
    train_index, test_index = holdout_split(y, options.test_size, options.seed)
    started = time.perf_counter()
    C, c_table = (
        select_c(X[train_index], y[train_index], options.seed)
        if options.select_c
        else (options.C, None)
    )
    cv = cross_validate(X[train_index], y[train_index], C, options.seed)
    classifier = FaceClassifier(C=C, random_state=options.seed).fit(X[train_index], y[train_index])
    open_set = OpenSetIdentifier(far=options.far, random_state=options.seed).fit(
        X[train_index], y[train_index], training_set.face_ids[train_index]
    )
    # The nearest-neighbour engine's gallery is every labelled face (the cloud's vector
    # store): its threshold is calibrated on all of them, the same way.
    nearest = calibrate(
        Gallery(X.shape[1]).add(training_set.face_ids, y, X), options.far, seed=options.seed
    )
    created = datetime.now(UTC)
    metadata = {
        "model_id": created.strftime("%Y%m%dT%H%M%SZ")
        + "-"
        + hashlib.sha256(X[train_index].tobytes()).hexdigest()[:8],
        "created_at": created.isoformat(timespec="seconds"),
        "engine": "facenet-svc",
        "labels": classifier.classes_.tolist(),
        "classifier": {
            "kind": "SVC",
            "kernel": "linear",
            "C": C,
            "c_selection": c_table,
            "probabilities": "sigmoid calibration, reported only",
        },
        "cv": cv,
        "open_set": {
            **open_set.calibration_.to_dict(),
            "label": "the SVC's; unknown when the score is not above the threshold",
            "gallery": f"the training part's {len(train_index)} faces",
        },
        "nearest": {**nearest.to_dict(), "gallery": f"every labelled face ({len(y)})"},
        **analysis,
        "split": {
            "test_size": options.test_size,
            "seed": options.seed,
            "train_faces": len(train_index),
            "test_faces": len(test_index),
            "test_face_ids": [str(face_id) for face_id in training_set.face_ids[test_index]],
        },
        "training_seconds": round(time.perf_counter() - started, 3),
        "libraries": library_versions(),
    }
    return TrainedModel(classifier, metadata, open_set), test_index


def held_out_index(model: TrainedModel, training_set: TrainingSet) -> np.ndarray:
    """Indices into ``training_set`` of the faces ``model`` held out (by face id)."""
    held_out = set(model.metadata["split"]["test_face_ids"])
    return np.array(
        [i for i, face_id in enumerate(training_set.face_ids) if face_id in held_out], dtype=int
    )


def evaluate_facenet(model: TrainedModel, training_set: TrainingSet) -> dict:
    """The model's answers on the faces it held out: closed-set figures from the SVC's labels
    (``accuracy``, what promotion compares), open-set figures (``open_set``: faces named
    correctly and accepted, and those answered "unknown"), and ``answers`` per face (face_id,
    truth, person or "unknown", label, probability, open-set score)."""
    test_index = held_out_index(model, training_set)
    if not len(test_index):
        raise NotEnoughData("the model was trained without a held-out part (test_size 0)")
    answers = model.identify(training_set.embeddings[test_index])
    closed_set = np.asarray(model.classifier.predict(training_set.embeddings[test_index]), str)
    truth = training_set.labels[test_index]
    evaluation = evaluate_predictions(
        truth, closed_set, answers.probabilities, model.classifier.classes_
    )
    accepted = answers.accepted
    evaluation.update(
        engine="facenet",
        score="probability",
        model_id=model.model_id,
        open_set={
            "threshold": answers.threshold,
            "unknown": int((~accepted).sum()),
            "correct_accepted": int(((closed_set == truth) & accepted).sum()),
            "identification_rate": float(((closed_set == truth) & accepted).mean()),
        },
        answers=[
            {
                "face_id": str(training_set.face_ids[i]),
                "truth": str(truth[n]),
                "person": str(answers.labels[n]),
                "label": str(closed_set[n]),
                "probability": round(float(answers.probabilities[n]), 6),
                "score": round(float(answers.scores[n]), 6),
            }
            for n, i in enumerate(test_index)
        ],
    )
    return evaluation


def evaluate_nearest(model: TrainedModel, training_set: TrainingSet) -> dict:
    """The nearest-neighbour engine on the same held-out faces, its gallery the training part
    (``model.open_set``): the nearest face's person, or "unknown" (a miss here: every
    held-out face is of an enrolled person)."""
    test_index = held_out_index(model, training_set)
    if not len(test_index) or model.open_set is None:
        raise NotEnoughData("the model has no held-out part or no open-set gallery")
    labels, scores = model.open_set.predict_with_score(training_set.embeddings[test_index])
    evaluation = evaluate_predictions(
        training_set.labels[test_index], labels, scores, model.classifier.classes_
    )
    evaluation.update(
        engine="nearest",
        score="open-set score",
        model_id=model.model_id,
        open_set={
            "threshold": model.open_set.calibration_.threshold,
            "unknown": int((labels == UNKNOWN).sum()),
        },
    )
    return evaluation


def face_ids_of(indexed: Mapping[str, str], crop_keys: Iterable[str]) -> frozenset[str]:
    """The FaceIds of ``indexed`` (FaceId -> crop key) whose crop is one of ``crop_keys``: the
    held-out crops' own faces, which an evaluation must never match (every labelled crop is
    indexed at enrolment, held-out ones included)."""
    wanted = set(crop_keys)
    return frozenset(face_id for face_id, crop in indexed.items() if crop in wanted)


def evaluate_rekognition(
    engine,
    read_crop: Callable[[str], bytes],
    model: TrainedModel,
    training_set: TrainingSet,
    indexed: dict[str, str],
) -> dict:
    """Rekognition on the same held-out faces: SearchFacesByImage per held-out crop.

    ``engine`` is a RekognitionEngine (threshold 0: closed set, as FaceNet is evaluated; the
    threshold table shows what a threshold would discard). ``indexed`` maps the FaceIds of
    the collection to their crop keys. Every held-out crop was indexed at enrolment too, so
    the FaceIds of all held-out crops are excluded from matching: the gallery is the training
    part only, as for the classifier. Crops in which Rekognition finds no face count as
    misses ("unknown")."""
    test_index = held_out_index(model, training_set)
    exclude = face_ids_of(indexed, (str(key) for key in training_set.crop_keys[test_index]))
    truth, predicted, scores, no_face, answers = [], [], [], 0, []
    for i in test_index:
        answer = engine.identify([read_crop(str(training_set.crop_keys[i]))], exclude)[0]
        truth.append(str(training_set.labels[i]))
        predicted.append(answer["person"])
        scores.append(answer["similarity"] or 0.0)
        no_face += answer["similarity"] is None
        answers.append(
            {
                "face_id": str(training_set.face_ids[i]),
                "truth": truth[-1],
                "person": answer["person"],
                "similarity": answer["similarity"],
            }
        )
    evaluation = evaluate_predictions(
        truth, predicted, scores, model.classifier.classes_, SIMILARITY_THRESHOLDS
    )
    training_crops = {str(key) for key in np.delete(training_set.crop_keys, test_index)}
    evaluation.update(
        engine="rekognition",
        score="similarity (0-100)",
        model_id=model.model_id,
        excluded_face_ids=len(exclude),
        no_face_in_crop=no_face,
        training_crops_not_indexed=len(training_crops - set(indexed.values())),
        answers=answers,
    )
    return evaluation


# Warm identify of one photo, p50, bench/RESULTS.md: the training workflow does not time
# FaceNet, so the hybrid's cost per face uses the benchmark's figure.
IDENTIFY_SECONDS = 0.122


def evaluate_hybrid(facenet: dict, rekognition: dict) -> dict:
    """The hybrid engine replayed on the held-out faces both evaluations answered: the
    routing curve (facerec.routing.routing_curve: accuracy and Rekognition calls and cost per
    1,000 faces against the threshold) and, as ``accuracy``, that of its ``best`` threshold:
    the cheapest one reaching the better single engine's accuracy."""
    from facerec.comparison import (
        DEFAULT_LAMBDA_MEMORY_MB,
        HYBRID_MONTHLY_IMAGES,
        lambda_cost,
        rekognition_image_cost,
    )
    from facerec.routing import routing_curve

    asked = {answer["face_id"]: answer for answer in rekognition["answers"]}
    answers = [answer for answer in facenet["answers"] if answer["face_id"] in asked]
    curve = routing_curve(
        [answer["truth"] for answer in answers],
        [answer["person"] for answer in answers],
        [answer["score"] for answer in answers],
        [asked[answer["face_id"]]["person"] for answer in answers],
        lambda_cost(1, IDENTIFY_SECONDS, DEFAULT_LAMBDA_MEMORY_MB)["total"],
        rekognition_image_cost(HYBRID_MONTHLY_IMAGES) / HYBRID_MONTHLY_IMAGES,
    )
    best = curve["best"]
    return {
        **curve,
        "engine": "hybrid",
        "faces": len(answers),
        "correct": best["correct"],
        "accuracy": best["accuracy"],
        "routing_threshold": best["threshold"],
    }


def should_promote(candidate: dict, current: ModelRecord | None) -> tuple[bool, str]:
    """Promote when there is no current model, or the candidate's held-out accuracy is at
    least the current model's (a model without a held-out accuracy is always replaced)."""
    if current is None:
        return True, "no current model"
    current_accuracy = (current.metadata.get("evaluation") or {}).get("accuracy")
    if current_accuracy is None:
        return True, f"current model {current.model_id} has no held-out accuracy"
    accuracy = candidate["accuracy"]
    if accuracy >= current_accuracy:
        return True, f"held-out accuracy {accuracy:.4f} >= {current_accuracy:.4f} (current)"
    return False, f"held-out accuracy {accuracy:.4f} < {current_accuracy:.4f} (current)"


def model_keys(model_id: str) -> dict[str, str]:
    """Where a model's artifact and metadata live in the models bucket."""
    return {"artifact": f"{model_id}/model.joblib", "metadata": f"{model_id}/metadata.json"}


def save_model(models: BlobStore, model: TrainedModel) -> dict[str, str]:
    keys = model_keys(model.model_id)
    models.put(keys["artifact"], model.to_bytes())
    models.put(keys["metadata"], json.dumps(model.metadata, indent=2).encode())
    return keys


def publish(
    models: BlobStore,
    reports: BlobStore,
    catalog: Catalog,
    model: TrainedModel,
    evaluations: dict[str, dict],
) -> tuple[TrainedModel, dict]:
    """Write the evaluation report, then make the model current if it is not worse.

    ``evaluations`` holds the held-out evaluation per engine (``facenet`` absent when the
    model was trained on everything: it is then promoted); with both engines' the hybrid's
    is added and its routing threshold goes into the metadata (``routing``). The artifact
    stays in the models bucket either way (versioned there); only a promoted model is
    registered in the catalog.
    Returns the model with its evaluation in its metadata, and ``{"promoted", "model_id",
    "reason", "report_key"}``."""
    facenet = evaluations.get("facenet")
    metadata = dict(model.metadata)
    if facenet is not None:
        metadata["evaluation"] = {"accuracy": facenet["accuracy"], "faces": facenet["faces"]}
    if "nearest" in evaluations:
        metadata["nearest_evaluation"] = {
            "accuracy": evaluations["nearest"]["accuracy"],
            "faces": evaluations["nearest"]["faces"],
        }
    if "rekognition" in evaluations:
        metadata["rekognition_evaluation"] = {
            "accuracy": evaluations["rekognition"]["accuracy"],
            "faces": evaluations["rekognition"]["faces"],
        }
        if facenet is not None:
            hybrid = evaluations["hybrid"] = evaluate_hybrid(facenet, evaluations["rekognition"])
            metadata["routing"] = {
                "threshold": hybrid["routing_threshold"],
                "accuracy": hybrid["accuracy"],
                "routed_share": hybrid["best"]["routed_share"],
                "target": hybrid["target"],
                "reached": hybrid["best"]["reached"],
                "chosen_on": f"this model's {hybrid['faces']} held-out faces",
            }
    model = TrainedModel(model.classifier, metadata, model.open_set)
    keys = save_model(models, model)
    current = catalog.current_model()
    if facenet is None:
        promoted, reason = True, "trained on every enrolled face (no held-out part to compare)"
    else:
        promoted, reason = should_promote(facenet, current)
    report = {
        "model_id": model.model_id,
        "created_at": metadata["created_at"],
        "promoted": promoted,
        "promotion_reason": reason,
        "previous_model_id": current.model_id if current else None,
        "engines": evaluations,
    }
    report_key = f"{model.model_id}/evaluation.json"
    reports.put(report_key, json.dumps(report, indent=2, ensure_ascii=False).encode())
    if facenet is not None:
        reports.put(
            f"{model.model_id}/holdout-evaluation.json",
            json.dumps(facenet, indent=2, ensure_ascii=False).encode(),
        )
        title = f"Model {model.model_id}: FaceNet on the held-out part"
        reports.put(
            f"{model.model_id}/holdout-evaluation.md", render_markdown(facenet, title).encode()
        )
    if promoted:
        catalog.put_model(
            ModelRecord(model.model_id, keys["artifact"], metadata["created_at"], metadata)
        )
    result = {"promoted": promoted, "model_id": model.model_id, "reason": reason}
    return model, {**result, "report_key": report_key}
