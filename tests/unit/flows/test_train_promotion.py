"""Publishing a trained model (facerec.flows.train.publish): the candidate and the current model
compared on the same faces, the pointer moved only from the model it was compared with, and
the catalog keeping only a small pointer whatever the number of held-out faces (moto enforces
DynamoDB's 400 KB item limit). Synthetic people: tight clusters of unit embeddings."""

from __future__ import annotations

import dataclasses
import json
import random
import string
import zlib

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from facerec.core.records import ModelRecord, PhotoRecord
from facerec.core.settings import TrainOptions
from facerec.engines.facenet import TrainedModel
from facerec.flows.train import (
    PROMOTION_RULE,
    CurrentModel,
    evaluate,
    fit,
    gather,
    model_keys,
    publish,
    sign_test,
    train,
)
from facerec.storage.aws import DynamoCatalog, S3BlobStore
from facerec.storage.local import local_stores
from facerec.storage.ports import Stores
from tests.factories import face_record, unit_vector
from tests.support import ENV, REGION, create_resources

ANALYSIS = {"embedding": {"model_id": "facenet-test"}, "crop": {"method": "aligned"}}
OLD_PEOPLE = ("Ada", "Bob", "Cy", "Dee")
FACES_PER_PERSON = 20
ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit, bytes


def enrol(stores: Stores, person: str, seed: int) -> None:
    """``FACES_PER_PERSON`` one-face photos of ``person``: unit vectors about 0.95 (cosine)
    from the person's own random direction."""
    rng = np.random.default_rng(seed)
    centre = unit_vector(rng.standard_normal(128))
    for number in range(FACES_PER_PERSON):
        key = f"{person}/{number:02d}.jpg"
        embedding = unit_vector(centre + 0.03 * rng.standard_normal(128))
        face = dataclasses.replace(face_record(key, 0, person), embedding=embedding)
        photo = PhotoRecord(key, person, f"sha-{key}", "enrolled", "", 1, 160, 160)
        stores.catalog.put_photo(photo, [face])


@pytest.fixture
def stores(tmp_path) -> Stores:
    stores = local_stores(tmp_path / "workspace")
    for seed, person in enumerate(OLD_PEOPLE):
        enrol(stores, person, seed)
    return stores


def candidate(stores: Stores):
    """A model trained on everyone enrolled now, with its FaceNet and nearest runs (named
    apart: a model trained on the same faces in the same second would share its id)."""
    training_set = gather(stores.catalog, "aligned")
    trained, _ = fit(training_set, TrainOptions(), ANALYSIS)
    metadata = {**trained.metadata, "model_id": "candidate"}
    model = TrainedModel(trained.classifier, metadata, trained.open_set)
    return model, training_set, evaluate(model, training_set, stores.faces.get)


def report(stores: Stores, model_id: str) -> dict:
    return json.loads(stores.reports.get(f"{model_id}/evaluation.json"))


def wrong(run, face_ids):
    """``run`` with the answers for ``face_ids`` made wrong (someone nobody enrolled)."""
    answers = {
        face_id: {**answer, "candidate": "Nobody", "person": "Nobody"}
        if face_id in face_ids
        else answer
        for face_id, answer in run.answers.items()
    }
    return dataclasses.replace(run, answers=answers)


def test_sign_test_is_the_one_sided_binomial_tail():
    assert sign_test(0, 0) == 1.0  # no face either way: no evidence
    assert sign_test(5, 0) == 1 / 32 < 0.05  # the current model alone right 5 times out of 5
    assert sign_test(4, 0) == 1 / 16 > 0.05
    assert sign_test(3, 3) == (20 + 15 + 6 + 1) / 64
    assert sign_test(0, 7) == 1.0


