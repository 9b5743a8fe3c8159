"""Distributed Map item processor over the faces bucket: re-embed (with the current weights),
re-store in the vector gallery and re-index (into the current collection) every crop of a
batch. Needed after a change of
FaceNet weights, for a new collection with a newer face model, and to enrol an archive.

Event: ``{"Items": [{"Key", "ETag", "Size"}, ...], "BatchInput": {...}}`` (ItemBatcher) or
one item. Returns ``{"processed": n, "failed": [{"key", "reason"}]}``; a failed crop does not
fail the batch (the map's failure tolerance counts whole batches)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from facerec.chain import embed_crop, index_crop, store_vectors
from facerec.errors import FaceRecError
from functions.events import batch_items
from functions.services import get_logger, log, services

logger = get_logger(__name__)
RETRYABLE = ("ThrottlingException", "ProvisionedThroughputExceededException", "ServiceUnavailable")


def handler(event: dict, context=None) -> dict:
    app = services()
    processed, failed, statuses = 0, [], {}
    for item in batch_items(event):
        key = item["Key"]
        try:
            embed_crop(app.catalog, app.faces, lambda: app.analyser.embedder, key, force=True)
            store_vectors(app.catalog, app.vector_gallery, key)
            result = index_crop(
                app.catalog, app.faces, app.collection, app.face_index, key, item.get("ETag", "")
            )
        except FaceRecError as error:
            failed.append({"key": key, "reason": f"{error.code}: {error}"})
            continue
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in RETRYABLE:
                raise  # the map's retry policy backs off and runs the batch again
            failed.append({"key": key, "reason": f"{code}: {error.response['Error']['Message']}"})
            continue
        processed += 1
        statuses[result.status] = statuses.get(result.status, 0) + 1
    log(logger, "batch reindexed", processed=processed, failed=len(failed), **statuses)
    return {"processed": processed, "failed": failed}
