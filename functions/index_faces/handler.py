"""Faces bucket "Object Created" (a crop PNG) -> Rekognition IndexFaces (one face, quality
filter on) and the FaceId -> person row; "Object Deleted" -> its FaceIds and rows go
(flows.chain). Only the labelled face of a photo is indexed; a duplicate event finds the
claim for the same collection, crop and ETag and does nothing (``duplicate`` when the crop is
indexed or refused, ``in_progress`` while another invocation holds a fresh claim). Any error
propagates, after marking the claim failed, so Lambda's retry indexes the crop, or the event
lands in the dead-letter queue with that error; a crop event that arrives before its catalog
row raises CropNotCatalogued for the same reason."""

from __future__ import annotations

from facerec.flows.chain import index_crop, unindex_crop
from functions.events import object_event
from functions.logs import get_logger, key_ref, log
from functions.services import services

logger = get_logger(__name__)


def handler(event: dict, context=None) -> dict:
    obj = object_event(event)
    app = services()
    if obj.bucket != app.settings.faces_bucket:
        raise ValueError(f"index_faces handles the faces bucket only, not {obj.bucket}")
    catalog, table = app.catalog, app.stores.face_index
    if obj.deleted:
        result = unindex_crop(catalog, app.collection, table, obj.key)
    else:
        faces = app.stores.faces
        result = index_crop(catalog, catalog, faces, app.collection, table, obj.key, obj.etag)
    answer = {"key_ref": key_ref(obj.key), "etag": obj.etag, "status": result.status}
    if result.status in ("indexed", "duplicate"):
        answer["face_id"] = result.detail
    log(logger, "crop indexing", **answer)
    return answer
