"""Distributed Map item processor over the faces bucket: re-embed (with the current weights),
re-store in the vector gallery and re-index (into the current collection) every crop of a
batch. Needed after a change of FaceNet weights, for a new collection with a newer face
model, and to enrol an archive.

Event: ``{"Items": [{"Key", "ETag", "Size"}, ...], "BatchInput": {...}}`` (ItemBatcher) or
one item. Returns ``{"processed": n, "statuses": {status: count}}``. A throttled call fails
the batch at once (the map's retry policy backs off); a crop that fails for good does not
stop the others, but then the batch fails with BatchFailed (how many failed, and the first
reasons by item number), so the map counts it against its tolerated failures."""

from __future__ import annotations

from facerec.flows.chain import BatchFailed, embed_crop, index_crop, reindex_batch, store_vectors
from facerec.storage.aws import permanent_failure
from functions.events import batch_items
from functions.logs import get_logger, key_ref, log
from functions.services import load_at_init, services

logger = get_logger(__name__)
load_at_init()  # in Lambda: MTCNN and FaceNet load in the init phase


def handler(event: dict, context=None) -> dict:
    app = services()
    catalog, stores = app.catalog, app.stores

    def reindex(key: str, etag: str):
        embed_crop(catalog, stores.faces, lambda: app.analyser.embedder, key, force=True)
        store_vectors(catalog, stores.vectors, key)
        return index_crop(
            catalog, catalog, stores.faces, app.collection, stores.face_index, key, etag
        )

    try:
        result = reindex_batch(batch_items(event), reindex, permanent_failure)
    except BatchFailed as error:
        failed = [
            {"key_ref": key_ref(item["key"]), "reason": item["reason"]} for item in error.failed
        ]
        log(logger, "batch failed", processed=error.outcome["processed"], failed=failed)
        raise
    log(logger, "batch reindexed", processed=result["processed"], **result["statuses"])
    return result
