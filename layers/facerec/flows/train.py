"""The training workflow as separate steps, so each can run in its own process (a Step
Functions task) with only keys passed between them:

    gather -> fit (seeded stratified split, CV, SVC, "unknown" calibration)
    -> evaluate FaceNet and the nearest face on the held-out part (flows.evaluate)
    -> evaluate Rekognition on the same held-out part
    -> publish (promote unless the current model is better on the same faces: promotion)

``train`` runs the same steps in one process; they work through the storage ports.

Commit order, so that a run stopped between any two writes leaves the catalog pointing at a
complete model (tests/unit/flows/test_crash_windows.py stops it at each write): the runs on
the held-out part (reports ``<model_id>/runs/<engine>.json``), the artifact
``<model_id>/model-<sha256[:16]>.npz`` (named by its content: never overwritten, so a reader
holding an older record of the same model id still finds the bytes it hashed), the metadata
``<model_id>/metadata.json`` naming it, the held-out reports, the evaluation report with the
promotion decision, and last the catalog's pointer (the commit point). A run stopped before
the pointer changed nothing a reader follows: the next run trains and compares against the
same current model, as if the stopped run had never been; the stopped run's files stay
under its own model id, unregistered, as a model that was not promoted.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from facerec.core.costs import hybrid_costs
from facerec.core.errors import ModelIntegrityError, ModelNotFound
from facerec.core.metrics import render_markdown
from facerec.core.records import ModelRecord
from facerec.core.settings import TrainOptions
from facerec.engines.base import Engine
from facerec.engines.classifier import (
    C_GRID,
    FaceClassifier,
    LinearClassifier,
    OneVsRestSVM,
    best_c,
    choose_classifier,
    cross_validate,
    holdout_split,
    select_c,
)
from facerec.engines.facenet import FaceNetEngine, TrainedModel, library_versions
from facerec.engines.gallery import Gallery
from facerec.engines.nearest import NearestEngine
from facerec.engines.openset import OpenSetIdentifier, calibrate, check_strangers
from facerec.engines.rekognition import RekognitionEngine
from facerec.flows.chain import indexed_crops, not_indexed_reason
from facerec.flows.evaluate import (
    EngineRun,
    HeldOutFace,
    held_out_faces,
    hybrid_curve,
    run_engine,
    sample_faces,
    summarise,
)
from facerec.storage.ports import (
    BlobStore,
    Catalog,
    FaceCollection,
    FaceIndex,
    IndexClaims,
    Stores,
    labelled_faces,
)
from facerec.storage.rekognition import collection_gallery


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


def gather(catalog: Catalog, crop_method: str) -> TrainingSet:
    """Every labelled face as arrays (see labelled_faces for the errors)."""
    faces = labelled_faces(catalog, crop_method)
    return TrainingSet(
        np.array([face.face_id for face in faces]),
        np.array([face.crop_key for face in faces]),
        np.array([face.person for face in faces]),
        np.stack([face.embedding for face in faces]).astype(np.float32),
    )


def fit(
    training_set: TrainingSet, options: TrainOptions, analysis: dict, strangers=None
) -> tuple[TrainedModel, np.ndarray]:
    """Split, (select C,) cross-validate, fit (the classifier options.classifier names, by
    fit_classifier) and calibrate "unknown" for both engines:
    leave-one-person-out, or on ``strangers`` (S, D) unit vectors of faces of people never
    enrolled (NotEnoughData below openset.min_stranger_faces(options.far)). Returns the model
    and the held-out indices into ``training_set``."""
    X, y = training_set.embeddings, training_set.labels
    if strangers is not None:
        strangers = check_strangers(strangers, options.far, X.shape[1])
    train_index, test_index = holdout_split(y, options.test_size, options.seed)
    started = time.perf_counter()
    kind = choose_classifier(options.classifier, len(np.unique(y[train_index])))
    classifier, C, c_table, cv = fit_classifier(kind, X[train_index], y[train_index], options)
    open_set = OpenSetIdentifier(far=options.far, random_state=options.seed).fit(
        X[train_index], y[train_index], training_set.face_ids[train_index], strangers
    )
    # The nearest-neighbour engine's gallery is every labelled face (the cloud's vector
    # store): its threshold is calibrated on all of them, the same way.
    nearest = calibrate(
        Gallery(X.shape[1]).add(training_set.face_ids, y, X),
        options.far,
        strangers,
        seed=options.seed,
    )
    created = datetime.now(UTC)
    # The options and strangers are hashed too: the same faces trained again in the same
    # second with another --far (or C, split, strangers) make another model, which
    # CurrentModel must reload.
    trained_on = X[train_index].tobytes() + repr(options).encode()
    if strangers is not None:
        trained_on += strangers.tobytes()
    metadata = {
        "model_id": created.strftime("%Y%m%dT%H%M%SZ")
        + "-"
        + hashlib.sha256(trained_on).hexdigest()[:8],
        "created_at": created.isoformat(timespec="seconds"),
        "engine": f"facenet-{kind}",
        "labels": classifier.classes_.tolist(),
        "classifier": {
            **CLASSIFIER_DESCRIPTIONS[kind],
            "choice": options.classifier,
            "C": C,
            "c_selection": c_table,
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


CLASSIFIER_DESCRIPTIONS = {
    "svc": {
        "kind": "SVC",
        "kernel": "linear",
        "probabilities": "sigmoid calibration per class, reported only",
    },
    "ovr": {
        "kind": "one-vs-rest SVMs",
        "kernel": "linear",
        "negatives": "each person's 50 nearest people's faces and 256 others (OneVsRestSVM)",
        "probabilities": "sigmoid calibration of the top decision, reported only",
    },
}


def fit_classifier(
    kind: str, X: np.ndarray, y: np.ndarray, options: TrainOptions
) -> tuple[LinearClassifier, float, list[dict] | None, dict]:
    """(classifier, its C, the C selection table or None, its cross-validation) of ``kind``
    ("svc" or "ovr") on ``X`` (N, D) and ``y`` (N,). The SVC is cross-validated as the
    thesis did (up to 10 folds, apart from its calibration); OneVsRestSVM reports the folds
    its probability was calibrated on, so cross-validation costs no extra fit."""
    if kind == "svc":
        C, table = select_c(X, y, options.seed) if options.select_c else (options.C, None)
        classifier = FaceClassifier(C=C, random_state=options.seed).fit(X, y)
        return classifier, C, table, cross_validate(X, y, C, options.seed)
    if options.select_c:
        fitted = {C: OneVsRestSVM(C=C, random_state=options.seed).fit(X, y) for C in C_GRID}
        table = [{"C": C, **model.cv_} for C, model in fitted.items()]
        C = best_c(table)
        return fitted[C], C, table, fitted[C].cv_
    classifier = OneVsRestSVM(C=options.C, random_state=options.seed).fit(X, y)
    return classifier, options.C, None, classifier.cv_


def held_out(
    model: TrainedModel, training_set: TrainingSet, read_crop: Callable[[str], bytes]
) -> tuple[list[int], list[HeldOutFace]]:
    """(indices of its training part, its held-out faces) of ``model`` in ``training_set``."""
    return held_out_faces(
        model.metadata,
        training_set.face_ids,
        training_set.labels,
        training_set.crop_keys,
        training_set.embeddings,
        read_crop,
    )


# Held-out faces the local engines answer per call: one call per face cost 4.3 ms a face and
# engine at 10,000 people (the nearest face reads its 97,000-face gallery for each), 283 s
# of a 617 s training (bench/TRAINING_SCALE.md).
EVALUATION_BATCH = 256


def local_engines(model: TrainedModel) -> dict[str, Engine]:
    """FaceNet and the nearest face as a model answers with them: the nearest face's gallery
    is the model's training part (``model.open_set``), so it sees what FaceNet sees."""
    engines: dict[str, Engine] = {"facenet": FaceNetEngine(lambda: model)}
    if model.open_set is not None:
        about = f"the training part: {len(model.open_set.gallery_)} faces (model.open_set)"
        engines["nearest"] = NearestEngine(lambda: model.open_set, about)
    return engines


