"""What each step of the cloud's event chain does with one object, over the storage ports:

    ingest photo created -> align_photo    (enrol: detect, crop, embed, record; bad photo
                                            -> quarantine; surplus old crops deleted)
    face crop created    -> embed_crop     (FaceNet embedding, only if missing or made by
                                            other weights)
                         -> store_vectors  (labelled face and its person's centroid)
                         -> index_crop     (Rekognition IndexFaces once per crop version,
                                            and its FaceId row)
    face crop deleted    -> unstore_vectors, unindex_crop (its vector, FaceIds and rows go)

Every step is safe to repeat (events are delivered at least once): a photo is recognised by
its key and content hash, a crop's embedding by the weights that made it, and indexing by a
conditional claim per collection, crop and ETag. Callers pass keys, never event shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from facerec.core.errors import CropNotCatalogued, FaceNotIndexed, FaceRecError, ImageTooLarge
from facerec.core.naming import split_ingest_key
from facerec.core.records import FaceRecord
from facerec.flows.enrol import Enrolment, PhotoInput, PhotoOutcome
from facerec.storage.ports import (
    BlobStore,
    CropCatalog,
    FaceCollection,
    FaceIndex,
    IndexClaims,
    VectorStore,
)
from facerec.storage.rekognition import IndexRow, external_image_id
from facerec.vision.embedding import FaceNetEmbedder
from facerec.vision.images import decode_image


@dataclass(frozen=True)
class StepResult:
    """``status`` of one object; ``detail`` a reason or FaceId (no person names)."""

    status: str
    detail: str = ""


def align_photo(enrolment: Enrolment, key: str, size: int | None) -> PhotoOutcome:
    """Enrol the ingest object ``key``. A photo that cannot be used is quarantined with its
    reason; the upload itself stays as it is. Photos over the size limit are not even
    downloaded: only their reason is quarantined."""
    limit = enrolment.settings.image_limits.max_bytes
    if size is not None and size > limit:
        error = f"the file is {size / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB"
        return enrolment.refuse_unread(key, ImageTooLarge(error))
    person, name = split_ingest_key(key)
    data = enrolment.stores.ingest.get(key)
    return enrolment.enrol([PhotoInput(person, name, data)])[0]


def _catalogued(catalog: CropCatalog, crop_key: str) -> FaceRecord:
    face = catalog.face_by_crop(crop_key)
    if face is None:
        raise CropNotCatalogued("no catalogued face holds this crop yet")
    return face


def embed_crop(
    catalog: CropCatalog,
    faces: BlobStore,
    embedder: Callable[[], FaceNetEmbedder],
    crop_key: str,
    force: bool = False,
) -> StepResult:
    """Store the FaceNet embedding of one crop unless it already has one from the current
    weights (align embeds every face it crops). ``embedder()`` is only called when an
    embedding is needed (loading it is slow)."""
    face = _catalogued(catalog, crop_key)
    if not force and face.embedding_model == catalog.embedding_model:
        return StepResult("unchanged", "embedded by the current weights")
    crop = decode_image(faces.get(crop_key))
    catalog.set_embedding(face, embedder().embed(crop[None])[0])
    return StepResult("embedded")


def _centroid(catalog: CropCatalog, vectors: VectorStore, person: str) -> int:
    """Rewrite ``person``'s centroid from the catalog's labelled faces (delete it when none
    is left); returns how many faces it holds."""
    known = catalog.faces(person)
    if known:
        vectors.put_centroid(person, np.stack([face.embedding for face in known]))
    else:
        vectors.delete_centroid(person)
    return len(known)


def store_vectors(catalog: CropCatalog, vectors: VectorStore, crop_key: str) -> StepResult:
    """Put a labelled crop's embedding into the vector store and rewrite its person's
    centroid. PutVectors overwrites by key, so a repeat writes the same vectors again."""
    face = _catalogued(catalog, crop_key)
    if face.person is None:
        return StepResult("skipped", "not the labelled face of its photo")
    vectors.put_faces([crop_key], [face.person], face.embedding[None])
    return StepResult("stored", f"{_centroid(catalog, vectors, face.person)} faces in the centroid")


def unstore_vectors(catalog: CropCatalog, vectors: VectorStore, crop_key: str) -> StepResult:
    """A deleted crop's face vector goes, and the centroid of the person its folder names is
    rewritten from the faces the catalog still holds (its face left the catalog first)."""
    person, _ = split_ingest_key(crop_key)
    vectors.delete_faces([crop_key])
    if not person:
        return StepResult("deleted", "no person folder")
    return StepResult("deleted", f"{_centroid(catalog, vectors, person)} faces in the centroid")


def index_crop(
    catalog: CropCatalog,
    claims: IndexClaims,
    faces: BlobStore,
    collection: FaceCollection,
    table: FaceIndex,
    crop_key: str,
    etag: str,
) -> StepResult:
    """IndexFaces for one labelled crop, at most once per collection and crop version.

    Faces that are not the photo's labelled person are not indexed (nobody to name). The
    claim is a conditional write; a newer version of the crop replaces the FaceId of the
    older one; a FaceId is written to the table only by its claimant. An error after the
    claim marks it failed (with any FaceId the run left) and propagates, so the event's
    retry indexes the crop; ``duplicate`` means the crop version is indexed (or refused),
    ``in_progress`` that another invocation holds a fresh claim on it."""
    face = _catalogued(catalog, crop_key)
    if face.person is None:
        return StepResult("skipped", "not the labelled face of its photo")
    claim = claims.claim_indexing(collection.collection_id, crop_key, etag)
    if claim is None:
        state = claims.indexing_state(collection.collection_id, crop_key) or {}
        if state.get("state") in ("indexed", "refused"):
            return StepResult("duplicate", state.get("face_id", state["state"]))
        return StepResult("in_progress", "another invocation holds a fresh claim")
    leftover = claim.get("replaces", "")  # a FaceId that must leave the collection
    try:
        if leftover:
            collection.delete([leftover])
            table.delete(leftover)
            leftover = ""
        external = external_image_id(crop_key)
        try:
            indexed = collection.index(faces.get(crop_key), external)
        except FaceNotIndexed as error:
            claims.finish_indexing(claim, "refused", reason=str(error))
            return StepResult("refused", str(error))
        leftover = indexed.face_id
        row = IndexRow(
            indexed.face_id,
            face.person,
            face.photo_key,
            crop_key,
            external,
            collection.collection_id,
        )
        table.put(row)
        finished = claims.finish_indexing(claim, "indexed", indexed.face_id)
    except Exception as error:
        _mark_failed(claims, claim, leftover, error)
        raise
    if not finished:
        collection.delete([indexed.face_id])  # another invocation took the claim over
        table.delete(indexed.face_id)
        return StepResult("superseded")
    return StepResult("indexed", indexed.face_id)


def _mark_failed(claims: IndexClaims, claim: dict, face_id: str, error: Exception) -> None:
    """Mark the claim of a run that raised ``error`` as failed, holding ``face_id`` (a FaceId
    the run left in the collection, or ""), so the retry takes it over at once and removes
    that FaceId. Should this write fail too, the claim goes stale after its lease and
    ``error`` still propagates."""
    try:
        claims.finish_indexing(claim, "failed", face_id, reason=f"{type(error).__name__}: {error}")
    except Exception as second:
        error.add_note(f"the indexing claim could not be marked failed: {type(second).__name__}")


def unindex_crop(
    claims: IndexClaims, collection: FaceCollection, table: FaceIndex, crop_key: str
) -> StepResult:
    """A deleted crop's FaceIds leave the collection and the table (found through the rows
    of the person its folder names, and the one a failed indexing run left in its claim),
    and its indexing claim is released, so the same crop written again is indexed again."""
    person, _ = split_ingest_key(crop_key)
    rows = table.for_crop(person, crop_key, collection.collection_id)
    face_ids = {row.face_id for row in rows}
    claim = claims.indexing_state(collection.collection_id, crop_key) or {}
    if claim.get("face_id"):
        face_ids.add(claim["face_id"])
    face_ids = sorted(face_ids)
    if face_ids:
        collection.delete(face_ids)
    for face_id in face_ids:
        table.delete(face_id)
    claims.release_indexing(collection.collection_id, crop_key)
    return StepResult("deleted", f"{len(face_ids)} FaceIds")


class BatchFailed(FaceRecError):
    """Crops of a re-index batch failed for good; the rest of the batch was processed.
    ``failed``: ``[{"item", "key", "reason"}]`` (``item`` counts from 1 in the batch's order),
    ``outcome``: what the rest gave (as reindex_batch returns it). The message names the items
    by number, not by key (keys name people)."""

    code = "batch_failed"
    SHOWN = 3  # reasons in the message

    def __init__(self, failed: list[dict], total: int, outcome: dict):
        self.failed, self.outcome = failed, outcome
        reasons = "; ".join(f"item {f['item']}: {f['reason']}" for f in failed[: self.SHOWN])
        more = f"; {len(failed) - self.SHOWN} more" if len(failed) > self.SHOWN else ""
        super().__init__(
            f"{len(failed)} of {total} crops of the batch failed for good: {reasons}{more}"
        )


def reindex_batch(
    items: Iterable[tuple[str, str]],
    reindex: Callable[[str, str], StepResult],
    permanent: Callable[[Exception], str | None],
) -> dict:
    """``reindex(key, etag)`` for each crop of a batch; returns ``{"processed": n,
    "statuses": {status: count}}``. Any error ``permanent`` gives no reason for (throttling,
    a service briefly failing) propagates at once, so the workflow retries the batch. A crop
    that fails for good (a FaceRecError, or an error ``permanent`` gives a reason for) does not
    stop the batch, but once every crop was tried the batch raises BatchFailed, so the map
    counts it against its tolerated failures and writes it to its results."""
    items = list(items)
    processed, failed, statuses = 0, [], {}
    for number, (key, etag) in enumerate(items, start=1):
        try:
            result = reindex(key, etag)
        except FaceRecError as error:
            failed.append({"item": number, "key": key, "reason": f"{error.code}: {error}"})
            continue
        except Exception as error:
            reason = permanent(error)
            if reason is None:
                raise
            failed.append({"item": number, "key": key, "reason": reason})
            continue
        processed += 1
        statuses[result.status] = statuses.get(result.status, 0) + 1
    outcome = {"processed": processed, "statuses": statuses}
    if failed:
        raise BatchFailed(failed, len(items), outcome)
    return outcome


def indexed_crops(table: FaceIndex, collection_id: str) -> dict[str, str]:
    """FaceId -> crop key for every face of one collection."""
    return {row.face_id: row.crop_key for row in table.rows(collection_id)}


def not_indexed_reason(claims: IndexClaims, collection_id: str, crop_key: str) -> str:
    """Why a labelled crop has no FaceId in the collection, from index_crop's claim."""
    state = claims.indexing_state(collection_id, crop_key)
    if state is None:
        return f"not indexed into collection {collection_id} (no index_faces run recorded)"
    if state.get("state") == "refused":
        return state.get("reason") or "Rekognition refused the crop"
    if state.get("state") == "failed":
        return f"the last indexing run failed ({state.get('reason', '')}); a retry indexes it"
    return (
        f"no FaceId in the face index table for collection {collection_id} "
        f"(indexing state: {state.get('state', 'unknown')})"
    )
