"""flows.forget.forget_person over real stores filled through their ports: the local workspace
(folders + SQLite), and once in the cloud shape (S3, DynamoDB and S3 Vectors in moto; the
Rekognition collection behind botocore's Stubber, as moto has no collections)."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import numpy as np
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from facerec.core.errors import InvalidLabel
from facerec.core.records import FaceRecord, ModelRecord, PhotoRecord
from facerec.core.settings import TrainOptions
from facerec.flows.forget import RETRAINING, forget_group_faces, forget_person, retrained
from facerec.flows.forget import forget as forget_all
from facerec.flows.train import train
from facerec.storage.aws import DynamoCatalog, S3BlobStore
from facerec.storage.local import local_stores
from facerec.storage.ports import Stores
from facerec.storage.rekognition import FaceCollection, FaceIndexTable, IndexRow, external_image_id
from facerec.storage.vectors import VectorGallery
from tests.factories import cluster, enrol_group, put_photo, unit_vector
from tests.factories import face_record as face
from tests.support import ENV, create_resources

REGION = "us-east-1"
PERSON = "Ada"  # forgotten; "Ada_Lovelace" starts with the same letters and must stay
BUCKETS = ("ingest", "faces", "models", "reports", "quarantine")


def forget(stores: Stores, person: str = PERSON, rekognition=None, **cloud) -> dict:
    """forget_person with the cloud's stores added (``face_index``, ``vectors``; DeleteFaces
    through the ``rekognition`` client)."""
    if rekognition is not None:
        cloud["collections"] = lambda collection_id: FaceCollection(rekognition, collection_id)
    return forget_person(person, replace(stores, **cloud))


def store_model(stores: Stores, model_id: str, labels: list[str], register: bool) -> None:
    """A trained model in the models store (artifact + metadata.json) with its reports, and
    (``register``) its record in the catalog, which makes it the current model."""
    metadata = {
        "labels": labels,
        "classifier": {"C": 3.0},
        "split": {"test_size": 0.2, "seed": 7},
        "open_set": {"far_target": 0.02},
        "evaluation": {"accuracy": 0.9},
    }
    stores.models.put(f"{model_id}/model.joblib", b"joblib " + model_id.encode())
    stores.models.put(f"{model_id}/metadata.json", json.dumps(metadata).encode())
    stores.reports.put(f"{model_id}/report.html", b"<html></html>")
    stores.reports.put(f"{model_id}/charts/confusion.png", b"png")
    if register:
        record = ModelRecord(model_id, f"{model_id}/model.joblib", "2026-01-01", metadata)
        stores.catalog.put_model(record)


def quarantine(stores: Stores, name: str, key: str, with_bytes: bool = True) -> None:
    """A quarantined photo as enrolment stores it: under its person's folder, by hash."""
    folder = key.split("/")[0]
    record = {"key": key, "code": "no_face", "reason": "no face found"}
    stores.quarantine.put(f"{folder}/{name}.json", json.dumps(record).encode())
    if with_bytes:
        stores.quarantine.put(f"{folder}/{name}.bin", b"\xff\xd8 photo bytes")


