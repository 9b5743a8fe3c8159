"""One false-accept rate (``TrainOptions.far``, ``facerec train --far``) calibrates both
engines: FaceNet's open-set threshold and the nearest engine's, kept in the model's metadata
and read back by the local nearest engine (CatalogIdentifier) and the cloud's
(VectorNearest). Synthetic people in a real SQLite catalog."""

from __future__ import annotations

import dataclasses

import pytest

from facerec.core.errors import ModelNotFound
from facerec.core.records import PhotoRecord
from facerec.core.settings import DEFAULT_FAR, TrainOptions
from facerec.engines.nearest import CatalogIdentifier, model_far
from facerec.flows.train import CurrentModel, gather, train
from facerec.storage.local import local_stores
from facerec.storage.ports import labelled_faces
from tests.factories import face_record, unit_vector
from tests.unit.engines.test_gallery import people

ANALYSIS = {"embedding": {"model_id": "facenet-test"}, "crop": {"method": "aligned"}}


@pytest.fixture
def stores(tmp_path):
    """16 people x 8 one-face photos, same-person cosine about 0.5 (strangers are hard)."""
    stores = local_stores(tmp_path / "workspace")
    _, labels, vectors, _ = people(16, 8, spread=1.0)
    for n, (person, vector) in enumerate(zip(labels, vectors, strict=True)):
        key = f"{person.replace(' ', '_')}/{n:03d}.jpg"
        face = dataclasses.replace(face_record(key, 0, person), embedding=unit_vector(vector))
        photo = PhotoRecord(key, person, f"sha-{key}", "enrolled", "", 1, 160, 160)
        stores.catalog.put_photo(photo, [face])
    return stores


def test_both_engines_are_calibrated_to_the_trained_far_and_the_nearest_engine_reads_it(
    stores,
):
    current = CurrentModel(stores.catalog, stores.models)
    nearest = CatalogIdentifier(
        stores.catalog,
        lambda: labelled_faces(stores.catalog, "aligned"),
        lambda: model_far(current),
    )
    with pytest.raises(ModelNotFound):
        current()
    assert model_far(current) == DEFAULT_FAR  # before the first training
    assert nearest().calibration_.far_target == DEFAULT_FAR

    thresholds = {}
    for far in (0.05, 0.001):
        model, _ = train(stores, "aligned", ANALYSIS, TrainOptions(test_size=0.0, far=far))
        assert current().model_id == model.model_id  # published: the one engines read
        meta = model.metadata
        assert meta["open_set"]["far_target"] == meta["nearest"]["far_target"] == far
        assert TrainOptions.of(meta).far == far  # a retraining keeps it
        identifier = nearest()  # rebuilt: the far changed, the catalog did not
        assert model_far(current) == identifier.calibration_.far_target == far
        assert identifier.calibration_.threshold == meta["nearest"]["threshold"]
        thresholds[far] = identifier.calibration_.threshold
    assert thresholds[0.001] > thresholds[0.05]  # a lower FAR is a stricter threshold
    assert nearest() is nearest()  # nothing changed since: not recalibrated


def test_the_nearest_engines_gallery_is_every_labelled_face(stores):
    model, _ = train(stores, "aligned", ANALYSIS, TrainOptions(test_size=0.25, far=0.05))
    everyone = gather(stores.catalog, "aligned")
    assert model.metadata["split"]["train_faces"] < len(everyone)
    assert f"every labelled face ({len(everyone)})" == model.metadata["nearest"]["gallery"]
    assert model.metadata["nearest"]["impostor_scores"] == len(everyone)
    assert model.metadata["nearest"]["far_target"] == 0.05
