"""Training step 4: Rekognition on the same held-out faces, in the deployment's collection
(flows.train.evaluate_rekognition: their own FaceIds never match, closed set as FaceNet), at
most ``settings.rekognition_evaluation_faces`` of them (a seeded sample: one billed call per
face, at the account's TPS quota); the run goes to the reports bucket."""

from __future__ import annotations

from facerec.flows.evaluate import summarise
from facerec.flows.train import evaluate_rekognition, held_out, save_run
from functions.logs import get_logger, log
from functions.services import services
from functions.training import state as saved

logger = get_logger(__name__)


def handler(state: dict, context=None) -> dict:
    app = services()
    training_set, model, stores = (
        saved.training_set(app, state),
        saved.model(app, state),
        app.stores,
    )
    run = evaluate_rekognition(
        model,
        training_set,
        stores.faces.get,
        app.collection,
        stores.face_index,
        app.catalog,
        app.settings.rekognition_evaluation_faces,
    )
    run.describe["configured_min_similarity"] = app.settings.rekognition_min_similarity
    _, faces = held_out(model, training_set, stores.faces.get)
    figures = summarise(run, faces, model.metadata["labels"])
    key = save_run(stores.reports, model.model_id, run, figures)
    summary = {
        "accuracy": figures["accuracy_all"],
        "faces": figures["held_out_faces"],  # the faces searched
        "held_out_faces": len(faces),
        "key": key,
    }
    log(logger, "rekognition evaluated", model_id=model.model_id, **summary)
    return {**state, "rekognition": summary}
