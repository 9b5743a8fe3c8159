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
    if not force and catalog.embedding_model_of(face) == catalog.embedding_model:
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
    older one; a FaceId is written to the table only by its claimant."""
    face = _catalogued(catalog, crop_key)
    if face.person is None:
        return StepResult("skipped", "not the labelled face of its photo")
    claim = claims.claim_indexing(collection.collection_id, crop_key, etag)
    if claim is None:
        state = claims.indexing_state(collection.collection_id, crop_key) or {}
        return StepResult("duplicate", state.get("face_id", state.get("state", "")))
    if claim.get("replaces"):
        collection.delete([claim["replaces"]])
        table.delete(claim["replaces"])
    external = external_image_id(crop_key)
    try:
        indexed = collection.index(faces.get(crop_key), external)
    except FaceNotIndexed as error:
        claims.finish_indexing(claim, "refused", reason=str(error))
        return StepResult("refused", str(error))
    row = IndexRow(
        indexed.face_id, face.person, face.photo_key, crop_key, external, collection.collection_id
    )
    table.put(row)
    if not claims.finish_indexing(claim, "indexed", indexed.face_id):
        collection.delete([indexed.face_id])  # another invocation took the claim over
        table.delete(indexed.face_id)
        return StepResult("superseded")
    return StepResult("indexed", indexed.face_id)


def unindex_crop(
    claims: IndexClaims, collection: FaceCollection, table: FaceIndex, crop_key: str
) -> StepResult:
    """A deleted crop's FaceIds leave the collection and the table (found through the rows
    of the person its folder names), and its indexing claim is released, so the same crop
    written again is indexed again."""
    person, _ = split_ingest_key(crop_key)
    rows = table.for_crop(person, crop_key, collection.collection_id)
    if rows:
        collection.delete([row.face_id for row in rows])
    for row in rows:
        table.delete(row.face_id)
    claims.release_indexing(collection.collection_id, crop_key)
    return StepResult("deleted", f"{len(rows)} FaceIds")


def reindex_batch(
    items: Iterable[tuple[str, str]],
    reindex: Callable[[str, str], StepResult],
    permanent: Callable[[Exception], str | None],
) -> dict:
    """``reindex(key, etag)`` for each crop of a batch. A crop that fails for good (a
    FaceRecError, or an error ``permanent`` gives a reason for) is listed in ``failed`` and
    the batch goes on; any other error propagates, so the workflow retries the batch.
    Returns ``{"processed", "failed": [{"key", "reason"}], "statuses": {status: count}}``."""
    processed, failed, statuses = 0, [], {}
    for key, etag in items:
        try:
            result = reindex(key, etag)
        except FaceRecError as error:
            failed.append({"key": key, "reason": f"{error.code}: {error}"})
            continue
        except Exception as error:
            reason = permanent(error)
            if reason is None:
                raise
            failed.append({"key": key, "reason": reason})
            continue
        processed += 1
        statuses[result.status] = statuses.get(result.status, 0) + 1
    return {"processed": processed, "failed": failed, "statuses": statuses}


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
    return (
        f"no FaceId in the face index table for collection {collection_id} "
        f"(indexing state: {state.get('state', 'unknown')})"
    )
