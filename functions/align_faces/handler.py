"""Ingest bucket "Object Created" -> detect every face, write each crop to the faces bucket,
record the photo and its faces (with embeddings) in the catalog (flows.chain.align_photo).
A bad photo is quarantined with its reason; the upload itself is never changed. Idempotent
on key + ETag (the catalog's event ledger), and on the photo's content hash behind that."""

from __future__ import annotations

from facerec.flows.chain import align_photo
from functions.events import object_event
from functions.logs import get_logger, key_ref, log
from functions.services import load_at_init, services

logger = get_logger(__name__)
load_at_init()  # in Lambda: MTCNN and FaceNet load in the init phase


def handler(event: dict, context=None) -> dict:
    obj = object_event(event)
    app = services()
    if obj.bucket != app.settings.ingest_bucket or obj.deleted:
        raise ValueError(f"align_faces handles uploads to the ingest bucket only, not {obj.bucket}")
    ref = {"key_ref": key_ref(obj.key), "etag": obj.etag}
    if app.catalog.object_handled(obj.bucket, obj.key, obj.etag):
        log(logger, "duplicate event", **ref, status="duplicate_event")
        return {**ref, "status": "duplicate_event"}
    try:
        outcome = align_photo(app.enrolment, obj.key, obj.size)
    except FileNotFoundError:
        log(logger, "object gone before it was read", **ref, status="gone")
        return {**ref, "status": "gone"}
    app.catalog.mark_object_handled(obj.bucket, obj.key, obj.etag, outcome.status)
    result = {**ref, "status": outcome.status, "faces": outcome.faces, "code": outcome.code}
    log(logger, "photo aligned", **result)
    return result