def run_key(model_id: str, engine: str) -> str:
    """Where an engine's run on a model's held-out faces lives in the reports bucket."""
    return f"{model_id}/runs/{engine}.json"


def save_run(reports: BlobStore, model_id: str, run: EngineRun, figures: dict) -> str:
    """Store a run with its ``figures`` (flows.evaluate.summarise) beside it, for readers
    of the reports bucket; returns its key."""
    key = run_key(model_id, run.name)
    payload = {**run.to_dict(), "figures": figures}
    reports.put(key, json.dumps(payload, indent=1, ensure_ascii=False).encode())
    return key


def load_runs(reports: BlobStore, model_id: str, engines: Iterable[str]) -> dict[str, EngineRun]:
    """The stored runs of ``engines`` on the model's held-out faces (those that exist)."""
    runs = {}
    for engine in engines:
        try:
            runs[engine] = EngineRun.from_dict(json.loads(reports.get(run_key(model_id, engine))))
        except FileNotFoundError:
            continue
    return runs


def evaluate(
    model: TrainedModel,
    training_set: TrainingSet,
    read_crop: Callable[[str], bytes],
    engines: Mapping[str, Engine] | None = None,
) -> dict[str, EngineRun]:
    """Each engine (default: ``local_engines(model)``, asked EVALUATION_BATCH faces at a time)
    on the model's held-out faces; given ``engines`` are asked face by face."""
    _, faces = held_out(model, training_set, read_crop)
    batch = EVALUATION_BATCH if engines is None else 1
    engines = local_engines(model) if engines is None else engines
    return {name: run_engine(engine, faces, batch_size=batch) for name, engine in engines.items()}


