"""Faces bucket "Object Created" (a crop PNG) -> its FaceNet embedding in the catalog, and
(for the labelled face of a photo) in the S3 Vectors gallery with its person's centroid.

align_faces already embeds every face it crops (it needs the embeddings to choose the
labelled face of a photo with several faces), so this function only embeds a crop whose face
has no embedding from the current weights; FaceNet loads only then. A crop whose photo is not
catalogued yet raises CropNotCatalogued, and the asynchronous retry finds it."""

from __future__ import annotations

from facerec.chain import embed_crop, store_vectors
from functions.events import object_created
from functions.services import get_logger, key_ref, log, services

logger = get_logger(__name__)


def handler(event: dict, context=None) -> dict:
    obj = object_created(event)
    app = services()
    if obj.bucket != app.settings.faces_bucket:
        raise ValueError(f"embed_faces handles the faces bucket only, not {obj.bucket}")
    result = embed_crop(app.catalog, app.faces, lambda: app.analyser.embedder, obj.key)
    stored = store_vectors(app.catalog, app.vector_gallery, obj.key)
    answer = {
        "key_ref": key_ref(obj.key),
        "etag": obj.etag,
        "status": result.status,
        "vectors": stored.status,
    }
    log(logger, "crop embedding", **answer)
    return answer
