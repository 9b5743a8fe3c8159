"""The AWS storage adapters without the models: ExternalImageId encoding, the S3 blob store
and the DynamoDB catalog's items and claims (moto)."""

from __future__ import annotations

import json
import re
import time
from unittest import mock

import boto3
import numpy as np
import pytest
from moto import mock_aws

from facerec.core.records import FaceRecord, ModelRecord, PhotoRecord
from facerec.flows.chain import not_indexed_reason
from facerec.storage import aws
from facerec.storage.aws import DynamoCatalog, S3BlobStore
from facerec.storage.rekognition import crop_key_from_external_image_id, external_image_id
from tests.support import ENV, REGION, SimulatedClock, create_resources

ALLOWED = re.compile(r"[a-zA-Z0-9_.\-:]+")


@pytest.mark.parametrize(
    "key",
    [
        "Ben_Afflek/photo-0.png",
        "Iñaki Díaz/la foto (1)-0.png",
        "Jean-Claude Van Damme/50% off + more-3.png",
        "O'Brien, Conan/x:y-0.png",
        "李小龍/照片-0.png",
    ],
)
def test_external_image_ids_are_safe_and_reversible(key):
    encoded = external_image_id(key)
    assert ALLOWED.fullmatch(encoded) and len(encoded) <= 255
    assert crop_key_from_external_image_id(encoded) == key


def test_long_keys_are_shortened_uniquely():
    first = external_image_id("é" * 200 + "/a-0.png")
    second = external_image_id("é" * 200 + "/b-0.png")
    assert ALLOWED.fullmatch(first) and len(first) <= 255 and first != second
    assert crop_key_from_external_image_id(first) is None


