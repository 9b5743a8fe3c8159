"""Training step 1: the training lock, then every labelled face's embedding, as one object in
the models bucket.

First input: ``{"seed": 42, "test_size": 0.25}`` (both optional; also ``C``, ``select_c``,
``classifier`` ("auto", "svc" or "ovr") and ``far``, the false-accept rate of the "unknown"
threshold: core.settings.TrainOptions).
The workflow's Begin state adds ``execution``: ``{"name": <execution name>, "lease_seconds":
<the state machine's timeout>}``. The execution's name is the run's id and the owner of the
training lock (one training at a time: storage.aws.DynamoCatalog.lock_training), which the
publish step releases, and the TrainingEnded function when the execution fails, times out or
is aborted; a lock left behind expires with the state machine's timeout.
"""

from __future__ import annotations

from datetime import UTC, datetime

from facerec.core.errors import NotEnoughData
from facerec.core.settings import TrainOptions
from facerec.flows.train import gather
from functions.logs import get_logger, log
from functions.services import services

logger = get_logger(__name__)


class TrainingInProgress(Exception):
    """Another execution of the training workflow holds the training lock."""


def handler(state: dict, context=None) -> dict:
    app = services()
    try:
        options = TrainOptions.from_request(state)  # refuse bad options before any work
    except ValueError as error:
        raise NotEnoughData(str(error)) from None
    if not 0 < options.test_size < 1:
        raise NotEnoughData(
            f"test_size must be between 0 and 1 (exclusive): the workflow evaluates the "
            f"held-out part; got {options.test_size}"
        )
    run_id = state["execution"]["name"]
    held = app.catalog.lock_training(run_id, state["execution"]["lease_seconds"])
    if held is not None:
        until = datetime.fromtimestamp(float(held["expires_at"]), UTC).isoformat(timespec="seconds")
        raise TrainingInProgress(
            f"training execution {held['owner']} is running (its lock expires at {until} "
            "unless it ends first): one training at a time; start this one again afterwards"
        )
    faces = gather(app.catalog, app.settings.crop_method)
    key = f"training/{run_id}/embeddings.npz"
    app.stores.models.put(key, faces.to_bytes())
    found = {"faces": len(faces), "people": len(set(faces.labels.tolist()))}
    log(logger, "embeddings gathered", run_id=run_id, **found)
    return {**state, "run_id": run_id, "embeddings_key": key, **found}
