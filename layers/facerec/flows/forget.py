"""Forget a person everywhere a deployment keeps them, and report what was deleted.

Two steps, each idempotent, in this order (the cloud runs them as a Step Functions workflow,
the embedded default one after the other):

1. ``forget_group_faces``: the person's faces in other people's photos. Those faces carry no
   name; they are found by the current model's open-set identification (its gallery, with
   the person's enrolled faces put in when it was trained without them, and its calibrated
   threshold): every unlabelled face it answers as the person loses its crop and record. The
   other person's upload itself is theirs and stays.
2. ``forget_person``: the stores are emptied by the person's folder (``<Person>/``), so photos
   that were never processed, crops of photos whose records are gone and quarantined photos
   (kept under their person's folder too) are found; every model that knew the person
   (its SVC and its open-set gallery hold their embeddings) with its reports; the catalog's
   records last (found through an index on the person, never a scan), so a run that stops
   half-way is finished by running it again.

When the current model was one of those deleted, ``forget`` retrains on the people who remain
(in process locally; the workflow's Retrain step in the cloud). The intent to retrain is
written (``RETRAINING``) before the model is deleted and removed once the training has
started, so a forget stopped in between retrains when it is run again. Running it twice
deletes nothing the second time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from facerec.core.errors import ModelIntegrityError
from facerec.core.naming import validate_person_name
from facerec.core.settings import TrainOptions
from facerec.flows.train import load_model
from facerec.storage.ports import BlobStore, Catalog, Stores

# In the models store: the options of a current model a forget deleted, until the training
# that replaces it has started; a forget stopped in between retrains when run again.
RETRAINING = "retraining.json"


def forget(stores: Stores, person: str, retrain: Callable[[TrainOptions], dict]) -> dict:
    """Forget ``person`` (both steps); when the current model knew them, ``retrain(the
    deleted model's options)`` and add what it returns (e.g. the new model's id)."""
    deleted = forget_group_faces(person, stores)
    deleted.update(forget_person(person, stores))
    options = deleted.pop("retrain_options", None)
    if options is not None:
        deleted.update(retrain(TrainOptions(**options)))
        retrained(stores)
    return deleted


def forget_group_faces(person: str, stores: Stores) -> dict:
    """Delete the crops and records of the unlabelled faces (in photos outside the person's
    folder) that the current model identifies as ``person`` -> ``{"person",
    "group_photo_faces": count}``; ``group_photo_faces_unchecked`` says why none could be
    looked for (no trained model to identify with)."""
    person = validate_person_name(person)
    deleted: dict = {"person": person, "group_photo_faces": 0}
    record = stores.catalog.current_model()
    try:
        model = record and load_model(stores.models, record.artifact_key, record.sha256)
    except (FileNotFoundError, ModelIntegrityError) as error:
        deleted["group_photo_faces_unchecked"] = f"the current model cannot be used: {error}"
        return deleted
    if model is None or model.open_set is None:
        deleted["group_photo_faces_unchecked"] = "no trained model to identify faces with"
        return deleted
    enrolled = stores.catalog.faces(person)
    others = [
        face
        for face in stores.catalog.unlabelled_faces()
        if not face.photo_key.startswith(f"{person}/")
    ]
    if not enrolled or not others:
        return deleted
    gallery = model.open_set.gallery_
    gallery.remove_label(person)  # the person as they are enrolled now
    gallery.add(
        [f"forget:{face.face_id}" for face in enrolled],
        [person] * len(enrolled),
        np.stack([face.embedding for face in enrolled]),
    )
    labels, _ = model.open_set.predict_with_score(np.stack([face.embedding for face in others]))
    matched = [face for face, label in zip(others, labels, strict=True) if label == person]
    for face in matched:
        stores.faces.delete(face.crop_key)
    deleted["group_photo_faces"] = stores.catalog.delete_faces(matched)
    return deleted


def forget_person(person: str, stores: Stores) -> dict:
    """Delete ``person`` (InvalidLabel for a name no photo could carry) from every store.

    In the cloud the FaceIds (DeleteFaces, in every collection that holds them) and their
    rows go, and the person's face vectors and centroid. Returns counts per store, the
    deleted ``models`` (ids), whether the ``current_model`` was one of them, and the options
    to retrain with (``retrain_options``) while a retraining is owed (``retrained`` settles
    it)."""
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
    deleted["current_model"] = current is not None and current.model_id in knew
    if deleted["current_model"]:  # the intent first: a stop after the deletion keeps it
        options = asdict(TrainOptions.of(current.metadata))
        stores.models.put(RETRAINING, json.dumps(options).encode())
    for model_id in knew:  # the record first: no record ever points at deleted files
        catalog.delete_model(model_id)
        stores.models.purge(f"{model_id}/")
        stores.reports.purge(f"{model_id}/")
    deleted["models"] = knew
    deleted.update(catalog.forget_person(person))
    if stores.models.exists(RETRAINING):  # this forget's, or one stopped before retraining
        deleted["retrain_options"] = json.loads(stores.models.get(RETRAINING))
    return deleted


def retrained(stores: Stores) -> None:
    """The retraining a forget asked for has started (or finished): its intent is done."""
    stores.models.delete(RETRAINING)


def found_anything(deleted: dict) -> bool:
    """Whether a ``forget_person`` result deleted anything: False for a name never enrolled
    (or forgotten before), which is still a success: the person is gone, as asked."""
    return any(
        value
        for name, value in deleted.items()
        if name not in ("person", "group_photo_faces_unchecked")
    )


def _purge_quarantine(quarantine: BlobStore, folder: str) -> int:
    """Delete the quarantined photos under ``folder`` (``<sha256>.bin`` and its reason
    ``<sha256>.json``; a photo refused unread has only the reason) -> how many photos."""
    photos = {key.rsplit(".", 1)[0] for key in quarantine.keys(folder)}
    quarantine.purge(folder)
    return len(photos)


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
