"""Scheduled (EventBridge): find the labelled crops whose embedding, vector or FaceId the
event chain did not make, and orphan crops, and repair them with the chain's own steps
(flows.reconcile). Returns and logs the counts (``found``, ``repaired`` per gap, ``failed``);
crop keys are logged only as hashes."""

from __future__ import annotations

from facerec.flows.chain import embed_crop, index_crop, store_vectors
from facerec.flows.reconcile import delete_orphan, find_gaps, repair
from functions.logs import get_logger, key_ref, log
from functions.services import load_at_init, services

logger = get_logger(__name__)
load_at_init()  # in Lambda: MTCNN and FaceNet load in the init phase


def handler(event: dict, context=None) -> dict:
    app = services()
    catalog, stores, collection = app.catalog, app.stores, app.collection

    def reindex(key: str):
        catalog.release_indexing(collection.collection_id, key)  # its claim says indexed
        etag = stores.faces.etag(key) or ""
        return index_crop(catalog, catalog, stores.faces, collection, stores.face_index, key, etag)

    steps = {
        "embedding": lambda key: embed_crop(
            catalog, stores.faces, lambda: app.analyser.embedder, key, force=True
        ),
        "vector": lambda key: store_vectors(catalog, stores.vectors, key),
        "face_id": reindex,
        "orphan": delete_orphan(stores),
    }
    result = repair(find_gaps(stores, collection.collection_id), steps)
    failed = [{**item, "crop_key": key_ref(item["crop_key"])} for item in result["failed"]]
    log(logger, "reconciled", found=result["found"], repaired=result["repaired"], failed=failed)
    return {**result, "failed": failed}
