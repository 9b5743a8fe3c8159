"""Forget step 2: the person removed from every store (flows.forget.forget_person): photos,
crops, quarantined photos, FaceIds and their rows, vectors and centroid, every model that knew
them, then their catalog records (through the person-folder index). State out: ``deleted``
with the counts per store, and ``retrain_options`` when the current model was deleted."""

from __future__ import annotations

from facerec.flows.forget import forget_person
from functions.logs import get_logger, key_ref, log
from functions.services import services

logger = get_logger(__name__)


def handler(state: dict, context=None) -> dict:
    deleted = forget_person(state["person"], services().stores)
    options = deleted.pop("retrain_options", None)
    counts = {name: value for name, value in deleted.items() if isinstance(value, int)}
    log(logger, "person forgotten", person_ref=key_ref(state["person"]), **counts)
    state = {**state, "deleted": {**state.get("deleted", {}), **deleted}}
    return {**state, "retrain_options": options} if options is not None else state
