"""Training step 5: the evaluation report, then the model made current if it is not worse;
with FaceNet's and Rekognition's runs, the hybrid's routing threshold goes into the model
(flows.train.publish)."""

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
    log(logger, "model published", **result)
    return {**state, **result}
