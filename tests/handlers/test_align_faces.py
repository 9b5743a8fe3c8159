"""align_faces: ingest "Object Created" -> crops in the faces bucket, photo and faces in the
catalog table; duplicates change nothing; bad photos are quarantined with their reason and the
original stays in the ingest bucket."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from facerec.storage.rekognition import external_image_id
from functions.align_faces.handler import handler
from functions.embed_faces.handler import handler as embed
from functions.index_faces.handler import handler as index
from tests.support import (
    ENV,
    index_params,
    indexed_response,
    object_created_event,
    sample_photos,
)

pytestmark = pytest.mark.model

INGEST, FACES, QUARANTINE = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"], ENV["QUARANTINE_BUCKET"]


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def snapshot(cloud) -> tuple:
    return (
        cloud.keys(INGEST),
        cloud.keys(FACES),
        cloud.keys(QUARANTINE),
        [(item["pk"]["S"], item["sk"]["S"]) for item in cloud.catalog_items()],
    )


def test_photo_is_cropped_and_catalogued_once(cloud, sample_set):
    photo = sample_photos(sample_set, "train", 1)[0]
    key = f"ben_afflek/{photo.name}"
    event = cloud.put(INGEST, key, photo.read_bytes())

    result = handler(event)

    assert result["status"] == "enrolled" and result["faces"] == 1
    crop_key = f"ben_afflek/{photo.stem}-0.png"
    assert cloud.keys(FACES) == [crop_key]
    crop = Image.open(io.BytesIO(cloud.get(FACES, crop_key)))
    assert crop.format == "PNG" and crop.size == (160, 160)
    assert cloud.keys(QUARANTINE) == []
    assert cloud.keys(INGEST) == [key]  # the original is not rewritten
    meta, face = cloud.catalog_items(f"PHOTO#{key}")
    assert meta["sk"]["S"] == "FACE#0000" or face["sk"]["S"] == "FACE#0000"
    meta, face = sorted((meta, face), key=lambda item: item["sk"]["S"] != "META")
    assert meta["status"]["S"] == "enrolled" and meta["face_count"]["N"] == "1"
    assert meta["sha256"]["S"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert face["person"]["S"] == "ben_afflek" and face["gsi1pk"]["S"] == "PERSON#ben_afflek"
    embedding = np.frombuffer(face["embedding"]["B"], np.float32)
    assert embedding.shape == (128,) and abs(np.linalg.norm(embedding) - 1) < 1e-4
    assert face["embedding_model"]["S"] == cloud.app.catalog.embedding_model
    assert cloud.catalog_items(f"CROP#{crop_key}")[0]["photo_key"]["S"] == key
    marker = cloud.catalog_items(f"OBJECT#{INGEST}#{key}")
    assert [item["sk"]["S"] for item in marker] == [f"ETAG#{event['detail']['object']['etag']}"]

    before = snapshot(cloud)
    assert handler(event)["status"] == "duplicate_event"
    assert snapshot(cloud) == before


def test_same_bytes_again_are_recognised_by_content(cloud, sample_set):
    photo = sample_photos(sample_set, "train", 1)[1]
    data = photo.read_bytes()
    first = handler(cloud.put(INGEST, f"elton_john/{photo.name}", data))
    assert first["status"] == "enrolled"
    before = snapshot(cloud)

    # the same bytes uploaded again (a new ETag on a multipart upload looks like this)
    event = cloud.put(INGEST, f"elton_john/{photo.name}", data)
    event["detail"]["object"]["etag"] = "0123456789abcdef0123456789abcdef-2"
    assert handler(event)["status"] == "unchanged"
    # ... and under another name
    copy = handler(cloud.put(INGEST, f"elton_john/copy-{photo.name}", data))
    assert copy["status"] == "duplicate"

    ingest, faces, quarantine, items = snapshot(cloud)
    assert faces == before[1] and quarantine == before[2]
    assert sorted(set(ingest) - set(before[0])) == [f"elton_john/copy-{photo.name}"]
    new_items = sorted(set(items) - set(before[3]))
    assert all(pk.startswith("OBJECT#") for pk, _ in new_items)  # only the event markers


@pytest.mark.parametrize(
    ("key", "data", "status", "code", "catalogued"),
    [
        ("madonna/notes.jpg", b"these are not image bytes", "rejected", "not_an_image", True),
        ("madonna/empty.jpg", b"", "rejected", "empty_file", True),
        ("madonna/blank.png", blank_png(), "no_face", "no_face", True),
        ("no-person-folder.jpg", blank_png(), "rejected", "invalid_label", False),
        ("madonna/deeper/photo.jpg", blank_png(), "rejected", "invalid_label", False),
        ("../madonna/x.jpg", blank_png(), "rejected", "invalid_label", False),
    ],
)
def test_bad_photo_is_quarantined_with_its_reason(cloud, key, data, status, code, catalogued):
    event = cloud.put(INGEST, key, data)

    result = handler(event)

    assert (result["status"], result["code"]) == (status, code)
    sha = hashlib.sha256(data).hexdigest()
    # in the person's folder when the key names one; at the top for a key nobody owns
    stored = f"{key.split('/')[0]}/{sha}" if catalogued else sha
    assert cloud.keys(QUARANTINE) == [f"{stored}.bin", f"{stored}.json"]
    assert cloud.get(QUARANTINE, f"{stored}.bin") == data  # nothing is lost
    reason = json.loads(cloud.get(QUARANTINE, f"{stored}.json"))
    assert reason["code"] == code and reason["reason"]
    assert reason["key"] in (key, f"/{key}")  # enrolment shows a folderless key as /<key>
    assert cloud.keys(INGEST) == [key]  # the original stays where it was uploaded
    assert cloud.keys(FACES) == []
    photos = cloud.catalog_items("PHOTO#")
    if catalogued:
        assert [(item["pk"]["S"], item["status"]["S"]) for item in photos] == [
            (f"PHOTO#{key}", status)
        ]
    else:
        assert photos == []
    before = snapshot(cloud)
    assert handler(event)["status"] == "duplicate_event"
    assert snapshot(cloud) == before


def test_photo_over_the_size_limit_is_not_downloaded(cloud):
    key = "madonna/huge.jpg"
    cloud.put(INGEST, key, b"small stand-in body")
    event = object_created_event(INGEST, key, "abc", 16 * 2**20)

    result = handler(event)

    assert (result["status"], result["code"]) == ("rejected", "image_too_large")
    (quarantined,) = cloud.keys(QUARANTINE)
    reason = json.loads(cloud.get(QUARANTINE, quarantined))
    assert reason == {
        "key": key,
        "code": "image_too_large",
        "reason": "the file is 16.0 MB; the limit is 15 MB",
        "bytes_copied": False,
    }
    (photo,) = cloud.catalog_items("PHOTO#")
    assert photo["status"]["S"] == "rejected"
    assert cloud.keys(INGEST) == [key]


def test_keys_with_spaces_plus_percent_and_accents_reach_every_handler_decoded(cloud, sample_set):
    """S3 sends keys URL-encoded in its events: the upload, its crop and the crop's FaceId
    row all carry the key as it was written."""
    photo = sample_photos(sample_set, "train", 1)[2]
    key = "Zoë Saldaña/50% off + más (1).jpg"
    event = cloud.put(INGEST, key, photo.read_bytes())
    assert event["detail"]["object"]["key"] != key  # sent encoded

    assert handler(event)["status"] == "enrolled"

    crop = "Zoë Saldaña/50% off + más (1)-0.png"
    assert cloud.keys(FACES) == [crop]
    assert cloud.catalog_items(f"PHOTO#{key}")
    (crop_event,) = cloud.created_events(FACES)
    assert embed(crop_event)["vectors"] == "stored"
    assert list(cloud.vectors(ENV["FACE_VECTOR_INDEX"])) == [crop]
    external = external_image_id(crop)
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-1", external), index_params(external)
    )
    assert index(crop_event)["status"] == "indexed"
    (row,) = cloud.items(ENV["FACE_INDEX_TABLE"])
    assert (row["crop_key"]["S"], row["photo_key"]["S"]) == (crop, key)


def test_a_photo_with_several_faces_keeps_every_crop_and_labels_one(cloud, enrolled, sample_set):
    _, outcomes, _ = enrolled
    group = next(outcome for outcome in outcomes if outcome.faces > 1)
    data = (sample_set / "train" / group.key).read_bytes()

    result = handler(cloud.put(INGEST, group.key, data))

    faces = [item for item in cloud.catalog_items("PHOTO#") if item["sk"]["S"] != "META"]
    assert result["faces"] == len(faces) == len(cloud.keys(FACES)) == group.faces
    assert [item["person"]["S"] for item in faces if "person" in item] == [group.person]
    # the labelled face is its person's in gsi1; the others are the unlabelled partition
    assert sorted(item["gsi1pk"]["S"] for item in faces) == sorted(
        [f"PERSON#{group.person}"] + ["UNLABELLED"] * (group.faces - 1)
    )
    folder = group.key.split("/")[0]
    assert {item["gsi2pk"]["S"] for item in faces} == {f"FOLDER#{folder}"}


def test_events_from_another_bucket_are_refused(cloud):
    event = object_created_event(FACES, "ben_afflek/x-0.png", "abc", 10)
    with pytest.raises(ValueError, match="ingest bucket only"):
        handler(event)