def evaluate_rekognition(
    model: TrainedModel,
    training_set: TrainingSet,
    read_crop: Callable[[str], bytes],
    collection: FaceCollection,
    face_index: FaceIndex,
    claims: IndexClaims,
    max_faces: int | None = None,
) -> EngineRun:
    """Rekognition on the model's held-out faces in the deployment's collection, which the
    enrolment chain filled with every labelled crop: the held-out crops' own FaceIds never
    match, so the gallery is the training part, as for FaceNet; a training crop missing from
    the collection is a gallery refusal with its reason. Closed set (min similarity 0), as
    FaceNet is evaluated. One SearchFacesByImage call per face searched: at most
    ``max_faces`` of them (None: all), a sample seeded by the model's split seed
    (flows.evaluate.sample_faces), which ``describe["sample"]`` records."""
    training, every_face = held_out(model, training_set, read_crop)
    faces, sample = sample_faces(every_face, max_faces, model.metadata["split"]["seed"])
    collection_id = collection.collection_id
    gallery = collection_gallery(
        collection_id,
        indexed_crops(face_index, collection_id),
        {str(training_set.crop_keys[i]): str(training_set.labels[i]) for i in training},
        [face.crop_key for face in every_face],  # every held-out FaceId, searched or not
        lambda crop_key: not_indexed_reason(claims, collection_id, crop_key),
    )
    engine = RekognitionEngine(collection, gallery, 0.0, gallery.exclude)
    refused = [{"crop_key": key, "reason": why} for key, why in sorted(gallery.refused.items())]
    run = run_engine(engine, faces, refused)
    run.describe["excluded_face_ids"] = len(gallery.exclude)
    run.describe["sample"] = sample
    return run


SIGNIFICANCE = 0.05
PROMOTION_RULE = (
    "The candidate and the current model are compared on the same faces: the candidate's "
    "held-out faces of people both know that the current model did not train on, by the "
    'SVC\'s label before "unknown" (closed set). The candidate is promoted unless the '
    "current model is right on significantly more of them: a one-sided exact sign test on "
    f"the faces exactly one of the two gets right, p < {SIGNIFICANCE} keeps the current "
    f"model (an equally good candidate is held back at most {SIGNIFICANCE:.0%} of the time). "
    "Faces of people only the candidate knows are counted apart; they cannot be compared."
)


