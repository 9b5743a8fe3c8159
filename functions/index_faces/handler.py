"""Faces bucket "Object Created" (a crop PNG) -> Rekognition IndexFaces (one face, quality
filter on) and the FaceId -> person row. Only the labelled face of a photo is indexed; a
duplicate event finds the claim for the same collection, crop and ETag and does nothing."""

from __future__ import annotations

from facerec.chain import index_crop
from functions.events import object_created
from functions.services import get_logger, key_ref, log, services

logger = get_logger(__name__)


def handler(event: dict, context=None) -> dict:
    obj = object_created(event)
    app = services()
    if obj.bucket != app.settings.faces_bucket:
        raise ValueError(f"index_faces handles the faces bucket only, not {obj.bucket}")
    result = index_crop(app.catalog, app.faces, app.collection, app.face_index, obj.key, obj.etag)
    answer = {"key_ref": key_ref(obj.key), "etag": obj.etag, "status": result.status}
    if result.status in ("indexed", "duplicate"):
        answer["face_id"] = result.detail
    log(logger, "crop indexing", **answer)
    return answer
