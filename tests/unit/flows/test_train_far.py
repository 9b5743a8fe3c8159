"""One false-accept rate (``TrainOptions.far``, ``facerec train --far``) calibrates both
engines: FaceNet's open-set threshold and the nearest engine's, kept in the model's metadata
and read back by the local nearest engine (CatalogIdentifier) and the cloud's
(VectorNearest); ``train(..., strangers)`` calibrates both on faces of people never
enrolled instead. Synthetic people in a real SQLite catalog."""

from __future__ import annotations

import dataclasses

import pytest

from facerec.core.errors import ModelNotFound, NotEnoughData
from facerec.core.records import PhotoRecord
from facerec.core.settings import DEFAULT_FAR, TrainOptions
from facerec.engines.gallery import Gallery
from facerec.engines.nearest import CatalogIdentifier, model_calibration
from facerec.engines.openset import (
    HELD_OUT_STRANGERS,
    LEAVE_ONE_PERSON_OUT,
    calibrate,
    calibrated_threshold,
    min_stranger_faces,
    open_set_scores,
)
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
        lambda: model_calibration(current),
    )
    with pytest.raises(ModelNotFound):
        current()
    assert model_calibration(current) == (DEFAULT_FAR, None)  # before the first training
    assert nearest().calibration_.far_target == DEFAULT_FAR

    thresholds = {}
    for far in (0.05, 0.001):
        model, _ = train(stores, "aligned", ANALYSIS, TrainOptions(test_size=0.0, far=far))
        assert current().model_id == model.model_id  # published: the one engines read
        meta = model.metadata
        assert meta["open_set"]["far_target"] == meta["nearest"]["far_target"] == far
        assert TrainOptions.of(meta).far == far  # a retraining keeps it
        identifier = nearest()  # rebuilt: the far changed, the catalog did not
        assert model_calibration(current)[0] == identifier.calibration_.far_target == far
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


def stranger_vectors(count: int):
    """(count, 128) faces of people never enrolled (their own centres, same spread)."""
    _, _, vectors, _ = people(count, 1, seed=7, spread=1.0)
    return vectors


def expected_threshold(gallery: Gallery, strangers, far: float) -> float:
    """The package's rule by hand: each stranger's open-set score for its nearest enrolled
    person, then the rank far * (S + 1) of those scores."""
    nearest_people = gallery.search(strangers, 1)[0][:, 0]
    return calibrated_threshold(open_set_scores(gallery, strangers, nearest_people), far)


def test_stranger_faces_calibrate_both_engines_on_them_and_the_metadata_says_so(stores):
    strangers = stranger_vectors(120)  # min_stranger_faces(0.1) == 100
    options = TrainOptions(test_size=0.25, far=0.1)
    model, _ = train(stores, "aligned", ANALYSIS, options, strangers)
    meta = model.metadata
    everyone = gather(stores.catalog, "aligned")
    galleries = {
        "open_set": model.open_set.gallery_,  # the training part
        "nearest": Gallery(everyone.embeddings.shape[1]).add(
            everyone.face_ids, everyone.labels, everyone.embeddings
        ),
    }
    for engine, gallery in galleries.items():
        assert meta[engine]["method"] == HELD_OUT_STRANGERS, engine
        assert meta[engine]["impostor_scores"] == 120, engine
        assert meta[engine]["far_target"] == 0.1, engine
        assert meta[engine]["threshold"] == pytest.approx(
            expected_threshold(gallery, strangers, 0.1), abs=1e-6
        ), engine
    assert model.open_set.calibration_.threshold == meta["open_set"]["threshold"]
    current = CurrentModel(stores.catalog, stores.models)
    assert current().model_id == model.model_id
    # the local nearest engine answers with that threshold (its catalog has no strangers)
    nearest = CatalogIdentifier(
        stores.catalog,
        lambda: labelled_faces(stores.catalog, "aligned"),
        lambda: model_calibration(current),
    )
    assert nearest().calibration_.threshold == meta["nearest"]["threshold"]
    assert nearest().calibration_.method == HELD_OUT_STRANGERS

    # The same faces and options without strangers: leave-one-person-out, another model.
    without, _ = train(stores, "aligned", ANALYSIS, options)
    assert without.model_id != model.model_id
    for engine in ("open_set", "nearest"):
        calibration = without.metadata[engine]
        assert calibration["method"] == LEAVE_ONE_PERSON_OUT, engine
        assert calibration["threshold"] != meta[engine]["threshold"], engine
    assert without.metadata["nearest"]["impostor_scores"] == len(everyone)
    assert without.metadata["open_set"]["threshold"] == pytest.approx(
        calibrate(without.open_set.gallery_, 0.1, seed=options.seed).threshold
    )


def test_too_few_stranger_faces_are_refused_before_anything_is_published(stores):
    assert [min_stranger_faces(far) for far in (0.001, 0.01, 0.1, 0.2)] == [10000, 1000, 100, 50]
    with pytest.raises(NotEnoughData, match=r"99 stranger faces found.*at least 100"):
        train(stores, "aligned", ANALYSIS, TrainOptions(far=0.1), stranger_vectors(99))
    with pytest.raises(ValueError, match=r"strangers must be \(S, 128\)"):
        train(stores, "aligned", ANALYSIS, TrainOptions(far=0.1), stranger_vectors(120)[:, :64])
    with pytest.raises(ModelNotFound):
        CurrentModel(stores.catalog, stores.models)()
