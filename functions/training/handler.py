"""The training workflow's steps (Step Functions tasks, in this order):

    gather_embeddings -> train_classifier -> evaluate_facenet -> evaluate_rekognition
    -> publish_model -> write_report

Each receives the whole state and returns it plus its own keys; embeddings, models and
evaluations go to S3 and only their keys travel in the state. First input:
``{"seed": 42, "test_size": 0.25}`` (both optional; also ``C``, ``select_c`` and ``far``, the
false-accept rate of the "unknown" threshold)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from facerec import workflow
from facerec.chain import indexed_crops, not_indexed_reason
from facerec.errors import NotEnoughData
from facerec.models import TrainedModel
from facerec.openset import DEFAULT_FAR
from functions.services import get_logger, log, services

logger = get_logger(__name__)


def _options(state: dict) -> workflow.TrainOptions:
    options = workflow.TrainOptions(
        C=float(state.get("C", 10.0)),
        select_c=bool(state.get("select_c", False)),
        test_size=float(state.get("test_size", 0.25)),
        seed=int(state.get("seed", 42)),
        far=float(state.get("far", DEFAULT_FAR)),
    )
    if not 0 < options.test_size < 1:
        raise NotEnoughData(
            f"test_size must be between 0 and 1 (exclusive); got {options.test_size}"
        )
    return options


def _load(state: dict) -> tuple[workflow.TrainingSet, TrainedModel]:
    app = services()
    training_set = workflow.TrainingSet.from_bytes(app.models.get(state["embeddings_key"]))
    return training_set, TrainedModel.from_bytes(app.models.get(state["model_key"]))


def _save_json(key: str, payload: dict) -> None:
    services().reports.put(key, json.dumps(payload, indent=2, ensure_ascii=False).encode())


def gather_embeddings(state: dict, context=None) -> dict:
    app = services()
    _options(state)
    run_id = state.get("run_id") or (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    )
    training_set = workflow.gather(app.catalog, app.settings.crop_method)
    key = f"training/{run_id}/embeddings.npz"
    app.models.put(key, training_set.to_bytes())
    found = {"faces": len(training_set), "people": len(set(training_set.labels.tolist()))}
    log(logger, "embeddings gathered", run_id=run_id, **found)
    return {**state, "run_id": run_id, "embeddings_key": key, **found}


def train_classifier(state: dict, context=None) -> dict:
    app = services()
    training_set = workflow.TrainingSet.from_bytes(app.models.get(state["embeddings_key"]))
    analysis = workflow.describe_analysis(app.pipeline_settings, app.weights_sha256)
    model, test_index = workflow.fit(training_set, _options(state), analysis)
    keys = workflow.save_model(app.models, model)
    cv = model.metadata["cv"]
    log(logger, "classifier trained", model_id=model.model_id, cv_accuracy=cv["mean"])
    return {
        **state,
        "model_id": model.model_id,
        "model_key": keys["artifact"],
        "test_faces": len(test_index),
        "cv_accuracy": cv["mean"],
    }


def evaluate_facenet(state: dict, context=None) -> dict:
    training_set, model = _load(state)
    summaries = {}
    for engine, evaluate in (
        ("facenet", workflow.evaluate_facenet),
        ("nearest", workflow.evaluate_nearest),
    ):
        evaluation = evaluate(model, training_set)
        key = f"{model.model_id}/{engine}-evaluation.json"
        _save_json(key, evaluation)
        summaries[engine] = {
            "accuracy": evaluation["accuracy"],
            "faces": evaluation["faces"],
            "key": key,
        }
        log(logger, f"{engine} evaluated", model_id=model.model_id, **summaries[engine])
    return {**state, **summaries}


def evaluate_rekognition(state: dict, context=None) -> dict:
    app = services()
    training_set, model = _load(state)
    engine = app.rekognition_engine(min_similarity=0.0)  # closed set, as FaceNet is evaluated
    indexed = indexed_crops(app.face_index, app.settings.collection_id)
    evaluation = workflow.evaluate_rekognition(engine, app.faces.get, model, training_set, indexed)
    evaluation["face_model_version"] = app.collection.face_model_version()
    evaluation["configured_min_similarity"] = app.settings.rekognition_min_similarity
    key = f"{model.model_id}/rekognition-evaluation.json"
    _save_json(key, evaluation)
    summary = {"accuracy": evaluation["accuracy"], "faces": evaluation["faces"], "key": key}
    log(logger, "rekognition evaluated", model_id=model.model_id, **summary)
    return {**state, "rekognition": summary}


def publish_model(state: dict, context=None) -> dict:
    app = services()
    _, model = _load(state)
    evaluations = {
        engine: json.loads(app.reports.get(state[engine]["key"]))
        for engine in ("facenet", "nearest", "rekognition")
        if engine in state
    }
    _, result = workflow.publish(app.models, app.reports, app.catalog, model, evaluations)
    log(logger, "model published", **result)
    return {**state, **result}


def write_report(state: dict, context=None) -> dict:
    """The comparison report of the model just published (facerec.comparison and
    facerec.report, as `facerec report` writes it): FaceNet's identify path on each held-out
    photo, timed in this function (sized as the identify function), and Rekognition's search
    of each held-out crop in the collection, the held-out crops' own FaceIds excluded as in
    evaluate_rekognition. Puts ``<model_id>/comparison.html`` and ``.json`` into the reports
    bucket. It runs after publish_model, so its failure never holds a model back, and the
    report says whether the model was promoted."""
    from facerec.comparison import (
        DEFAULT_LAMBDA_MEMORY_MB,
        MEASURED_LOCALLY,
        collection_gallery,
        compare,
        split_faces,
    )
    from facerec.report import PUBLICATION, SECTIONS, render

    app = services()
    model = TrainedModel.from_bytes(app.models.get(state["model_key"]))
    collection_id = app.settings.collection_id
    training, held_out = split_faces(app.pipeline.labelled_faces(), model)
    gallery = collection_gallery(
        collection_id,
        indexed_crops(app.face_index, collection_id),
        training,
        held_out,
        lambda crop_key: not_indexed_reason(app.catalog, collection_id, crop_key),
    )
    memory_mb = app.settings.function_memory_mb
    comparison = compare(
        app.pipeline,
        model,
        app.rekognition_engine(min_similarity=0.0),  # closed set, as evaluate_rekognition
        gallery,
        memory_mb or DEFAULT_LAMBDA_MEMORY_MB,
        measured_in=(
            f"the training workflow's write_report Lambda function at {memory_mb} MB"
            if memory_mb
            else MEASURED_LOCALLY
        ),
    )
    comparison["publication"] = {
        "promoted": state["promoted"],
        "reason": state["reason"],
        "evaluation_key": state["report_key"],
    }
    html, numbers = render(comparison, app.faces.get, sections=(PUBLICATION, *SECTIONS))
    keys = {
        "report_html_key": f"{model.model_id}/comparison.html",
        "report_json_key": f"{model.model_id}/comparison.json",
    }
    app.reports.put(keys["report_html_key"], html.encode())
    _save_json(keys["report_json_key"], numbers)
    ran = {name: engine["ran"] for name, engine in numbers["engines"].items()}
    log(logger, "report written", model_id=model.model_id, faces=len(held_out), ran=ran)
    return {**state, **keys}
