"""Faces bucket "Object Created" (a crop PNG) -> its FaceNet embedding in the catalog and, for
the labelled face of a photo, its vector and its person's centroid in S3 Vectors; "Object
Deleted" -> the crop's vector goes and the centroid is rewritten (flows.chain).

align_faces already embeds every face it crops, so FaceNet runs only for a crop without an
embedding from the current network (in Lambda it loads in the init phase all the same). A
crop whose photo is not catalogued yet raises CropNotCatalogued, and the asynchronous retry
finds it."""

from __future__ import annotations

from facerec.flows.chain import embed_crop, store_vectors, unstore_vectors
from functions.events import object_event
from functions.logs import get_logger, key_ref, log
from functions.services import load_at_init, services

logger = get_logger(__name__)
load_at_init()  # in Lambda: MTCNN and FaceNet load in the init phase


def handler(event: dict, context=None) -> dict:
    obj = object_event(event)
    app = services()
    if obj.bucket != app.settings.faces_bucket:
        raise ValueError(f"embed_faces handles the faces bucket only, not {obj.bucket}")
    answer = {"key_ref": key_ref(obj.key), "etag": obj.etag}
    if obj.deleted:
        answer["vectors"] = unstore_vectors(app.catalog, app.stores.vectors, obj.key).status
    else:
        embedder = lambda: app.analyser.embedder  # noqa: E731 (outside Lambda: loaded when needed)
        answer["status"] = embed_crop(app.catalog, app.stores.faces, embedder, obj.key).status
        answer["vectors"] = store_vectors(app.catalog, app.stores.vectors, obj.key).status
    log(logger, "crop embedding", **answer)
    return answer