def compare_with_current(
    run: EngineRun, faces: Sequence[HeldOutFace], current: TrainedModel
) -> dict:
    """The candidate's FaceNet answers (``run``, on its held-out ``faces``) against the current
    model's on the same faces, asked now (flows.evaluate.run_engine). Compared (``common_
    faces``): faces of people both know that the current model did not train on (its open-set
    gallery); counted apart: ``trained_on_by_current`` and ``new_people`` (faces of people the
    current model does not know). ``p_worse``: the chance of the current model being right
    alone at least this often if both were equally good (sign_test)."""
    known = set(current.metadata["labels"])
    trained = set(current.open_set.gallery_.ids.tolist())
    new = [face for face in faces if face.truth not in known]
    common = [face for face in faces if face.truth in known and face.face_id not in trained]
    current_run = run_engine(FaceNetEngine(lambda: current), common, batch_size=EVALUATION_BATCH)

    def right(answers: Mapping[str, dict], cases: Sequence[HeldOutFace]) -> set[str]:
        return {
            face.face_id for face in cases if answers[face.face_id].get("candidate") == face.truth
        }

    candidate, incumbent = right(run.answers, common), right(current_run.answers, common)
    wins, losses = len(candidate - incumbent), len(incumbent - candidate)
    new_right = len(right(run.answers, new))
    return {
        "current_model_id": current.model_id,
        "common_faces": len(common),
        "candidate_correct": len(candidate),
        "current_correct": len(incumbent),
        "candidate_accuracy": len(candidate) / len(common) if common else None,
        "current_accuracy": len(incumbent) / len(common) if common else None,
        "candidate_only_correct": wins,
        "current_only_correct": losses,
        "p_worse": sign_test(losses, wins),
        "trained_on_by_current": sum(
            face.truth in known and face.face_id in trained for face in faces
        ),
        "new_people": {
            "people": len({face.truth for face in new}),
            "faces": len(new),
            "candidate_correct": new_right,
            "candidate_accuracy": new_right / len(new) if new else None,
        },
    }


def sign_test(losses: int, wins: int) -> float:
    """P(at least ``losses`` heads in ``losses + wins`` fair coin flips); 1.0 for none."""
    flips = losses + wins
    return sum(math.comb(flips, heads) for heads in range(losses, flips + 1)) / 2**flips


def promotion(
    run: EngineRun | None, faces: Sequence[HeldOutFace], current: TrainedModel | None
) -> dict:
    """Whether the candidate (its FaceNet ``run`` on its held-out ``faces``; None when it held
    nothing out) replaces ``current`` by PROMOTION_RULE: ``{"promoted", "reason", "rule",
    "comparison"}`` (compare_with_current; None when there was nothing to compare)."""
    comparison = None
    if current is None:
        promoted, reason = True, "no current model"
    elif run is None:
        promoted, reason = True, "trained on every enrolled face (no held-out part to compare)"
    elif current.open_set is None:
        promoted = True
        reason = (
            f"the current model {current.model_id} does not record the faces it trained on "
            "(an artifact older than format 2): nothing to compare on"
        )
    else:
        comparison = compare_with_current(run, faces, current)
        figures = (
            f"{comparison['candidate_correct']} vs {comparison['current_correct']} of "
            f"{comparison['common_faces']} common faces right (p = {comparison['p_worse']:.3g}"
        )
        promoted = comparison["p_worse"] >= SIGNIFICANCE
        if not comparison["common_faces"]:
            reason = f"no held-out face to compare with {current.model_id} on"
        elif promoted:
            reason = f"not worse than {current.model_id}: {figures} >= {SIGNIFICANCE})"
        else:
            reason = f"worse than {current.model_id}: {figures} < {SIGNIFICANCE})"
    return {
        "promoted": promoted,
        "reason": reason,
        "rule": PROMOTION_RULE,
        "comparison": comparison,
    }


def model_record(model: TrainedModel, keys: Mapping[str, str], decision: dict) -> ModelRecord:
    """The catalog's pointer to a published model: its artifact's key and, of its metadata,
    figures whose size does not grow with the faces: the options it was trained with (core.
    settings.TrainOptions.of), the size of its split, its held-out evaluation and how it was
    promoted (``decision``, promotion's answer)."""
    meta = model.metadata
    split = ("test_size", "seed", "train_faces", "test_faces")
    figures = {
        "classifier": {"C": meta["classifier"]["C"]},
        "split": {name: meta["split"][name] for name in split},
        "open_set": {"far_target": meta["open_set"]["far_target"]},
        "evaluation": meta.get("evaluation"),
        "promotion": decision,
    }
    return ModelRecord(
        model.model_id, keys["artifact"], meta["created_at"], figures, keys["sha256"]
    )


def model_keys(model_id: str, sha256: str = "") -> dict[str, str]:
    """Where a model's metadata lives in the models bucket and, given its artifact's sha256
    (hex), its artifact: ``<model_id>/model-<sha256[:16]>.npz``, named by its content so that
    saving the model again (with its evaluation, or republished) never overwrites an artifact
    a record already points at."""
    keys = {"metadata": f"{model_id}/metadata.json"}
    if sha256:
        keys["artifact"] = f"{model_id}/model-{sha256[:16]}.npz"
    return keys


