"""What each step of the cloud's event chain does with one object, over the storage ports:

    ingest photo -> align_photo   (detect, crop, embed, record; bad photo -> quarantine)
    face crop    -> embed_crop    (FaceNet embedding, only if missing or made by other weights)
                 -> store_vectors (labelled face and its person's centroid into S3 Vectors)
    face crop    -> index_crop    (Rekognition IndexFaces once per crop version + FaceId row)

Every step is safe to repeat (events are delivered at least once): a photo is recognised by
its key and content hash, a crop's embedding by the weights that made it, and indexing by a
conditional claim per collection, crop and ETag. Callers pass keys, never event shapes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facerec.errors import FaceRecError, ImageTooLarge
from facerec.images import decode_image
from facerec.naming import parse_ingest_key
from facerec.pipeline import PhotoInput, PhotoOutcome, Pipeline
from facerec.rekognition import FaceCollection, FaceIndexTable, FaceNotIndexed, IndexRow
from facerec.rekognition import external_image_id as to_external_id
from facerec.storage.aws import DynamoCatalog
from facerec.storage.ports import BlobStore, PhotoRecord


class CropNotCatalogued(FaceRecError):
    """A crop event arrived before its photo's record (align writes crops first): retry."""

    code = "crop_not_catalogued"


@dataclass(frozen=True)
class StepResult:
    """``status`` of one object; ``detail`` a reason or FaceId (no person names)."""

    status: str
    detail: str = ""


def normalise_etag(etag: str) -> str:
    """ListObjectsV2 quotes ETags, EventBridge does not: compare them unquoted."""
    return etag.strip('"')


def split_ingest_key(key: str) -> tuple[str, str]:
    """``<Person>/<photo>`` -> (person, photo name) without validating: the pipeline validates
    and quarantines what is wrong (a key without a folder gets an empty person, a deeper key
    a photo name with a slash)."""
    person, _, name = key.partition("/") if "/" in key else ("", "", key)
    return person, name


def align_photo(pipeline: Pipeline, key: str, size: int | None) -> PhotoOutcome:
    """Enrol the ingest object ``key`` (its crops go to the faces store, its faces and
    embeddings to the catalog). A photo that cannot be used is quarantined with its reason by
    the pipeline; the original stays in the ingest bucket. Photos over the size limit are not
    even downloaded: only their reason is quarantined."""
    person, name = split_ingest_key(key)
    limit = pipeline.settings.image_limits.max_bytes
    if size is not None and size > limit:
        return _refuse_unread(pipeline, key, person, size, limit)
    data = pipeline.ingest.get(key)
    return pipeline.enrol([PhotoInput(person, name, data)])[0]


def _refuse_unread(
    pipeline: Pipeline, key: str, person: str, size: int, limit: int
) -> PhotoOutcome:
    error = ImageTooLarge(f"the file is {size / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB")
    marker = "size-" + hashlib.sha256(key.encode()).hexdigest()
    pipeline.quarantine.put(
        f"{marker}.json",
        json.dumps(
            {"key": key, "code": error.code, "reason": str(error), "bytes_copied": False},
            ensure_ascii=False,
        ).encode(),
    )
    try:
        person, _ = parse_ingest_key(key)
    except FaceRecError:
        return PhotoOutcome(key, person, "rejected", code=error.code, reason=str(error))
    pipeline.catalog.put_photo(PhotoRecord(key, person, marker, "rejected", str(error)), [])
    return PhotoOutcome(key, person, "rejected", code=error.code, reason=str(error))