def fill(stores: Stores, current: str = "m1") -> dict[str, list[FaceRecord]]:
    """Ada: enrolled photos (one a group photo with an unlabelled face), a no_face and a
    rejected photo, a photo never processed, a crop whose photo has no record, three
    quarantined photos (one refused unread: a reason without bytes). Models: m1 (registered,
    knew Ada), m2 (registered, never knew her), m3 (only stored, knew her), m4 (registered
    only, knew her). Returns the labelled faces per person."""
    rng = np.random.default_rng(7)
    labelled: dict[str, list[FaceRecord]] = {}
    photos = {
        "Ada/a.jpg": 2,
        "Ada/b.jpg": 1,
        "Ada_Lovelace/a.jpg": 2,
        "Ada_Lovelace/b.jpg": 1,
        "Bob/a.jpg": 1,
    }
    for key, count in photos.items():
        person = key.split("/")[0]
        faces = [face(key, index, person if index == 0 else None, rng) for index in range(count)]
        stores.catalog.put_photo(
            PhotoRecord(key, person, f"sha-{key}", "enrolled", "", count, 640, 480), faces
        )
        stores.ingest.put(key, b"\xff\xd8 " + key.encode())
        for record in faces:
            stores.faces.put(record.crop_key, b"png " + record.crop_key.encode())
        labelled.setdefault(person, []).append(faces[0])
    stores.catalog.put_photo(PhotoRecord("Ada/none.jpg", "Ada", "sha-n", "no_face", "none"), [])
    stores.catalog.put_photo(PhotoRecord("Ada/bad.jpg", "Ada", "sha-r", "rejected", "bad"), [])
    stores.catalog.put_photo(PhotoRecord("Bob/bad.jpg", "Bob", "sha-rb", "rejected", "bad"), [])
    stores.ingest.put("Ada/unprocessed.jpg", b"\xff\xd8 never seen")
    stores.faces.put("Ada/orphan-0.png", b"png orphan")
    quarantine(stores, "aaa111", "Ada/none.jpg")
    quarantine(stores, "aaa222", "Ada/bad.jpg")
    quarantine(stores, "size-aaa333", "Ada/huge.jpg", with_bytes=False)
    quarantine(stores, "bbb111", "Ada_Lovelace/bad.jpg")
    quarantine(stores, "ccc111", "Bob/bad.jpg")
    models = {"m1": ["Ada", "Bob"], "m2": ["Ada_Lovelace", "Bob"], "m4": ["Ada", "Bob"]}
    for model_id in sorted(models, key=lambda model_id: model_id == current):  # current last
        store_model(stores, model_id, models[model_id], register=True)
    store_model(stores, "m3", ["Ada", "Ada_Lovelace"], register=False)
    stores.models.delete("m4/model.joblib")  # m4: a record whose files are gone
    stores.models.delete("m4/metadata.json")
    return labelled


KEPT_INGEST = ["Ada_Lovelace/a.jpg", "Ada_Lovelace/b.jpg", "Bob/a.jpg"]
KEPT_CROPS = [
    "Ada_Lovelace/a-0.png",
    "Ada_Lovelace/a-1.png",
    "Ada_Lovelace/b-0.png",
    "Bob/a-0.png",
]
KEPT_QUARANTINE = [
    "Ada_Lovelace/bbb111.bin",
    "Ada_Lovelace/bbb111.json",
    "Bob/ccc111.bin",
    "Bob/ccc111.json",
]
KEPT_MODELS = ["m2/metadata.json", "m2/model.joblib"]
KEPT_REPORTS = ["m2/charts/confusion.png", "m2/report.html"]
DELETED = {
    "person": "Ada",
    "photos": 3,  # a, b and the never-processed one
    "crops": 4,  # a-0, a-1 (unlabelled), b-0 and the orphan
    "quarantined": 3,
    "models": ["m1", "m3", "m4"],
    "current_model": True,
    "retrain_options": {
        "C": 3.0,
        "select_c": False,
        "test_size": 0.2,
        "seed": 7,
        "far": 0.02,
        "classifier": "auto",  # a model trained before the choice existed: chosen again
    },
    "photo_records": 4,  # a, b, none, bad
    "face_records": 3,
}