def save_model(models: BlobStore, model: TrainedModel) -> dict[str, str]:
    """Write the artifact (unless its content-addressed key already holds it), then its
    metadata naming it (``artifact_key``, ``artifact_sha256``) -> model_keys and ``sha256``,
    the artifact's hex digest, for the record that publishes it. The metadata goes last, so
    it never names an artifact that is not there."""
    artifact = model.to_bytes()
    digest = hashlib.sha256(artifact).hexdigest()
    keys = model_keys(model.model_id, digest)
    if not models.exists(keys["artifact"]):
        models.put(keys["artifact"], artifact)
    metadata = {**model.metadata, "artifact_key": keys["artifact"], "artifact_sha256": digest}
    models.put(keys["metadata"], json.dumps(metadata, indent=2).encode())
    return {**keys, "sha256": digest}


def load_model(models: BlobStore, key: str, sha256: str) -> TrainedModel:
    """The artifact at ``key``, loaded only when its sha256 is ``sha256`` (the digest
    recorded when it was saved); else ModelIntegrityError naming it."""
    name = f"model file {key!r} in the models store"
    data = models.get(key)
    if not sha256:
        raise ModelIntegrityError(
            f"{name} has no recorded sha256 (published before models were hashed): "
            "refused; retrain (`facerec train`)"
        )
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelIntegrityError(
            f"{name} does not match the sha256 recorded when it was published: it was "
            "changed or damaged since; refused (restore it or retrain: `facerec train`)"
        )
    return TrainedModel.from_bytes(data, name)


def summaries(
    model: TrainedModel, training_set: TrainingSet, runs: Mapping[str, EngineRun]
) -> dict[str, dict]:
    """Each run's figures (flows.evaluate.summarise) on the model's held-out faces and, with
    FaceNet's and Rekognition's, the hybrid's routing curve (``hybrid``) at the costs of
    core.costs.hybrid_costs."""
    _, faces = held_out(model, training_set, lambda key: b"")
    labels = model.metadata["labels"]
    result = {name: summarise(run, faces, labels) for name, run in runs.items()}
    if "facenet" in runs and result.get("rekognition", {}).get("ran"):
        curve = hybrid_curve(runs["facenet"], runs["rekognition"], faces, *hybrid_costs())
        result["hybrid"] = {**curve, "engine": "hybrid", "accuracy": curve["best"]["accuracy"]}
    return result


