"""Forget a person everywhere a deployment keeps them, and report what was deleted.

Stores are emptied by the person's folder (``<Person>/``) rather than from the catalog's
records, so photos that were never processed, quarantined ones and crops of photos whose
records are gone are found too; the catalog's records go last, so a run that stops half-way
is finished by running it again. Every model that knew the person (its SVC and its open-set
gallery hold their embeddings) is deleted with its reports, and when the current model was
one of them a new one is trained on the people who remain (``forget``: in process locally,
the training workflow in the cloud). Running it twice deletes nothing the second time.

Faces of the person in other people's group photos are not the labelled face of those photos
and carry no name: nothing ties them to the person, so they stay.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from facerec.core.naming import validate_person_name
from facerec.core.settings import TrainOptions
from facerec.storage.ports import BlobStore, Catalog, Stores


def forget(stores: Stores, person: str, retrain: Callable[[TrainOptions], dict]) -> dict:
    """Delete ``person`` everywhere (``forget_person``); when the current model knew them,
    ``retrain(the deleted model's options)`` and add what it returns (e.g. the new model's
    id, or the training execution started)."""
    current = stores.catalog.current_model()
    deleted = forget_person(person, stores)
    if deleted["current_model"]:
        deleted.update(retrain(TrainOptions.of(current.metadata)))
    return deleted


def forget_person(person: str, stores: Stores) -> dict:
    """Delete ``person`` (InvalidLabel for a name no photo could carry) from every store.

    In the cloud the FaceIds (DeleteFaces, in every collection that holds them) and their
    rows go, and the person's face vectors and centroid. Returns counts per store, the
    deleted ``models`` (ids) and whether the ``current_model`` was one of them."""
    person = validate_person_name(person)
    folder = f"{person}/"
    catalog = stores.catalog
    crop_keys = [face.crop_key for face in catalog.faces(person)]
    deleted: dict = {"person": person}
    if stores.face_index is not None:
        rows = stores.face_index.by_person(person)
        for collection_id in sorted({row.collection_id for row in rows}):
            stores.collections(collection_id).delete(
                [row.face_id for row in rows if row.collection_id == collection_id]
            )
        for row in rows:
            stores.face_index.delete(row.face_id)
        deleted["rekognition_faces"] = len(rows)
    if stores.vectors is not None:
        deleted["face_vectors"] = stores.vectors.delete_faces(crop_keys)
        stores.vectors.delete_centroid(person)
    deleted["photos"] = stores.ingest.purge(folder)
    deleted["crops"] = stores.faces.purge(folder)
    deleted["quarantined"] = _purge_quarantine(stores.quarantine, folder)
    current = catalog.current_model()
    knew = _models_that_knew(person, catalog, stores.models)
    for model_id in knew:
        stores.models.purge(f"{model_id}/")
        stores.reports.purge(f"{model_id}/")
        catalog.delete_model(model_id)
    deleted["models"] = knew
    deleted["current_model"] = current is not None and current.model_id in knew
    deleted.update(catalog.forget_person(person))
    return deleted


def found_anything(deleted: dict) -> bool:
    """Whether a ``forget_person`` result deleted anything: False for a name never enrolled
    (or forgotten before), which is still a success: the person is gone, as asked."""
    return any(value for name, value in deleted.items() if name != "person")


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
