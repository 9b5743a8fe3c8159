"""Forget a person everywhere a deployment keeps them, and report what was deleted.

Stores are emptied by the person's folder (``<Person>/``) rather than from the catalog's
records, so photos that were never processed, quarantined ones and crops of photos whose
records are gone are found too; the catalog's records go last, so a run that stops half-way
is finished by running it again. Every model that knew the person (its SVC and its open-set
gallery hold their embeddings) is deleted with its reports; the caller retrains on the people
who remain. Running it twice deletes nothing the second time.

Faces of the person in other people's group photos are not the labelled face of those photos
and carry no name: nothing ties them to the person, so they stay.
"""

from __future__ import annotations

import json

from facerec.naming import validate_person_name
from facerec.rekognition import FaceCollection
from facerec.storage.ports import BlobStore, Catalog


def forget_person(
    person: str,
    catalog: Catalog,
    ingest: BlobStore,
    faces: BlobStore,
    quarantine: BlobStore,
    models: BlobStore,
    reports: BlobStore,
    face_index=None,
    collection_client=None,
    vectors=None,
) -> dict:
    """Delete ``person`` (InvalidLabel for a name no photo could carry) from every store.

    Cloud only: ``face_index`` (a FaceIndexTable) and ``collection_client`` (Rekognition)
    delete their FaceIds (DeleteFaces) and rows; ``vectors`` (a VectorGallery) their face
    vectors and centroid. Returns counts per store and the deleted ``models`` (ids) and
    whether the ``current_model`` was one of them."""
    person = validate_person_name(person)
    folder = f"{person}/"
    crop_keys = [face.crop_key for face in catalog.faces(person)]
    deleted: dict = {"person": person}
    if face_index is not None:
        rows = face_index.by_person(person)
        for collection_id in sorted({row.collection_id for row in rows}):
            FaceCollection(collection_client, collection_id).delete(
                [row.face_id for row in rows if row.collection_id == collection_id]
            )
        for row in rows:
            face_index.delete(row.face_id)
        deleted["rekognition_faces"] = len(rows)
    if vectors is not None:
        deleted["face_vectors"] = vectors.delete_faces(crop_keys)
        vectors.delete_centroid(person)
    deleted["photos"] = ingest.purge(folder)
    deleted["crops"] = faces.purge(folder)
    deleted["quarantined"] = _purge_quarantine(quarantine, folder)
    current = catalog.current_model()
    knew = _models_that_knew(person, catalog, models)
    for model_id in knew:
        models.purge(f"{model_id}/")
        reports.purge(f"{model_id}/")
        catalog.delete_model(model_id)
    deleted["models"] = knew
    deleted["current_model"] = current is not None and current.model_id in knew
    deleted.update(catalog.forget_person(person))
    return deleted


def _purge_quarantine(quarantine: BlobStore, folder: str) -> int:
    """Quarantined photos are stored by hash with a JSON reason naming their key: delete the
    reason and the bytes of every one whose key is in ``folder``."""
    purged = 0
    for key in list(quarantine.keys("")):
        if key.endswith(".json") and json.loads(quarantine.get(key)).get("key", "").startswith(
            folder
        ):
            purged += quarantine.purge(key.removesuffix(".json")) > 0
    return purged


def _models_that_knew(person: str, catalog: Catalog, models: BlobStore) -> list[str]:
    """Ids of the registered models and of the stored ones (promoted or not) with ``person``
    among their labels."""
    suffix = "/metadata.json"
    knew = {
        key.removesuffix(suffix)
        for key in models.keys("")
        if key.endswith(suffix) and person in json.loads(models.get(key)).get("labels", [])
    }
    knew |= {
        model.model_id for model in catalog.models() if person in model.metadata.get("labels", [])
    }
    return sorted(knew)
