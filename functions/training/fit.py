"""Training step 2: split, cross-validate, fit the SVC and calibrate "unknown" (flows.train.fit);
the model goes to the models bucket (not yet published)."""

from __future__ import annotations

from facerec.core.settings import TrainOptions
from facerec.flows.train import fit, save_model
from functions.logs import get_logger, log
from functions.services import services
from functions.training import state as saved

logger = get_logger(__name__)


def handler(state: dict, context=None) -> dict:
    app = services()
    options = TrainOptions.from_request(state)
    model, test_index = fit(saved.training_set(app, state), options, app.analysis())
    keys = save_model(app.stores.models, model)
    cv = model.metadata["cv"]
    log(logger, "classifier trained", model_id=model.model_id, cv_accuracy=cv["mean"])
    return {
        **state,
        "model_id": model.model_id,
        "model_key": keys["artifact"],
        "model_sha256": keys["sha256"],
        "test_faces": len(test_index),
        "cv_accuracy": cv["mean"],
    }