def assert_only_others_remain(stores: Stores) -> None:
    """Only the others' objects and records remain (and the retraining owed, if one is)."""
    assert list(stores.ingest.keys()) == KEPT_INGEST
    assert list(stores.faces.keys()) == KEPT_CROPS
    assert list(stores.quarantine.keys()) == KEPT_QUARANTINE
    assert [key for key in stores.models.keys("") if key != RETRAINING] == KEPT_MODELS
    assert list(stores.reports.keys()) == KEPT_REPORTS
    assert [model.model_id for model in stores.catalog.models()] == ["m2"]
    catalog = stores.catalog
    assert catalog.faces(PERSON) == []
    assert [f.face_id for f in catalog.faces(labelled_only=False)] == [
        "Ada_Lovelace/a.jpg#0",
        "Ada_Lovelace/a.jpg#1",
        "Ada_Lovelace/b.jpg#0",
        "Bob/a.jpg#0",
    ]
    for key in ("Ada/a.jpg", "Ada/b.jpg", "Ada/none.jpg", "Ada/bad.jpg"):
        assert catalog.get_photo(key) is None
    assert catalog.get_photo("Bob/bad.jpg").status == "rejected"
    assert catalog.counts()["photos"] == 4


NOTHING = {
    "person": "Ada",
    "photos": 0,
    "crops": 0,
    "quarantined": 0,
    "models": [],
    "current_model": False,
    "photo_records": 0,
    "face_records": 0,
}


# ---- the local workspace ------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    workspace = local_stores(tmp_path / "ws")
    yield workspace
    workspace.catalog.close()


def test_forget_deletes_the_person_everywhere_and_nothing_else(workspace):
    stores = workspace
    labelled = fill(stores)
    lovelace = {f.face_id: f.embedding.tobytes() for f in workspace.catalog.faces("Ada_Lovelace")}

    assert forget(stores) == DELETED

    assert_only_others_remain(stores)
    assert workspace.catalog.current_model() is None  # m1 was current and knew Ada
    assert {
        f.face_id: f.embedding.tobytes() for f in workspace.catalog.faces("Ada_Lovelace")
    } == lovelace
    assert [f.face_id for f in workspace.catalog.faces("Bob")] == [
        f.face_id for f in labelled["Bob"]
    ]
    assert workspace.ingest.get("Bob/a.jpg") == b"\xff\xd8 Bob/a.jpg"
    assert not (workspace.ingest.root / "Ada").exists()
    assert not (workspace.faces.root / "Ada").exists()
    assert not (workspace.models.root / "m1").exists()
    assert not (workspace.reports.root / "m3").exists()


def test_forgetting_twice_deletes_nothing_the_second_time(workspace):
    stores = workspace
    fill(stores)
    assert forget(stores) == DELETED
    # nothing more is deleted; the retraining owed is asked for until it is settled
    owed = {"retrain_options": DELETED["retrain_options"]}
    assert forget(stores) == {**NOTHING, **owed}
    retrained(stores)
    assert forget(stores) == NOTHING
    assert_only_others_remain(stores)


def test_the_current_model_stays_when_it_never_knew_the_person(workspace):
    stores = workspace
    fill(stores, current="m2")
    assert workspace.catalog.current_model().model_id == "m2"
    kept = {name: value for name, value in DELETED.items() if name != "retrain_options"}
    assert forget(stores) == {**kept, "current_model": False}
    assert workspace.catalog.current_model().model_id == "m2"
    assert not stores.models.exists(RETRAINING)  # no retraining is owed
    assert_only_others_remain(stores)


def test_forgetting_someone_never_enrolled_deletes_nothing(workspace):
    stores = workspace
    fill(stores)
    before = {name: list(getattr(stores, name).keys()) for name in BUCKETS}
    assert forget(stores, "Carol") == {**NOTHING, "person": "Carol"}
    assert {name: list(getattr(stores, name).keys()) for name in BUCKETS} == before
    assert workspace.catalog.current_model().model_id == "m1"


@pytest.mark.parametrize("name", ["../x", "", "Ada/x", ".hidden", "a\x00b"])
def test_a_name_no_photo_could_carry_is_refused_and_nothing_is_deleted(workspace, name):
    stores = workspace
    fill(stores)
    before = {name: list(getattr(stores, name).keys()) for name in BUCKETS}
    counts = workspace.catalog.counts()
    with pytest.raises(InvalidLabel):
        forget(stores, name)
    assert {name: list(getattr(stores, name).keys()) for name in BUCKETS} == before
    assert workspace.catalog.counts() == counts


