"""Training step 3: FaceNet and the nearest face on the held-out faces (flows.evaluate, the
one evaluation); each run goes to the reports bucket."""

from __future__ import annotations

from facerec.flows.evaluate import summarise
from facerec.flows.train import evaluate, held_out, save_run
from functions.logs import get_logger, log
from functions.services import services
from functions.training import state as saved

logger = get_logger(__name__)


def handler(state: dict, context=None) -> dict:
    app = services()
    training_set, model = saved.training_set(app, state), saved.model(app, state)
    read_crop = app.stores.faces.get
    _, faces = held_out(model, training_set, read_crop)
    runs = {}
    for name, run in evaluate(model, training_set, read_crop).items():
        figures = summarise(run, faces, model.metadata["labels"])
        key = save_run(app.stores.reports, model.model_id, run, figures)
        runs[name] = {"accuracy": figures["accuracy_all"], "faces": len(faces), "key": key}
        log(logger, f"{name} evaluated", model_id=model.model_id, **runs[name])
    return {**state, **runs}