def test_a_new_person_the_candidate_gets_wrong_does_not_block_promotion(stores):
    first, _ = train(stores, "aligned", ANALYSIS)
    assert first.metadata["evaluation"]["accuracy"] == 1.0
    assert stores.catalog.current_model().model_id == first.model_id
    enrol(stores, "Eve", seed=99)

    model, training_set, runs = candidate(stores)
    eve = {face_id for face_id in runs["facenet"].answers if face_id.startswith("Eve/")}
    assert eve  # Eve's held-out faces: the candidate misses every one of them
    runs["facenet"] = wrong(runs["facenet"], eve)
    published, result = publish(stores, model, training_set, runs)

    # its held-out accuracy (Eve included) is below the first model's own: the old rule, each
    # on its own split, kept the first model and would keep it after every retraining
    assert published.metadata["evaluation"]["accuracy"] < 1.0
    assert result["promoted"] is True
    assert stores.catalog.current_model().model_id == model.model_id
    decision = report(stores, model.model_id)["promotion"]
    assert decision["promoted"] is True and decision["rule"] == PROMOTION_RULE
    comparison = decision["comparison"]
    assert comparison["current_model_id"] == first.model_id
    # the first model was asked now about the candidate's faces it did not train on
    assert comparison["common_faces"] > 0
    assert comparison["candidate_correct"] == comparison["current_correct"]
    assert comparison["candidate_correct"] == comparison["common_faces"]
    assert comparison["p_worse"] == 1.0
    # the new person's faces are counted apart, not compared
    assert comparison["new_people"] == {
        "people": 1,
        "faces": len(eve),
        "candidate_correct": 0,
        "candidate_accuracy": 0.0,
    }
    held_out = len(model.metadata["split"]["test_face_ids"])
    assert comparison["common_faces"] + comparison["trained_on_by_current"] + len(eve) == held_out


def test_faces_the_current_model_trained_on_are_left_out(stores):
    first, _ = train(stores, "aligned", ANALYSIS, TrainOptions(seed=1))  # another split
    model, training_set, runs = candidate(stores)
    trained = set(first.open_set.gallery_.ids.tolist())
    seen = {face_id for face_id in runs["facenet"].answers if face_id in trained}
    assert len(seen) > 5  # compared, the candidate's misses there would keep the first model
    runs["facenet"] = wrong(runs["facenet"], seen)
    _, result = publish(stores, model, training_set, runs)

    assert result["promoted"] is True
    comparison = report(stores, model.model_id)["promotion"]["comparison"]
    assert comparison["trained_on_by_current"] == len(seen)
    held_out = len(model.metadata["split"]["test_face_ids"])
    assert comparison["common_faces"] == held_out - len(seen) > 0
    assert comparison["candidate_correct"] == comparison["current_correct"]
    assert comparison["candidate_correct"] == comparison["common_faces"]


def test_a_candidate_worse_on_the_same_faces_is_not_promoted(stores):
    first, _ = train(stores, "aligned", ANALYSIS)
    model, training_set, runs = candidate(stores)
    runs["facenet"] = wrong(runs["facenet"], set(runs["facenet"].answers))
    _, result = publish(stores, model, training_set, runs)

    assert result["promoted"] is False and result["reason"].startswith("worse than")
    assert stores.catalog.current_model().model_id == first.model_id
    decision = report(stores, model.model_id)
    assert decision["previous_model_id"] == first.model_id
    comparison = decision["promotion"]["comparison"]
    assert comparison["candidate_correct"] == 0
    assert comparison["current_only_correct"] == comparison["common_faces"] == 20
    assert comparison["p_worse"] < 0.05
    # the model stays in the models store, unregistered
    assert stores.models.exists(model_keys(model.model_id, result["model_sha256"])["artifact"])
    assert [record.model_id for record in stores.catalog.models()] == [first.model_id]


class RivalPublishes:
    """The real catalog, with another training's model made current just after publish
    reads the current one (as a concurrent publish would)."""

    def __init__(self, catalog, rival: ModelRecord):
        self.catalog, self.rival = catalog, rival

    def current_model(self):
        record = self.catalog.current_model()
        assert self.catalog.put_model(self.rival)
        return record

    def __getattr__(self, name):
        return getattr(self.catalog, name)


@pytest.fixture(params=["sqlite", "dynamodb"])
def catalog_kind(request, monkeypatch):
    """The stores' catalog: the local SQLite file, or the DynamoDB table (moto)."""
    if request.param == "sqlite":
        yield None
        return
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        create_resources(session)
        yield DynamoCatalog(session.resource("dynamodb"), ENV["CATALOG_TABLE"])


