"""reindex: a Distributed Map batch over the faces bucket re-embeds every crop and indexes it
into the current collection; a failed crop is listed with its reason, the rest go on."""

from __future__ import annotations

import dataclasses

import pytest

from facerec.storage.rekognition import external_image_id
from functions import services as services_module
from functions.align_faces.handler import handler as align
from functions.reindex.handler import handler as reindex
from tests.support import (
    ENV,
    index_params,
    indexed_response,
    sample_photos,
)

pytestmark = pytest.mark.model

INGEST, FACES = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"]


def listed(cloud) -> list[dict]:
    """The items ItemReader (S3 ListObjectsV2) hands the map: Key, ETag (quoted), Size."""
    page = cloud.s3.list_objects_v2(Bucket=FACES)
    return [{key: item[key] for key in ("Key", "ETag", "Size")} for item in page["Contents"]]


def test_a_batch_is_reembedded_and_indexed_into_a_new_collection(cloud, sample_set):
    for photo in sample_photos(sample_set, "train", 1)[:2]:
        align(cloud.put(INGEST, f"{photo.parent.name}/{photo.name}", photo.read_bytes()))
    items = listed(cloud)
    assert len(items) == 2
    cloud.put(FACES, "orphan/no-photo-0.png", b"\x89PNG not catalogued")
    batch = {"Items": [*listed(cloud)], "BatchInput": {"reason": "new weights"}}
    for item in items:
        external = external_image_id(item["Key"])
        cloud.stubber.add_response(
            "index_faces", indexed_response(f"old-{item['Key']}", external), index_params(external)
        )

    result = reindex(batch)

    cloud.stubber.assert_no_pending_responses()
    assert result["processed"] == 2
    assert result["failed"] == [
        {
            "key": "orphan/no-photo-0.png",
            "reason": "crop_not_catalogued: no catalogued face holds this crop yet",
        }
    ]
    assert len(cloud.items(ENV["FACE_INDEX_TABLE"])) == 2
    assert sorted(cloud.vectors(ENV["FACE_VECTOR_INDEX"])) == sorted(i["Key"] for i in items)
    people = sorted(cloud.vectors(ENV["CENTROID_VECTOR_INDEX"]))
    assert people == sorted(item["Key"].split("/")[0] for item in items)

    # the same batch again: the embeddings are rewritten, nothing is indexed twice
    assert reindex(batch)["processed"] == 2
    cloud.stubber.assert_no_pending_responses()

    # a new collection (a newer face model): every crop is indexed into it
    settings = dataclasses.replace(cloud.app.settings, collection_id="facerec-test-v2")
    app = services_module.Services(settings, session=cloud.session, analyser=cloud.app.analyser)
    services_module.install(app)
    from botocore.stub import Stubber

    with Stubber(app.rekognition) as stubber:
        for item in items:
            external = external_image_id(item["Key"])
            stubber.add_response(
                "index_faces",
                indexed_response(f"new-{item['Key']}", external),
                {**index_params(external), "CollectionId": "facerec-test-v2"},
            )
        assert reindex({"Items": items, "BatchInput": {}}) == {"processed": 2, "failed": []}
        stubber.assert_no_pending_responses()
    rows = cloud.items(ENV["FACE_INDEX_TABLE"])
    assert sorted(row["collection_id"]["S"] for row in rows) == [
        "facerec-test",
        "facerec-test",
        "facerec-test-v2",
        "facerec-test-v2",
    ]


def test_a_single_item_without_a_batcher_is_accepted(cloud):
    result = reindex({"Key": "nobody/x-0.png", "ETag": '"abc"', "Size": 3})
    assert result["processed"] == 0 and result["failed"][0]["key"] == "nobody/x-0.png"
