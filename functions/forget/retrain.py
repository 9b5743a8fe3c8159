"""Forget step 3, when the current model knew the person: the trainings still running are
stopped (they may hold the person's faces) and their lock released, and the training
workflow started with the deleted model's options (Services.retrain); then the retraining
the forget owed is settled (flows.forget.retrained). State out: ``deleted`` with
``retraining`` (the new execution's ARN) and ``stopped_trainings``."""

from __future__ import annotations

from facerec.core.settings import TrainOptions
from facerec.flows.forget import retrained
from functions.logs import get_logger, log
from functions.services import services

logger = get_logger(__name__)


def handler(state: dict, context=None) -> dict:
    app = services()
    started = app.retrain(TrainOptions(**state["retrain_options"]))
    retrained(app.stores)
    log(logger, "retraining started", stopped=len(started["stopped_trainings"]))
    return {**state, "deleted": {**state["deleted"], **started}}
