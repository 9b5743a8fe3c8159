"""The scheduled reconciliation: crops whose events were lost (no vector, no FaceId), a crop
embedded by older weights and an orphan crop are found and repaired by the chain's own steps;
a second run finds nothing."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.storage.rekognition import external_image_id
from functions.align_faces.handler import handler as align
from functions.reconcile.handler import handler as reconcile
from tests.support import ENV, index_params, indexed_response, sample_photos

pytestmark = pytest.mark.model

INGEST, FACES, CATALOG = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"], ENV["CATALOG_TABLE"]


def test_lost_events_are_made_good_and_an_orphan_crop_deleted(cloud, sample_set):
    photos = [p for p in sample_photos(sample_set, "train", 2) if p.parent.name == "ben_afflek"]
    for photo in photos:  # aligned, but their crops' events never reached embed or index
        align(cloud.put(INGEST, f"ben_afflek/{photo.name}", photo.read_bytes()))
    crops = sorted(cloud.keys(FACES))
    stale = next(
        item for item in cloud.catalog_items("PHOTO#") if item["sk"]["S"].startswith("FACE#")
    )
    cloud.dynamodb.update_item(  # one face embedded by older weights
        TableName=CATALOG,
        Key={"pk": stale["pk"], "sk": stale["sk"]},
        UpdateExpression="SET embedding_model = :old",
        ExpressionAttributeValues={":old": {"S": "facenet-older-weights@000000000000"}},
    )
    cloud.s3.put_object(Bucket=FACES, Key="ben_afflek/never-recorded-0.png", Body=b"png")
    for number, crop in enumerate(crops):
        external = external_image_id(crop)
        cloud.stubber.add_response(
            "index_faces", indexed_response(f"face-{number}", external), index_params(external)
        )

    result = reconcile({"source": "aws.events", "detail-type": "Scheduled Event"})

    cloud.stubber.assert_no_pending_responses()
    assert result["found"] == {
        "crop": 0,
        "embedding": 1,
        "vector": len(crops),
        "face_id": len(crops),
        "orphan": 1,
    }
    assert result["repaired"] == result["found"] and result["failed"] == []
    assert set(cloud.vectors(ENV["FACE_VECTOR_INDEX"])) == set(crops)
    assert set(cloud.vectors(ENV["CENTROID_VECTOR_INDEX"])) == {"ben_afflek"}
    rows = cloud.items(ENV["FACE_INDEX_TABLE"])
    assert sorted(row["crop_key"]["S"] for row in rows) == crops
    assert cloud.keys(FACES) == crops  # the orphan is gone
    models = {
        item["embedding_model"]["S"]
        for item in cloud.catalog_items("PHOTO#")
        if item["sk"]["S"].startswith("FACE#")
    }
    assert models == {cloud.app.catalog.embedding_model}
    restamped = next(
        item for item in cloud.catalog_items(stale["pk"]["S"]) if item["sk"] == stale["sk"]
    )
    assert np.frombuffer(restamped["embedding"]["B"], np.float32).shape == (128,)

    again = reconcile({})
    assert sum(again["found"].values()) == 0 and sum(again["repaired"].values()) == 0
