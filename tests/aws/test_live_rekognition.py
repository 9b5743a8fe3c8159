"""Against a real AWS account (`pytest --run-aws`, with credentials and a region): the
Rekognition adapter indexes a sample-set crop in a temporary collection, finds the same
person from another photo, and cleans up. Skipped by default; never faked."""

from __future__ import annotations

import uuid

import boto3
import pytest

from facerec.storage.rekognition import FaceCollection
from facerec.vision.images import encode_png

pytestmark = [pytest.mark.aws, pytest.mark.model]


def crop_of(analyser, path) -> bytes:
    from facerec.vision.images import decode_image

    faces = analyser.analyse([decode_image(path.read_bytes())])[0]
    return encode_png(faces[0].crop)


def test_index_search_and_delete_in_a_real_collection(analyser, sample_set):
    client = boto3.client("rekognition")
    collection_id = f"facerec-test-{uuid.uuid4().hex[:12]}"
    client.create_collection(CollectionId=collection_id)
    try:
        collection = FaceCollection(client, collection_id)
        madonna = sorted((sample_set / "train" / "madonna").glob("*.jpg"))
        indexed = collection.index(crop_of(analyser, madonna[0]), "madonna_train_0")
        matches = collection.search(crop_of(analyser, madonna[1]), threshold=80.0)
        assert matches and matches[0].face_id == indexed.face_id
        assert 80.0 <= matches[0].similarity <= 100.0
        assert collection.delete([indexed.face_id]) == [indexed.face_id]
    finally:
        client.delete_collection(CollectionId=collection_id)
