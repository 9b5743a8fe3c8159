"""Forget step 1: the person's faces in other people's photos (flows.forget.forget_group_faces:
unlabelled faces the current model identifies as the person lose their crop and record).
State in: ``{"person"}``; out: the state with ``deleted`` holding ``group_photo_faces``."""

from __future__ import annotations

from facerec.flows.forget import forget_group_faces
from functions.logs import get_logger, key_ref, log
from functions.services import services

logger = get_logger(__name__)


def handler(state: dict, context=None) -> dict:
    deleted = forget_group_faces(state["person"], services().stores)
    log(
        logger,
        "group photo faces forgotten",
        person_ref=key_ref(state["person"]),
        **_counts(deleted),
    )
    return {**state, "deleted": {**state.get("deleted", {}), **deleted}}


def _counts(deleted: dict) -> dict:
    return {name: value for name, value in deleted.items() if isinstance(value, int)}
