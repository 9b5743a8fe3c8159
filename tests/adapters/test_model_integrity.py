"""A published model is loaded only when its artifact's sha256 is the one recorded when it was
published: locally (SQLite catalog, folder store) and in the cloud (DynamoDB pointer, S3)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import sqlite3
from types import SimpleNamespace

import boto3
import numpy as np
import pytest
from moto import mock_aws

from facerec.core.errors import ModelIntegrityError
from facerec.core.records import PhotoRecord
from facerec.core.settings import TrainOptions
from facerec.flows.train import CurrentModel, fit, gather, model_keys, publish, save_model
from facerec.storage.aws import DynamoCatalog, S3BlobStore
from facerec.storage.local import SqliteCatalog, local_stores
from functions.training import state
from tests.factories import face_record, unit_vector
from tests.support import ENV, REGION, create_resources

ANALYSIS = {"embedding": {"model_id": "facenet-test"}, "crop": {"method": "aligned"}}


def enrol(stores, people=("Ada", "Bob", "Cy"), faces=6) -> None:
    """``faces`` one-face photos per person, each about 0.95 (cosine) from the person's centre."""
    rng = np.random.default_rng(0)
    for person in people:
        centre = unit_vector(rng.standard_normal(128))
        for number in range(faces):
            key = f"{person}/{number:02d}.jpg"
            embedding = unit_vector(centre + 0.03 * rng.standard_normal(128))
            face = dataclasses.replace(face_record(key, 0, person), embedding=embedding)
            photo = PhotoRecord(key, person, f"sha-{key}", "enrolled", "", 1, 160, 160)
            stores.catalog.put_photo(photo, [face])


def published(stores):
    """Train on everything and publish -> the published model."""
    model, _ = fit(gather(stores.catalog, "aligned"), TrainOptions(test_size=0.0), ANALYSIS)
    return publish(stores, model, gather(stores.catalog, "aligned"), {})[0]


def tamper(blobs, key: str) -> None:
    data = bytearray(blobs.get(key))
    data[len(data) // 2] ^= 0x01
    blobs.put(key, bytes(data))


@pytest.fixture
def stores(tmp_path):
    stores = local_stores(tmp_path / "workspace")
    enrol(stores)
    return stores


@pytest.fixture
def cloud_stores(tmp_path, monkeypatch):
    """The catalog table and the models bucket in moto; folders for the other stores."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        create_resources(session)
        stores = dataclasses.replace(
            local_stores(tmp_path / "workspace"),
            catalog=DynamoCatalog(session.resource("dynamodb"), ENV["CATALOG_TABLE"]),
            models=S3BlobStore(session.client("s3"), ENV["MODELS_BUCKET"]),
        )
        enrol(stores)
        yield stores


def test_the_published_hash_is_recorded_and_the_genuine_model_loads(stores):
    model = published(stores)
    key = stores.catalog.current_model().artifact_key
    digest = hashlib.sha256(stores.models.get(key)).hexdigest()
    assert key == model_keys(model.model_id, digest)["artifact"]
    assert stores.catalog.current_model().sha256 == digest
    metadata = json.loads(stores.models.get(model_keys(model.model_id)["metadata"]))
    assert (metadata["artifact_key"], metadata["artifact_sha256"]) == (key, digest)
    assert CurrentModel(stores.catalog, stores.models)().model_id == model.model_id


def test_a_tampered_byte_is_refused_naming_the_file(stores):
    published(stores)
    key = stores.catalog.current_model().artifact_key
    tamper(stores.models, key)
    with pytest.raises(ModelIntegrityError, match=rf"{key}.*does not match the sha256"):
        CurrentModel(stores.catalog, stores.models)()


def test_a_pickle_in_place_of_the_model_is_never_run(stores, tmp_path):
    marker = tmp_path / "ran"

    class RunsACommand:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    published(stores)
    stores.models.put(stores.catalog.current_model().artifact_key, pickle.dumps(RunsACommand()))
    with pytest.raises(ModelIntegrityError, match=r"model-[0-9a-f]{16}\.npz"):
        CurrentModel(stores.catalog, stores.models)()
    # even a pickle whose hash an attacker also wrote into the catalog is not unpickled
    crafted = pickle.dumps(RunsACommand())
    record = stores.catalog.current_model()
    stores.models.put(record.artifact_key, crafted)
    forged = dataclasses.replace(record, sha256=hashlib.sha256(crafted).hexdigest())
    assert stores.catalog.put_model(forged)
    with pytest.raises(ModelIntegrityError, match=r"pickles.*facerec train"):
        CurrentModel(stores.catalog, stores.models)()
    assert not marker.exists()


def test_a_catalog_from_before_hashes_gets_the_column_and_its_model_is_refused(tmp_path):
    path = tmp_path / "catalog.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE models (model_id TEXT PRIMARY KEY, artifact_key TEXT NOT NULL, "
        "created_at TEXT NOT NULL, metadata TEXT NOT NULL, is_current INTEGER NOT NULL "
        "DEFAULT 0)"
    )
    old.execute("INSERT INTO models VALUES ('m0', 'm0/model.joblib', '2026-01-01', '{}', 1)")
    old.commit()
    old.close()
    stores = dataclasses.replace(local_stores(tmp_path / "workspace"), catalog=SqliteCatalog(path))
    stores.models.put("m0/model.joblib", b"an old pickle")
    assert stores.catalog.current_model().sha256 == ""
    with pytest.raises(ModelIntegrityError, match=r"m0/model\.joblib.*no recorded sha256"):
        CurrentModel(stores.catalog, stores.models)()
    enrol(stores)
    assert published(stores).model_id == stores.catalog.current_model().model_id  # retrain


def test_the_cloud_pointer_carries_the_hash_and_a_tampered_object_is_refused(cloud_stores):
    published(cloud_stores)
    record = cloud_stores.catalog.current_model()
    key = record.artifact_key
    assert record.sha256 == hashlib.sha256(cloud_stores.models.get(key)).hexdigest()
    tamper(cloud_stores.models, key)
    with pytest.raises(ModelIntegrityError, match=key):
        CurrentModel(cloud_stores.catalog, cloud_stores.models)()


def test_the_training_steps_refuse_a_model_changed_between_fit_and_publish(cloud_stores):
    model, _ = fit(gather(cloud_stores.catalog, "aligned"), TrainOptions(), ANALYSIS)
    keys = save_model(cloud_stores.models, model)
    step = {"model_key": keys["artifact"], "model_sha256": keys["sha256"]}
    app = SimpleNamespace(stores=cloud_stores)
    assert state.model(app, step).model_id == model.model_id
    tamper(cloud_stores.models, keys["artifact"])
    with pytest.raises(ModelIntegrityError, match=keys["artifact"]):
        state.model(app, step)