def publish(
    stores: Stores,
    model: TrainedModel,
    training_set: TrainingSet,
    runs: Mapping[str, EngineRun],
) -> tuple[TrainedModel, dict]:
    """Make the model current unless the current one is better on common ground (promotion),
    then write the evaluation report with the decision and its figures.

    ``runs`` holds each engine's run on the held-out part (none when the model was trained
    on everything: it is then promoted); with FaceNet's and Rekognition's, the hybrid's
    best routing threshold goes into the metadata (``routing``). The artifact and metadata
    stay in the models store either way (versioned there); only a promoted model is
    registered in the catalog, as a pointer (model_record), and only in place of the current
    model it was compared with: when another one became current meanwhile, it is not
    promoted. Returns the model with its evaluation in its metadata, and ``{"promoted",
    "model_id", "reason", "report_key", "model_key", "model_sha256"}``: the artifact is saved
    again with its evaluation, under its own content-addressed key (model_keys), beside the
    one saved before publishing, which stays readable by the key and digest it was given.

    Commit order (module docstring): artifact, metadata, the held-out reports, the
    evaluation report with the decision, and last the catalog's pointer."""
    figures = summaries(model, training_set, runs) if runs else {}
    metadata = dict(model.metadata)
    facenet = figures.get("facenet")
    if facenet is not None:
        metadata["evaluation"] = {
            "accuracy": facenet["closed_set_accuracy"],
            "faces": facenet["held_out_faces"],
        }
    for name in ("nearest", "rekognition"):
        if figures.get(name, {}).get("ran"):
            metadata[f"{name}_evaluation"] = {
                "accuracy": figures[name]["accuracy_all"],
                "faces": figures[name]["held_out_faces"],
                "sample": runs[name].describe.get("sample"),
            }
    if "hybrid" in figures:
        hybrid = figures["hybrid"]
        metadata["routing"] = {
            "threshold": hybrid["best"]["threshold"],
            "accuracy": hybrid["best"]["accuracy"],
            "routed_share": hybrid["best"]["routed_share"],
            "target": hybrid["target"],
            "reached": hybrid["best"]["reached"],
            "chosen_on": f"this model's {hybrid['faces']} held-out faces",
        }
    model = TrainedModel(model.classifier, metadata, model.open_set)
    record = stores.catalog.current_model()
    previous = record.model_id if record else None
    current, refused = None, None
    try:
        if record is not None:
            current = load_model(stores.models, record.artifact_key, record.sha256)
    except ModelIntegrityError as error:
        refused = str(error)
    faces = held_out(model, training_set, lambda key: b"")[1] if facenet is not None else []
    decision = promotion(runs.get("facenet"), faces, current)
    if refused:  # a current model that cannot be loaded is replaced, not compared
        decision["reason"] = f"the current model {previous} is refused: {refused}"
    keys = save_model(stores.models, model)
    if facenet is not None:
        evaluation = facenet["evaluation"]
        stores.reports.put(f"{model.model_id}/holdout-evaluation.json", _json(evaluation))
        title = f"Model {model.model_id}: FaceNet on the held-out part"
        markdown = render_markdown(evaluation, title).encode()
        stores.reports.put(f"{model.model_id}/holdout-evaluation.md", markdown)
    report_key = f"{model.model_id}/evaluation.json"

    def write_report() -> None:
        report = {
            "model_id": model.model_id,
            "created_at": metadata["created_at"],
            "promoted": decision["promoted"],
            "promotion": decision,
            "previous_model_id": previous,
            "engines": figures,
        }
        stores.reports.put(report_key, _json(report))

    write_report()
    # The commit point, once every file the record leads to is written.
    if decision["promoted"] and not stores.catalog.put_model(
        model_record(model, keys, decision), previous
    ):
        decision["promoted"] = False
        decision["reason"] = (
            f"another model replaced {previous} as the current one while this model was "
            "compared with it: nothing replaced"
        )
        write_report()
    result = {"promoted": decision["promoted"], "model_id": model.model_id}
    result |= {"reason": decision["reason"], "report_key": report_key}
    # The artifact was saved again with its evaluation: later steps read it by these.
    return model, {**result, "model_key": keys["artifact"], "model_sha256": keys["sha256"]}


def _json(payload: dict) -> bytes:
    return json.dumps(payload, indent=2, ensure_ascii=False).encode()


def train(
    stores: Stores,
    crop_method: str,
    analysis: dict,
    options: TrainOptions = TrainOptions(),
    strangers=None,
) -> tuple[TrainedModel, dict | None]:
    """The workflow's steps in one process: gather, fit (``strangers``: see fit), evaluate
    FaceNet and the nearest face on the held-out part (each run stored), publish.
    ``analysis``: how the faces were made (FaceAnalyser.describe). Returns the model and
    FaceNet's held-out evaluation (core.metrics.evaluate_predictions; None when
    ``options.test_size`` is 0)."""
    training_set = gather(stores.catalog, crop_method)
    model, test_index = fit(training_set, options, analysis, strangers)
    if not len(test_index):
        return publish(stores, model, training_set, {})[0], None
    runs = evaluate(model, training_set, stores.faces.get)
    _, faces = held_out(model, training_set, stores.faces.get)
    figures = {name: summarise(run, faces, model.metadata["labels"]) for name, run in runs.items()}
    for name, run in runs.items():
        save_run(stores.reports, model.model_id, run, figures[name])
    model, _ = publish(stores, model, training_set, runs)
    return model, figures["facenet"]["evaluation"]


class CurrentModel:
    """The published model, loaded once per process and reloaded when the catalog points at
    another artifact (a newer model, or the same model id published again); call it for the
    model (ModelNotFound before the first training, ModelIntegrityError when its artifact is
    not the one its record hashed)."""

    def __init__(self, catalog: Catalog, models: BlobStore):
        self.catalog, self.models = catalog, models
        self._model: TrainedModel | None = None
        self._loaded: tuple[str, str] = ("", "")  # (artifact key, sha256) of _model

    def __call__(self) -> TrainedModel:
        record = self.catalog.current_model()
        if record is None:
            raise ModelNotFound("no trained model yet; run `facerec train` first")
        pointer = (record.artifact_key, record.sha256)
        if self._model is None or self._loaded != pointer:
            self._model = load_model(self.models, record.artifact_key, record.sha256)
            self._loaded = pointer
        return self._model