# ---- the cloud shape ----------------------------------------------------------------------------


CATALOG_TABLE, FACE_INDEX_TABLE = ENV["CATALOG_TABLE"], ENV["FACE_INDEX_TABLE"]
VECTOR_BUCKET = ENV["VECTOR_BUCKET"]
FACES_INDEX, CENTROIDS_INDEX = ENV["FACE_VECTOR_INDEX"], ENV["CENTROID_VECTOR_INDEX"]


def all_versions(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
    return sorted(
        item["Key"]
        for page in pages
        for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
    )


def vector_keys(client, index: str) -> list[str]:
    keys, token = [], None
    while True:
        page = client.list_vectors(
            vectorBucketName=VECTOR_BUCKET,
            indexName=index,
            **({"nextToken": token} if token else {}),
        )
        keys += [vector["key"] for vector in page["vectors"]]
        token = page.get("nextToken")
        if not token:
            return sorted(keys)


def face_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.fixture
def cloud(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        create_resources(session)  # the stack's buckets (models versioned), tables, vectors
        session.client("s3").put_bucket_versioning(
            Bucket=ENV["INGEST_BUCKET"], VersioningConfiguration={"Status": "Enabled"}
        )
        yield session


def test_forget_in_the_cloud_also_clears_rekognition_and_the_vector_store(cloud):
    s3 = cloud.client("s3")
    blob = {name: S3BlobStore(s3, f"facerec-test-{name}") for name in BUCKETS}
    dynamodb = cloud.resource("dynamodb")
    catalog = DynamoCatalog(dynamodb, CATALOG_TABLE, "facenet@abc")
    stores = Stores(**blob, catalog=catalog)
    labelled = fill(stores)
    scans: list[dict] = []
    dynamodb.meta.client.meta.events.register(
        "provide-client-params.dynamodb.Scan", lambda params, **_: scans.append(params)
    )
    stores.ingest.put("Ada/a.jpg", b"a second version of the photo")
    catalog.mark_object_handled("facerec-test-ingest", "Ada/a.jpg", "e1", "enrolled")
    claim = catalog.claim_indexing("c1", "Ada/a-0.png", "e1")
    catalog.finish_indexing(claim, "indexed", face_id(1))
    catalog.mark_object_handled("facerec-test-ingest", "Bob/a.jpg", "e1", "enrolled")

    face_index = FaceIndexTable(cloud.resource("dynamodb"), FACE_INDEX_TABLE)
    rows = {  # Ada's faces in two collections (the old one and a re-indexed one), and Bob's
        face_id(1): ("Ada", "Ada/a-0.png", "c1"),
        face_id(2): ("Ada", "Ada/b-0.png", "c1"),
        face_id(3): ("Ada", "Ada/a-0.png", "c2"),
        face_id(4): ("Bob", "Bob/a-0.png", "c1"),
        face_id(5): ("Ada_Lovelace", "Ada_Lovelace/a-0.png", "c2"),
    }
    for face_id_, (person, crop_key, collection_id) in rows.items():
        photo_key = crop_key.rsplit("-", 1)[0] + ".jpg"
        face_index.put(
            IndexRow(
                face_id_, person, photo_key, crop_key, external_image_id(crop_key), collection_id
            )
        )

    gallery = VectorGallery(cloud.client("s3vectors"), VECTOR_BUCKET, FACES_INDEX, CENTROIDS_INDEX)
    for person, faces in labelled.items():
        vectors = np.array([f.embedding for f in faces])
        gallery.put_faces([f.crop_key for f in faces], [person] * len(faces), vectors)
        gallery.put_centroid(person, vectors)
    vectors_client = cloud.client("s3vectors")
    assert vector_keys(vectors_client, FACES_INDEX) == sorted(
        [
            "Ada/a-0.png",
            "Ada/b-0.png",
            "Ada_Lovelace/a-0.png",
            "Ada_Lovelace/b-0.png",
            "Bob/a-0.png",
        ]
    )

    rekognition = cloud.client("rekognition")
    sent: list[dict] = []
    rekognition.meta.events.register(
        "provide-client-params.rekognition.DeleteFaces",
        lambda params, **_: sent.append(params),
    )
    with Stubber(rekognition) as stubber:
        for collection_id, deleted in (("c1", [face_id(1), face_id(2)]), ("c2", [face_id(3)])):
            stubber.add_response(
                "delete_faces",
                {"DeletedFaces": deleted},
                {"CollectionId": collection_id, "FaceIds": ANY},
            )
        result = forget(stores, face_index=face_index, rekognition=rekognition, vectors=gallery)
        stubber.assert_no_pending_responses()

    assert scans == []  # the person's items come from the person-folder index
    assert [(call["CollectionId"], sorted(call["FaceIds"])) for call in sent] == [
        ("c1", [face_id(1), face_id(2)]),
        ("c2", [face_id(3)]),
    ]
    assert result == {
        **DELETED,
        "rekognition_faces": 3,
        "face_vectors": 2,  # the labelled crops a-0 and b-0
        "other_records": 5,  # 3 crop pointers, 1 handled-event marker, 1 indexing claim
    }
    assert_only_others_remain(stores)
    assert sorted(row.face_id for row in face_index.rows()) == [face_id(4), face_id(5)]
    assert face_index.by_person("Ada") == []
    assert vector_keys(vectors_client, FACES_INDEX) == sorted(
        ["Ada_Lovelace/a-0.png", "Ada_Lovelace/b-0.png", "Bob/a-0.png"]
    )
    assert vector_keys(vectors_client, CENTROIDS_INDEX) == ["Ada_Lovelace", "Bob"]
    # the versioned buckets keep no old version or delete marker of anything deleted
    assert all_versions(s3, "facerec-test-models") == sorted([*KEPT_MODELS, RETRAINING])
    assert all_versions(s3, "facerec-test-ingest") == KEPT_INGEST
    assert catalog.indexing_state("c1", "Ada/a-0.png") is None
    assert catalog.object_handled("facerec-test-ingest", "Bob/a.jpg", "e1")
    assert catalog.current_model() is None

    with Stubber(rekognition) as stubber:  # a second run calls Rekognition not at all
        again = forget(stores, face_index=face_index, rekognition=rekognition, vectors=gallery)
        stubber.assert_no_pending_responses()
    assert again == {
        **NOTHING,
        "rekognition_faces": 0,
        "face_vectors": 0,
        "other_records": 0,
        "retrain_options": DELETED["retrain_options"],  # owed until the Retrain step
    }


# ---- the person's faces in other people's photos ------------------------------------------------


def test_the_persons_faces_in_other_peoples_photos_are_found_and_deleted(workspace):
    stores = workspace
    enrol_group(stores, np.random.default_rng(11))
    train(stores, "aligned", {}, TrainOptions(test_size=0))

    assert forget_group_faces("Ada", stores) == {"person": "Ada", "group_photo_faces": 2}

    assert not stores.faces.exists("Bob/party-1.png")
    assert not stores.faces.exists("Cy/trip-1.png")
    assert stores.faces.exists("Bob/party-2.png")  # the stranger stays
    assert stores.faces.exists("Ada/group-1.png")  # Ada's own photos go with her folder
    assert [f.face_id for f in stores.catalog.unlabelled_faces()] == [
        "Ada/group.jpg#1",
        "Bob/party.jpg#2",
    ]
    assert stores.catalog.get_photo("Bob/party.jpg").status == "enrolled"  # Bob's photo stays
    assert [f.face_id for f in stores.catalog.faces("Bob")][-1] == "Bob/party.jpg#0"
    assert forget_group_faces("Ada", stores) == {"person": "Ada", "group_photo_faces": 0}


def test_someone_enrolled_after_the_last_training_is_found_too(workspace):
    stores = workspace
    rng = np.random.default_rng(12)
    enrol_group(stores, rng)
    train(stores, "aligned", {}, TrainOptions(test_size=0))
    centre = unit_vector(rng.standard_normal(128))
    for number, embedding in enumerate(cluster(rng, centre, 4)):
        put_photo(stores, f"Fay/p{number}.jpg", [("Fay", embedding)])
    put_photo(
        stores,
        "Dee/beach.jpg",
        [("Dee", stores.catalog.faces("Dee")[0].embedding), (None, cluster(rng, centre, 1)[0])],
    )

    assert forget_group_faces("Fay", stores)["group_photo_faces"] == 1
    assert not stores.faces.exists("Dee/beach-1.png")


def test_without_a_trained_model_no_group_photo_is_searched_and_it_says_why(workspace):
    stores = workspace
    enrol_group(stores, np.random.default_rng(13))
    result = forget_group_faces("Ada", stores)
    assert result["group_photo_faces"] == 0
    assert "no trained model" in result["group_photo_faces_unchecked"]
    assert stores.faces.exists("Bob/party-1.png")


def test_forget_removes_group_faces_then_the_person_then_retrains(workspace):
    stores = workspace
    enrol_group(stores, np.random.default_rng(14))
    model, _ = train(stores, "aligned", {}, TrainOptions(test_size=0, far=0.05))
    asked: list[TrainOptions] = []

    def retrain(options: TrainOptions) -> dict:
        asked.append(options)
        return {"retrained": "next"}

    deleted = forget_all(stores, "Ada", retrain)

    assert deleted["group_photo_faces"] == 2 and deleted["models"] == [model.model_id]
    assert deleted["retrained"] == "next" and "retrain_options" not in deleted
    assert asked == [TrainOptions(test_size=0, far=0.05)]
    assert stores.catalog.faces("Ada") == [] and not list(stores.faces.keys("Ada/"))


def test_the_cloud_catalog_finds_unlabelled_faces_and_photos_through_its_indexes(cloud):
    dynamodb = cloud.resource("dynamodb")
    catalog = DynamoCatalog(dynamodb, CATALOG_TABLE, "facenet@abc")
    blob = {name: S3BlobStore(cloud.client("s3"), f"facerec-test-{name}") for name in BUCKETS}
    stores = Stores(**blob, catalog=catalog)
    enrol_group(stores, np.random.default_rng(15))
    catalog.put_photo(PhotoRecord("Ada/bad.jpg", "Ada", "sha-r", "rejected", "bad"), [])
    scans: list[dict] = []
    dynamodb.meta.client.meta.events.register(
        "provide-client-params.dynamodb.Scan", lambda params, **_: scans.append(params)
    )
    unlabelled = catalog.unlabelled_faces()
    assert [f.face_id for f in unlabelled] == [
        "Ada/group.jpg#1",
        "Bob/party.jpg#1",
        "Bob/party.jpg#2",
        "Cy/trip.jpg#1",
    ]
    assert [p.key for p in catalog.photos("Ada")] == [
        "Ada/bad.jpg",
        "Ada/group.jpg",
        *(f"Ada/p{n}.jpg" for n in range(6)),
    ]
    assert catalog.delete_faces(unlabelled[1:2]) == 1
    assert catalog.face_by_crop("Bob/party-1.png") is None
    assert [f.face_id for f in catalog.unlabelled_faces()] == [
        "Ada/group.jpg#1",
        "Bob/party.jpg#2",
        "Cy/trip.jpg#1",
    ]
    assert scans == []
