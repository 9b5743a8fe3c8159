"""What the training steps pass between them: keys in the state, the objects in S3."""

from __future__ import annotations

import json

from facerec.engines.facenet import TrainedModel
from facerec.flows.evaluate import EngineRun
from facerec.flows.train import TrainingSet, load_model
from functions.services import Services


def training_set(app: Services, state: dict) -> TrainingSet:
    """The embeddings the gather step stored (``embeddings_key``)."""
    return TrainingSet.from_bytes(app.stores.models.get(state["embeddings_key"]))


def model(app: Services, state: dict) -> TrainedModel:
    """The model the fit step stored (``model_key``), refused (ModelIntegrityError) unless its
    sha256 is the one the fit step recorded (``model_sha256``)."""
    return load_model(app.stores.models, state["model_key"], state["model_sha256"])


def runs(app: Services, state: dict) -> dict[str, EngineRun]:
    """The runs the evaluation steps stored (``state[engine]["key"]``), by engine."""
    return {
        name: EngineRun.from_dict(json.loads(app.stores.reports.get(state[name]["key"])))
        for name in ("facenet", "nearest", "rekognition")
        if name in state
    }