@pytest.fixture
def dynamo(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        create_resources(session)
        yield session


def face(photo: str, index: int, person: str | None) -> FaceRecord:
    vector = np.zeros(128, np.float32)
    vector[index] = 1
    return FaceRecord(
        f"{photo}#{index}",
        photo,
        index,
        person,
        (1, 2, 30, 40),
        0.99,
        f"{photo[:-4]}-{index}.png",
        "aligned",
        vector,
    )


def test_the_catalog_port_on_dynamodb(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"], "facenet@abc")
    photo = PhotoRecord("ann/a.jpg", "ann", "sha-a", "enrolled", "", 2, 640, 480)
    catalog.put_photo(photo, [face("ann/a.jpg", 0, "ann"), face("ann/a.jpg", 1, None)])
    catalog.put_photo(
        PhotoRecord("bob/b.jpg", "bob", "sha-b", "enrolled", "", 1, 300, 300),
        [face("bob/b.jpg", 0, "bob")],
    )

    assert catalog.get_photo("ann/a.jpg") == photo
    assert catalog.photo_with_sha256("sha-b").key == "bob/b.jpg"
    assert [f.face_id for f in catalog.faces()] == ["ann/a.jpg#0", "bob/b.jpg#0"]
    assert len(catalog.faces(labelled_only=False)) == 3
    (ann,) = catalog.faces("ann")
    assert ann.box == (1, 2, 30, 40) and ann.embedding[0] == 1.0
    assert catalog.face_by_crop("ann/a-1.png").person is None

    # re-enrolling a photo with fewer faces removes the others and their crop pointers
    catalog.put_photo(photo, [face("ann/a.jpg", 0, "ann")])
    assert catalog.face_by_crop("ann/a-1.png") is None
    assert catalog.counts() == {
        "people": 2,
        "photos": 2,
        "photos_enrolled": 2,
        "photos_no_face": 0,
        "photos_rejected": 0,
        "faces": 2,
        "faces_labelled": 2,
        "models": 0,
    }

    assert catalog.current_model() is None
    metadata = {"evaluation": {"accuracy": 0.9}, "split": {"test_size": 0.25, "seed": 42}}
    assert catalog.put_model(ModelRecord("m1", "m1/model.joblib", "2026-01-01", metadata), None)
    assert catalog.current_model().model_id == "m1"
    assert catalog.current_model().metadata == metadata
    assert catalog.get_model("m1").artifact_key == "m1/model.joblib"


def test_indexing_claims(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"])
    claim = catalog.claim_indexing("c1", "ann/a-0.png", "e1")
    assert claim is not None
    assert catalog.claim_indexing("c1", "ann/a-0.png", "e1") is None  # a fresh claim is held
    assert catalog.claim_indexing("c2", "ann/a-0.png", "e1") is not None  # other collection
    assert catalog.finish_indexing(claim, "indexed", "face-1")
    assert catalog.claim_indexing("c1", "ann/a-0.png", "e1") is None  # done
    newer = catalog.claim_indexing("c1", "ann/a-0.png", "e2")
    assert newer["replaces"] == "face-1"
    assert not catalog.finish_indexing(claim, "indexed", "face-9")  # superseded

    stale = catalog.claim_indexing("c1", "bob/b-0.png", "e1")
    assert catalog.claim_indexing("c1", "bob/b-0.png", "e1", stale_after=3600) is None
    time.sleep(0.01)
    assert catalog.claim_indexing("c1", "bob/b-0.png", "e1", stale_after=0.001) is not None
    assert not catalog.finish_indexing(stale, "indexed", "face-2")


def test_a_pending_claim_goes_stale_after_a_minute(dynamo):
    """A claim's holder lives at most the index function's 60 s; Lambda's first retry of a
    failed event comes a minute after the failure and must find the claim free."""
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"])
    clock = SimulatedClock()
    with mock.patch.object(aws, "time", clock):
        held = catalog.claim_indexing("c1", "ann/a-0.png", "e1")
        clock.now += 59
        assert catalog.claim_indexing("c1", "ann/a-0.png", "e1") is None
        clock.now += 2
        retry = catalog.claim_indexing("c1", "ann/a-0.png", "e1")
    assert retry is not None and "replaces" not in retry
    assert not catalog.finish_indexing(held, "indexed", "face-1")  # the holder was stopped
    assert catalog.finish_indexing(retry, "indexed", "face-2")


def test_a_failed_claim_is_taken_over_at_once_with_the_face_id_it_left(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"])
    claim = catalog.claim_indexing("c1", "ann/a-0.png", "e1")
    assert catalog.finish_indexing(claim, "failed", "face-1", reason="ThrottlingException: x")
    state = catalog.indexing_state("c1", "ann/a-0.png")
    assert (state["state"], state["face_id"], state["reason"]) == (
        "failed",
        "face-1",
        "ThrottlingException: x",
    )
    retry = catalog.claim_indexing("c1", "ann/a-0.png", "e1", stale_after=3600)
    assert retry["replaces"] == "face-1" and retry["state"] == "pending"
    assert catalog.claim_indexing("c1", "ann/a-0.png", "e1", stale_after=3600) is None
    assert not catalog.finish_indexing(claim, "failed", reason="late")  # taken over
    assert catalog.finish_indexing(retry, "refused", reason="LOW_SHARPNESS")
    assert catalog.claim_indexing("c1", "ann/a-0.png", "e1", stale_after=0) is None  # done


def test_why_a_crop_is_not_in_the_collection_comes_from_its_indexing_claim(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"])
    assert "no index_faces run recorded" in not_indexed_reason(catalog, "c1", "ann/a-0.png")
    claim = catalog.claim_indexing("c1", "ann/a-0.png", "e1")
    assert "indexing state: pending" in not_indexed_reason(catalog, "c1", "ann/a-0.png")
    catalog.finish_indexing(claim, "refused", reason="LOW_SHARPNESS")
    assert not_indexed_reason(catalog, "c1", "ann/a-0.png") == "LOW_SHARPNESS"


def test_blob_store_on_s3(dynamo):
    s3 = dynamo.client("s3")
    store = S3BlobStore(s3, ENV["FACES_BUCKET"])
    store.put("a/b.png", b"1")
    store.put("a/report.html", b"<html></html>")
    assert store.get("a/b.png") == b"1" and store.exists("a/b.png")
    content_type = s3.head_object(Bucket=ENV["FACES_BUCKET"], Key="a/report.html")["ContentType"]
    assert content_type == "text/html"
    store.delete("a/report.html")
    assert list(store.keys("a/")) == ["a/b.png"] and list(store.keys("z")) == []
    with pytest.raises(FileNotFoundError):
        store.get("a/missing.png")
    store.delete("a/b.png")
    assert not store.exists("a/b.png")


# ---- purge, models and forgetting a person (moto) ----------------------------------------------


def versions_under(s3, bucket: str, prefix: str = "") -> list[tuple[str, bool]]:
    """(key, is_delete_marker) of every version left under ``prefix``."""
    found = []
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        found += [(item["Key"], False) for item in page.get("Versions", [])]
        found += [(item["Key"], True) for item in page.get("DeleteMarkers", [])]
    return sorted(found)


def versioned_bucket(session, name: str = "facerec-test-versioned"):
    s3 = session.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3, name


def test_purge_on_a_versioned_bucket_deletes_every_version_and_delete_marker(dynamo):
    s3, bucket = versioned_bucket(dynamo)
    store = S3BlobStore(s3, bucket)
    for n in range(3):
        store.put("Ada/a.jpg", f"a{n}".encode())
    store.put("Ada/sub/b.jpg", b"b")
    store.delete("Ada/sub/b.jpg")  # a delete marker on top of a version
    store.put("Ada/gone.jpg", b"g")
    store.delete("Ada/gone.jpg")
    for n in range(2):
        store.put("Ada_Lovelace/c.jpg", f"c{n}".encode())
    store.put("Ada.jpg", b"d")
    assert len(versions_under(s3, bucket, "Ada/")) == 7
    others = versions_under(s3, bucket, "Ada_") + versions_under(s3, bucket, "Ada.")

    assert store.purge("Ada/") == 3  # keys, not versions
    assert versions_under(s3, bucket, "Ada/") == []
    assert versions_under(s3, bucket, "Ada_") + versions_under(s3, bucket, "Ada.") == others
    assert list(store.keys()) == ["Ada.jpg", "Ada_Lovelace/c.jpg"]
    assert store.get("Ada_Lovelace/c.jpg") == b"c1"
    assert store.purge("Ada/") == 0
    assert store.purge("Ada_Lovelace/") == 1
    assert versions_under(s3, bucket) == [("Ada.jpg", False)]


def test_purge_deletes_more_than_a_thousand_versions_in_batches(dynamo):
    s3, bucket = versioned_bucket(dynamo)
    batches = []  # the size of every DeleteObjects request
    s3.meta.events.register(
        "provide-client-params.s3.DeleteObjects",
        lambda params, **_: batches.append(len(params["Delete"]["Objects"])),
    )
    for n in range(1005):
        s3.put_object(Bucket=bucket, Key=f"Bulk/{n:04d}.png", Body=b"x")
    s3.put_object(Bucket=bucket, Key="Bulk/0000.png", Body=b"y")  # a second version
    s3.delete_object(Bucket=bucket, Key="Bulk/0001.png")  # and a delete marker
    s3.put_object(Bucket=bucket, Key="Other/keep.png", Body=b"k")
    assert len(versions_under(s3, bucket, "Bulk/")) == 1007

    assert S3BlobStore(s3, bucket).purge("Bulk/") == 1005
    assert versions_under(s3, bucket, "Bulk/") == []
    assert versions_under(s3, bucket) == [("Other/keep.png", False)]
    assert max(batches) <= 1000 and sum(batches) == 1007  # DeleteObjects takes 1,000 at most


def test_purge_on_an_unversioned_bucket(dynamo):
    s3 = dynamo.client("s3")
    store = S3BlobStore(s3, ENV["INGEST_BUCKET"])
    for key in ("Ada/a.jpg", "Ada/b.jpg", "Ada_Lovelace/a.jpg"):
        store.put(key, b"x")
    assert store.purge("Ada/") == 2
    assert list(store.keys()) == ["Ada_Lovelace/a.jpg"]
    assert store.purge("Ada/") == 0


def model_record(model_id: str, labels: list[str]) -> ModelRecord:
    return ModelRecord(model_id, f"{model_id}/model.joblib", "2026-01-01", {"labels": labels})


def test_models_and_delete_model_on_dynamodb(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"])
    assert catalog.models() == []
    catalog.put_model(model_record("m2", ["Ada"]))
    catalog.put_model(model_record("m3", ["Bob"]))
    catalog.put_model(model_record("m1", ["Ada"]))
    assert [model.model_id for model in catalog.models()] == ["m1", "m2", "m3"]
    assert catalog.models()[2] == model_record("m3", ["Bob"])
    assert catalog.current_model().model_id == "m1"

    catalog.delete_model("m2")  # not current: the pointer stays
    assert catalog.current_model().model_id == "m1"
    assert [model.model_id for model in catalog.models()] == ["m1", "m3"]
    catalog.delete_model("m1")  # current: the pointer goes with it
    assert catalog.current_model() is None
    assert catalog.get_model("m1") is None
    assert [model.model_id for model in catalog.models()] == ["m3"]
    catalog.delete_model("m1")  # deleting again, or a model never stored, is no error
    catalog.delete_model("never")
    assert [model.model_id for model in catalog.models()] == ["m3"]
    assert catalog.counts()["models"] == 1


def test_the_current_model_moves_only_from_the_model_it_was_read_as(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"])
    assert catalog.put_model(model_record("m1", ["Ada"]), None)
    assert not catalog.put_model(model_record("m2", ["Ada"]), None)  # m1 is current now
    assert catalog.put_model(model_record("m2", ["Ada"]), "m1")
    # a second publish that read m1 as current, too: nothing of it is written
    assert not catalog.put_model(model_record("m3", ["Ada"]), "m1")
    assert catalog.current_model().model_id == "m2"
    assert catalog.get_model("m3") is None
    assert [model.model_id for model in catalog.models()] == ["m1", "m2"]


def test_the_training_lock_is_held_by_one_execution_until_released_or_expired(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"])
    clock = SimulatedClock()
    with mock.patch.object(aws, "time", clock):
        assert catalog.lock_training("run-1", 7200) is None
        assert catalog.lock_training("run-1", 7200) is None  # a retried step takes it again
        held = catalog.lock_training("run-2", 7200)
        assert held == {**aws.TRAINING_LOCK, "owner": "run-1", "expires_at": clock.now + 7200}
        assert not catalog.unlock_training("run-2")  # only its owner releases it
        clock.now += 7201  # run-1 outlived its state machine's timeout: the lock expired
        assert catalog.lock_training("run-2", 7200) is None
        assert not catalog.unlock_training("run-1")
        assert catalog.unlock_training("run-2")
        assert catalog.lock_training("run-3", 7200) is None
    assert catalog.models() == [] and catalog.counts()["models"] == 0


def fill_catalog(catalog: DynamoCatalog, person: str, sha: str) -> None:
    """Items of every kind for ``person``: photos (enrolled with a labelled and an unlabelled
    face, enrolled with one face, rejected), crop pointers, handled-event markers and indexing
    claims in two collections (one finished, one pending)."""
    group, single, bad = f"{person}/group.jpg", f"{person}/single.jpg", f"{person}/bad.jpg"
    catalog.put_photo(
        PhotoRecord(group, person, f"{sha}-group", "enrolled", "", 2, 640, 480),
        [face(group, 0, person), face(group, 1, None)],
    )
    catalog.put_photo(
        PhotoRecord(single, person, f"{sha}-single", "enrolled", "", 1, 640, 480),
        [face(single, 0, person)],
    )
    catalog.put_photo(PhotoRecord(bad, person, f"{sha}-bad", "rejected", "blurry"), [])
    for key in (group, single, bad):
        catalog.mark_object_handled(ENV["INGEST_BUCKET"], key, "e1", "enrolled")
    catalog.mark_object_handled(ENV["INGEST_BUCKET"], group, "e2", "enrolled")  # 2nd version
    catalog.mark_object_handled(ENV["FACES_BUCKET"], f"{person}/group-0.png", "e1", "embedded")
    claim = catalog.claim_indexing("c1", f"{person}/group-0.png", "e1")
    assert catalog.finish_indexing(claim, "indexed", f"{person}-face")
    assert catalog.claim_indexing("c1", f"{person}/single-0.png", "e1") is not None
    assert catalog.claim_indexing("c2", f"{person}/group-0.png", "e1") is not None


def test_forget_person_on_dynamodb_deletes_every_item_of_theirs(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"], "facenet@abc")
    fill_catalog(catalog, "Ada", "sha-ada")
    fill_catalog(catalog, "Ada_Lovelace", "sha-lovelace")  # a name that starts with theirs
    catalog.put_model(model_record("m1", ["Ada", "Ada_Lovelace"]))
    table = dynamo.resource("dynamodb").Table(ENV["CATALOG_TABLE"])

    def items() -> list[tuple[str, str]]:
        return sorted((item["pk"], item["sk"]) for item in table.scan()["Items"])

    lovelace = [item for item in items() if "Ada_Lovelace/" in item[0] + item[1]]
    assert len(items()) == 2 * len(lovelace) + 2

    assert catalog.forget_person("Ada") == {
        "photo_records": 3,
        "face_records": 3,
        # 3 crop pointers, 5 handled-event markers, 3 indexing claims
        "other_records": 11,
    }
    assert items() == sorted([*lovelace, ("MODEL", "CURRENT"), ("MODEL#m1", "META")])
    assert catalog.faces("Ada") == [] and catalog.get_photo("Ada/group.jpg") is None
    assert catalog.photo_with_sha256("sha-ada-group") is None
    assert catalog.face_by_crop("Ada/group-0.png") is None
    assert catalog.indexing_state("c1", "Ada/group-0.png") is None
    assert not catalog.object_handled(ENV["INGEST_BUCKET"], "Ada/group.jpg", "e1")
    assert [f.face_id for f in catalog.faces("Ada_Lovelace")] == [
        "Ada_Lovelace/group.jpg#0",
        "Ada_Lovelace/single.jpg#0",
    ]
    assert catalog.face_by_crop("Ada_Lovelace/group-1.png").person is None
    assert catalog.object_handled(ENV["FACES_BUCKET"], "Ada_Lovelace/group-0.png", "e1")
    assert catalog.indexing_state("c1", "Ada_Lovelace/group-0.png")["state"] == "indexed"
    assert catalog.current_model().model_id == "m1"  # models are forget.py's business

    assert catalog.forget_person("Ada") == {
        "photo_records": 0,
        "face_records": 0,
        "other_records": 0,
    }
    assert len(items()) == len(lovelace) + 2


def labelled_index(table) -> dict[str, str]:
    """face_id -> gsi3 partition of every face the labelled-face index holds."""
    items = [
        item
        for shard in range(aws.LABELLED_SHARDS)
        for item in table.query(
            IndexName=aws.LABELLED_INDEX,
            KeyConditionExpression="gsi3pk = :shard",
            ExpressionAttributeValues={":shard": f"LABELLED#{shard:02d}"},
        )["Items"]
    ]
    return {item["face_id"]: item["gsi3pk"] for item in items}


def group_photos(catalog: DynamoCatalog, photos: int) -> list[FaceRecord]:
    """``photos`` photos of 10 faces, every tenth face unlabelled; every face put."""
    faces = []
    for number in range(photos):
        person, key = f"p{number % 7}", f"p{number % 7}/photo{number:03d}.jpg"
        photo_faces = [face(key, index, None if index == 9 else person) for index in range(10)]
        catalog.put_photo(PhotoRecord(key, person, f"sha-{number}", "enrolled"), photo_faces)
        faces += photo_faces
    return faces


def test_the_labelled_faces_come_back_whole_and_ordered_from_every_shard_page_by_page(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"], "facenet@abc")
    written = group_photos(catalog, 40)  # 360 labelled faces, about 22 a shard
    queries = []

    def small_pages(params, **_):  # DynamoDB pages at 1 MB: here at 7 items
        params["Limit"] = 7

    def sent(params, **_):  # (partition, whether a later page) of each Query as sent
        body = json.loads(params["body"])
        (partition,) = body["ExpressionAttributeValues"].values()
        queries.append((partition["S"], "ExclusiveStartKey" in body))

    events = catalog.table.meta.client.meta.events
    events.register("before-parameter-build.dynamodb.Query", small_pages)
    events.register("before-call.dynamodb.Query", sent)
    faces = catalog.faces()

    labelled = sorted((f for f in written if f.person is not None), key=lambda f: f.face_id)
    assert [f.face_id for f in faces] == [f.face_id for f in labelled]
    same = ("photo_key", "index", "person", "box", "crop_key", "crop_method")
    for got, put in zip(faces, labelled, strict=True):
        assert [getattr(got, name) for name in same] == [getattr(put, name) for name in same]
        assert got.embedding_model == "facenet@abc" and got.confidence == pytest.approx(0.99)
        assert np.array_equal(got.embedding, put.embedding)
    partitions = {partition for partition, _ in queries}
    assert partitions == {f"LABELLED#{shard:02d}" for shard in range(aws.LABELLED_SHARDS)}
    assert sum(follow for _, follow in queries) >= 360 // 7 - aws.LABELLED_SHARDS  # later pages

    queries.clear()
    everyone = catalog.faces(labelled_only=False)
    assert [f.face_id for f in everyone] == sorted(f.face_id for f in written)
    assert {partition for partition, _ in queries} == partitions | {aws.UNLABELLED}


def test_gathering_for_training_queries_and_never_scans(dynamo):
    from facerec.flows.train import gather

    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"], "facenet@abc")
    written = group_photos(catalog, 4)
    operations = []

    def record(event_name, **_):
        operations.append(event_name.rsplit(".", 1)[-1])

    def refuse_scan(**_):
        raise AssertionError("the gather path scanned the catalog table")

    events = catalog.table.meta.client.meta.events
    events.register("before-call.dynamodb", record)
    events.register("before-call.dynamodb.Scan", refuse_scan)
    training_set = gather(catalog, "aligned")
    catalog.faces(labelled_only=False)
    catalog.unlabelled_faces()

    assert len(training_set) == sum(f.person is not None for f in written) == 36
    assert list(training_set.labels[:2]) == ["p0", "p0"] and training_set.embeddings.shape == (
        36,
        128,
    )
    assert set(operations) == {"Query"}
    assert len(operations) == 2 * aws.LABELLED_SHARDS + 2  # twice every shard, gsi1 twice


def test_only_labelled_faces_are_in_the_index_through_relabelling_and_deletion(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"], "facenet@abc")
    photo = PhotoRecord("ann/a.jpg", "ann", "sha-a", "enrolled", "", 2, 640, 480)
    catalog.put_photo(photo, [face("ann/a.jpg", 0, "ann"), face("ann/a.jpg", 1, None)])
    shard = aws._labelled_shard("ann/a.jpg#0")
    assert labelled_index(catalog.table) == {"ann/a.jpg#0": shard}
    assert (
        "gsi3pk"
        not in catalog.table.get_item(Key={"pk": "PHOTO#ann/a.jpg", "sk": "FACE#0001"})["Item"]
    )

    catalog.put_photo(
        photo, [face("ann/a.jpg", 0, None), face("ann/a.jpg", 1, "bob")]
    )  # relabelled
    assert labelled_index(catalog.table) == {"ann/a.jpg#1": aws._labelled_shard("ann/a.jpg#1")}
    assert [f.person for f in catalog.faces()] == ["bob"]

    catalog.set_embedding(catalog.faces()[0], np.ones(128, np.float32))  # stays indexed
    assert catalog.faces()[0].embedding.sum() == 128
    catalog.delete_faces(catalog.faces())
    assert labelled_index(catalog.table) == {} and catalog.faces() == []
    assert [f.face_id for f in catalog.faces(labelled_only=False)] == ["ann/a.jpg#0"]

    catalog.put_photo(photo, [face("ann/a.jpg", 0, "ann")])
    catalog.forget_person("ann")
    assert labelled_index(catalog.table) == {}


def test_faces_written_before_the_index_are_added_to_it_once(dynamo):
    catalog = DynamoCatalog(dynamo.resource("dynamodb"), ENV["CATALOG_TABLE"], "facenet@abc")
    written = group_photos(catalog, 3)  # 27 labelled, 3 unlabelled
    for item in catalog.table.scan()["Items"]:  # as every face was before the index existed
        if "gsi3pk" in item:
            catalog.table.update_item(
                Key={"pk": item["pk"], "sk": item["sk"]}, UpdateExpression="REMOVE gsi3pk"
            )
    assert catalog.faces() == []
    relabelled = written[0]

    def relabel_first(params, **_):  # a photo unlabelled between the backfill's scan and updates
        events.unregister("before-call.dynamodb.UpdateItem", relabel_first)
        catalog.put_photo(
            PhotoRecord(relabelled.photo_key, "p0", "sha-0", "enrolled"),
            [face(relabelled.photo_key, index, None) for index in range(10)],
        )

    events = catalog.table.meta.client.meta.events
    events.register("before-call.dynamodb.UpdateItem", relabel_first)
    assert catalog.index_labelled_faces() == 18  # 27 but the 9 unlabelled after the scan
    assert catalog.index_labelled_faces() == 0
    expected = {f.face_id for f in written[10:] if f.person is not None}
    assert {f.face_id for f in catalog.faces()} == expected
    assert labelled_index(catalog.table) == {
        face_id: aws._labelled_shard(face_id) for face_id in expected
    }
