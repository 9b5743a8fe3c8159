"""Training step 5: the model made current unless the current one is better on the same faces
(flows.train.publish: the comparison and its rule go into the evaluation report); with
FaceNet's and Rekognition's runs, the hybrid's routing threshold goes into the model. Then the
training lock is released: the report step that follows writes only this model's reports."""

from __future__ import annotations

from facerec.flows.train import publish
from functions.logs import get_logger, log
from functions.services import services
from functions.training import state as saved

logger = get_logger(__name__)


def handler(state: dict, context=None) -> dict:
    app = services()
    training_set, model = saved.training_set(app, state), saved.model(app, state)
    _, result = publish(app.stores, model, training_set, saved.runs(app, state))
    released = app.catalog.unlock_training(state["run_id"])
    log(logger, "model published", lock_released=released, **result)
    return {**state, **result}