def test_publish_replaces_only_the_model_it_was_compared_with(stores, catalog_kind):
    if catalog_kind is not None:  # the same people, catalogued in DynamoDB
        for face in stores.catalog.faces():
            catalog_kind.put_photo(stores.catalog.get_photo(face.photo_key), [face])
        stores = dataclasses.replace(stores, catalog=catalog_kind)
    first, _ = train(stores, "aligned", ANALYSIS)
    model, training_set, runs = candidate(stores)
    rival = ModelRecord("rival", "rival/model.joblib", "2026-01-01T00:00:00+00:00", {})

    racing = dataclasses.replace(stores, catalog=RivalPublishes(stores.catalog, rival))
    _, result = publish(racing, model, training_set, runs)

    assert result["promoted"] is False
    assert result["reason"].startswith(f"another model replaced {first.model_id}")
    assert stores.catalog.current_model().model_id == "rival"  # not overwritten silently
    assert [record.model_id for record in stores.catalog.models()] == sorted(
        [first.model_id, "rival"]
    )
    assert report(stores, model.model_id)["promoted"] is False


# ---- the model record in DynamoDB ------------------------------------------------------------


@pytest.fixture
def cloud_stores(tmp_path, monkeypatch):
    """S3 (models, reports) and the catalog table in moto; folders for the other buckets."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        create_resources(session)
        s3 = session.client("s3")
        local = local_stores(tmp_path / "workspace")
        yield dataclasses.replace(
            local,
            catalog=DynamoCatalog(session.resource("dynamodb"), ENV["CATALOG_TABLE"]),
            models=S3BlobStore(s3, ENV["MODELS_BUCKET"]),
            reports=S3BlobStore(s3, ENV["REPORTS_BUCKET"]),
        )


def many_face_ids(count: int) -> list[str]:
    """Face ids as enrolment names them (``<person>/<photo>.jpg#<n>``), of ``count`` faces."""
    rng = random.Random(7)
    letters = string.ascii_letters + string.digits
    people = ["".join(rng.choices(string.ascii_letters, k=12)) for _ in range(count // 4)]
    return [
        f"{rng.choice(people)}/{''.join(rng.choices(letters, k=20))}.jpg#{rng.randrange(3)}"
        for _ in range(count)
    ]


def test_a_model_with_30k_held_out_faces_is_published_as_a_small_pointer(cloud_stores):
    for seed, person in enumerate(OLD_PEOPLE):
        enrol(cloud_stores, person, seed)
    training_set = gather(cloud_stores.catalog, "aligned")
    small, _ = fit(training_set, TrainOptions(test_size=0.0), ANALYSIS)
    metadata = {**small.metadata, "split": {**small.metadata["split"]}}
    metadata["split"]["test_face_ids"] = many_face_ids(30_000)
    model = TrainedModel(small.classifier, metadata, small.open_set)
    # what the table held before: the whole metadata, compressed, over the item limit
    assert len(zlib.compress(json.dumps(metadata).encode())) > ITEM_LIMIT
    whole = ModelRecord(model.model_id, "x/model.joblib", metadata["created_at"], metadata)
    with pytest.raises(ClientError, match="Item size has exceeded"):
        cloud_stores.catalog.put_model(whole)  # moto enforces the limit, as DynamoDB does

    _, result = publish(cloud_stores, model, training_set, {})

    assert result["promoted"] is True
    items = cloud_stores.catalog.table.scan()["Items"]
    pointers = [item for item in items if item["pk"].startswith("MODEL")]
    assert sorted((item["pk"], item["sk"]) for item in pointers) == [
        ("MODEL", "CURRENT"),
        (f"MODEL#{model.model_id}", "META"),
    ]
    assert all(len(bytes(item["metadata"])) < 2048 for item in pointers)
    record = cloud_stores.catalog.current_model()
    assert record.artifact_key == model_keys(model.model_id, record.sha256)["artifact"]
    # the options it was trained with, from the pointer alone (a retraining reads them)
    assert TrainOptions.of(record.metadata) == TrainOptions(test_size=0.0)
    # reading the current model gives the whole metadata, from the models store
    current = CurrentModel(cloud_stores.catalog, cloud_stores.models)()
    assert current.metadata["split"]["test_face_ids"] == metadata["split"]["test_face_ids"]
    stored = json.loads(cloud_stores.models.get(model_keys(model.model_id)["metadata"]))
    assert stored["split"]["test_face_ids"] == metadata["split"]["test_face_ids"]
