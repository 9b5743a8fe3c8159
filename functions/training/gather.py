"""Training step 1: every labelled face's embedding, as one object in the models bucket.

First input: ``{"seed": 42, "test_size": 0.25}`` (both optional; also ``C``, ``select_c``
and ``far``, the false-accept rate of the "unknown" threshold: core.settings.TrainOptions).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from facerec.core.errors import NotEnoughData
from facerec.core.settings import TrainOptions
from facerec.flows.train import gather
from functions.logs import get_logger, log
from functions.services import services

logger = get_logger(__name__)


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
    run_id = state.get("run_id") or (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    )
    faces = gather(app.catalog, app.settings.crop_method)
    key = f"training/{run_id}/embeddings.npz"
    app.stores.models.put(key, faces.to_bytes())
    found = {"faces": len(faces), "people": len(set(faces.labels.tolist()))}
    log(logger, "embeddings gathered", run_id=run_id, **found)
    return {**state, "run_id": run_id, "embeddings_key": key, **found}
