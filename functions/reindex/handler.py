"""Distributed Map item processor over the faces bucket: re-embed (with the current weights),
re-store in the vector gallery and re-index (into the current collection) every crop of a
batch. Needed after a change of FaceNet weights, for a new collection with a newer face
model, and to enrol an archive.

Event: ``{"Items": [{"Key", "ETag", "Size"}, ...], "BatchInput": {...}}`` (ItemBatcher) or
one item. Returns ``{"processed": n, "failed": [{"key", "reason"}]}``; a crop that fails for
good does not fail the batch, a throttled call does (the map's retry policy backs off)."""

from __future__ import annotations

from facerec.flows.chain import embed_crop, index_crop, reindex_batch, store_vectors
from facerec.storage.aws import permanent_failure
from functions.events import batch_items
from functions.logs import get_logger, log
from functions.services import services

logger = get_logger(__name__)


def handler(event: dict, context=None) -> dict:
    app = services()
    catalog, stores = app.catalog, app.stores

    def reindex(key: str, etag: str):
        embed_crop(catalog, stores.faces, lambda: app.analyser.embedder, key, force=True)
        store_vectors(catalog, stores.vectors, key)
        return index_crop(
            catalog, catalog, stores.faces, app.collection, stores.face_index, key, etag
        )

    result = reindex_batch(batch_items(event), reindex, permanent_failure)
    log(
        logger,
        "batch reindexed",
        processed=result["processed"],
        failed=len(result["failed"]),
        **result["statuses"],
    )
    return {"processed": result["processed"], "failed": result["failed"]}