def embed_crop(
    catalog: DynamoCatalog,
    faces: BlobStore,
    embedder: Callable[[], object],
    crop_key: str,
    force: bool = False,
) -> StepResult:
    """Store the FaceNet embedding of one crop unless it already has one from the current
    weights (align embeds every face it crops). ``embedder()`` returns a FaceNetEmbedder and
    is only called when an embedding is needed (loading it is slow)."""
    face = catalog.face_by_crop(crop_key)
    if face is None:
        raise CropNotCatalogued("no catalogued face holds this crop yet")
    if not force and catalog.embedding_model_of(face) == catalog.embedding_model:
        return StepResult("unchanged", "embedded by the current weights")
    crop = decode_image(faces.get(crop_key))
    embedding = embedder().embed(crop[None])[0]
    catalog.set_embedding(face, embedding)
    return StepResult("embedded")


def store_vectors(catalog: DynamoCatalog, vectors, crop_key: str) -> StepResult:
    """Put a labelled crop's embedding into the vector store (``vectors``, a VectorGallery)
    and rewrite its person's centroid from every labelled face the catalog holds for them.
    PutVectors overwrites by key, so a repeat writes the same vectors again."""
    face = catalog.face_by_crop(crop_key)
    if face is None:
        raise CropNotCatalogued("no catalogued face holds this crop yet")
    if face.person is None:
        return StepResult("skipped", "not the labelled face of its photo")
    vectors.put_faces([crop_key], [face.person], face.embedding[None])
    faces = catalog.faces(face.person)
    vectors.put_centroid(face.person, np.stack([known.embedding for known in faces]))
    return StepResult("stored", f"{len(faces)} faces in the centroid")


def index_crop(
    catalog: DynamoCatalog,
    faces: BlobStore,
    collection: FaceCollection,
    table: FaceIndexTable,
    crop_key: str,
    etag: str,
) -> StepResult:
    """IndexFaces for one labelled crop, at most once per collection and crop version.

    Faces that are not the photo's labelled person are not indexed (nobody to name). The
    claim is a conditional write in the catalog; a newer version of the crop replaces the
    FaceId of the older one; a FaceId is written to the table only by its claimant."""
    face = catalog.face_by_crop(crop_key)
    if face is None:
        raise CropNotCatalogued("no catalogued face holds this crop yet")
    if face.person is None:
        return StepResult("skipped", "not the labelled face of its photo")
    claim = catalog.claim_indexing(collection.collection_id, crop_key, normalise_etag(etag))
    if claim is None:
        state = catalog.indexing_state(collection.collection_id, crop_key) or {}
        return StepResult("duplicate", state.get("face_id", state.get("state", "")))
    if claim.get("replaces"):
        collection.delete([claim["replaces"]])
        table.delete(claim["replaces"])
    external = to_external_id(crop_key)
    try:
        indexed = collection.index(faces.get(crop_key), external)
    except FaceNotIndexed as error:
        catalog.finish_indexing(claim, "refused", reason=str(error))
        return StepResult("refused", str(error))
    table.put(
        IndexRow(
            indexed.face_id,
            face.person,
            face.photo_key,
            crop_key,
            external,
            collection.collection_id,
        )
    )
    if not catalog.finish_indexing(claim, "indexed", indexed.face_id):
        collection.delete([indexed.face_id])  # another invocation took the claim over
        table.delete(indexed.face_id)
        return StepResult("superseded")
    return StepResult("indexed", indexed.face_id)


def indexed_crops(table: FaceIndexTable, collection_id: str) -> dict[str, str]:
    """FaceId -> crop key for every face of one collection."""
    return {row.face_id: row.crop_key for row in table.rows(collection_id)}


def not_indexed_reason(catalog: DynamoCatalog, collection_id: str, crop_key: str) -> str:
    """Why a labelled crop has no FaceId in the collection, from index_crop's claim."""
    state = catalog.indexing_state(collection_id, crop_key)
    if state is None:
        return f"not indexed into collection {collection_id} (no index_faces run recorded)"
    if state.get("state") == "refused":
        return state.get("reason") or "Rekognition refused the crop"
    return (
        f"no FaceId in the face index table for collection {collection_id} "
        f"(indexing state: {state.get('state', 'unknown')})"
    )
