"""embed_faces and index_faces: a crop event from the faces bucket. Embeddings are written
only when missing or stale; IndexFaces runs once per crop version, for labelled faces only,
and its FaceId lands in the face index table exactly once, whatever the duplicates."""

from __future__ import annotations

import numpy as np
import pytest
from botocore.stub import ANY

from facerec.core.naming import crop_key
from facerec.flows.chain import CropNotCatalogued
from facerec.storage.rekognition import external_image_id
from functions.align_faces.handler import handler as align
from functions.embed_faces.handler import handler as embed
from functions.events import object_event
from functions.index_faces.handler import handler as index
from tests.support import (
    ENV,
    index_params,
    indexed_response,
    object_created_event,
    refused_response,
    sample_photos,
)

pytestmark = pytest.mark.model

INGEST, FACES = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"]
CATALOG, FACE_INDEX = ENV["CATALOG_TABLE"], ENV["FACE_INDEX_TABLE"]


@pytest.fixture
def crop_event(cloud, sample_set):
    """One photo aligned; the event its crop's upload sent."""
    photo = sample_photos(sample_set, "train", 1)[0]
    assert align(cloud.put(INGEST, f"ben_afflek/{photo.name}", photo.read_bytes()))["faces"] == 1
    (event,) = cloud.created_events(FACES)
    return event


def face_item(cloud) -> dict:
    (item,) = [item for item in cloud.catalog_items("PHOTO#") if item["sk"]["S"] != "META"]
    return item


def test_embed_leaves_a_current_embedding_alone(cloud, crop_event):
    before = face_item(cloud)
    assert embed(crop_event)["status"] == "unchanged"
    assert embed(crop_event)["status"] == "unchanged"
    assert face_item(cloud) == before


def test_embed_replaces_an_embedding_from_other_weights(cloud, crop_event):
    original = face_item(cloud)
    cloud.dynamodb.update_item(
        TableName=CATALOG,
        Key={"pk": original["pk"], "sk": original["sk"]},
        UpdateExpression="SET embedding = :zero, embedding_model = :old",
        ExpressionAttributeValues={
            ":zero": {"B": np.zeros(128, np.float32).tobytes()},
            ":old": {"S": "facenet-older-weights@000000000000"},
        },
    )

    assert embed(crop_event)["status"] == "embedded"

    item = face_item(cloud)
    assert item["embedding_model"]["S"] == cloud.app.catalog.embedding_model
    fresh = np.frombuffer(item["embedding"]["B"], np.float32)
    aligned = np.frombuffer(original["embedding"]["B"], np.float32)
    # the stored PNG crop is re-embedded: the same vector as align computed from the photo
    assert float(fresh @ aligned) > 0.999
    assert embed(crop_event)["status"] == "unchanged"


def test_crop_events_before_the_catalog_row_are_retried(cloud):
    event = cloud.put(FACES, "ben_afflek/early-0.png", b"png bytes")
    with pytest.raises(CropNotCatalogued):
        embed(event)
    with pytest.raises(CropNotCatalogued):
        index(event)
    assert cloud.items(FACE_INDEX) == []


def test_index_once_per_crop_whatever_the_duplicates(cloud, crop_event):
    crop_key = object_event(crop_event).key
    external = external_image_id(crop_key)
    assert external == crop_key.replace("/", ":2F") and "/" not in external
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-1", external), index_params(external)
    )

    first = index(crop_event)
    second = index(crop_event)
    quoted = '"' + crop_event["detail"]["object"]["etag"] + '"'  # as ListObjectsV2 gives it
    third = index(object_created_event(FACES, crop_key, quoted, 1000))

    cloud.stubber.assert_no_pending_responses()  # IndexFaces was called exactly once
    assert first == {**first, "status": "indexed", "face_id": "face-1"}
    assert second["status"] == third["status"] == "duplicate"
    (row,) = cloud.items(FACE_INDEX)
    assert {name: value["S"] for name, value in row.items()} == {
        "face_id": "face-1",
        "person": "ben_afflek",
        "photo_key": face_item(cloud)["photo_key"]["S"],
        "crop_key": crop_key,
        "external_image_id": external,
        "collection_id": ENV["COLLECTION_ID"],
    }
    (claim,) = cloud.catalog_items(f"REKOGNITION#{ENV['COLLECTION_ID']}")
    assert claim["state"]["S"] == "indexed" and claim["face_id"]["S"] == "face-1"


def test_a_new_version_of_the_crop_replaces_its_face(cloud, crop_event):
    crop_key = object_event(crop_event).key
    external = external_image_id(crop_key)
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-1", external), index_params(external)
    )
    index(crop_event)
    newer = object_created_event(FACES, crop_key, "ffffffffffffffffffffffffffffffff", 1000)
    cloud.stubber.add_response(
        "delete_faces",
        {"DeletedFaces": ["face-1"]},
        {"CollectionId": ENV["COLLECTION_ID"], "FaceIds": ["face-1"]},
    )
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-2", external), index_params(external)
    )

    assert index(newer)["face_id"] == "face-2"

    cloud.stubber.assert_no_pending_responses()
    assert [row["face_id"]["S"] for row in cloud.items(FACE_INDEX)] == ["face-2"]


def test_a_face_rekognition_refuses_is_recorded_not_retried(cloud, crop_event):
    crop_key = object_event(crop_event).key
    cloud.stubber.add_response("index_faces", refused_response(), index_params(ANY))

    assert index(crop_event)["status"] == "refused"
    assert index(crop_event)["status"] == "duplicate"

    cloud.stubber.assert_no_pending_responses()
    assert cloud.items(FACE_INDEX) == []
    (claim,) = cloud.catalog_items(f"REKOGNITION#{ENV['COLLECTION_ID']}")
    assert claim["state"]["S"] == "refused"
    assert "LOW_SHARPNESS" in claim["reason"]["S"] and claim["crop_key"]["S"] == crop_key


def test_faces_of_other_people_in_a_photo_are_not_indexed(cloud, enrolled, sample_set):
    _, outcomes, _ = enrolled
    group = next(outcome for outcome in outcomes if outcome.faces > 1)
    align(cloud.put(INGEST, group.key, (sample_set / "train" / group.key).read_bytes()))
    labelled = crop_key(group.key, group.labelled_face)
    for event in cloud.created_events(FACES):
        key = object_event(event).key
        if key == labelled:
            external = external_image_id(key)
            cloud.stubber.add_response(
                "index_faces", indexed_response("face-x", external), index_params(external)
            )
            assert index(event)["status"] == "indexed"
        else:
            assert index(event)["status"] == "skipped"
    cloud.stubber.assert_no_pending_responses()
    assert [row["crop_key"]["S"] for row in cloud.items(FACE_INDEX)] == [labelled]
