"""reindex: a Distributed Map batch over the faces bucket re-embeds every crop and indexes it
into the current collection. A crop that fails for good does not stop the rest, but fails the
batch afterwards (so the map counts it); a throttled or failing service fails it at once (the
map's retry backs off)."""

from __future__ import annotations

import dataclasses

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from facerec.flows.chain import BatchFailed
from facerec.storage.aws import permanent_failure
from facerec.storage.rekognition import external_image_id
from functions import services as services_module
from functions.align_faces.handler import handler as align
from functions.reindex.handler import handler as reindex
from tests.support import (
    ENV,
    fail_calls,
    index_params,
    indexed_response,
    sample_photos,
)

INGEST, FACES = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"]
ORPHAN = "orphan/no-photo-0.png"


def listed(cloud) -> list[dict]:
    """The items ItemReader (S3 ListObjectsV2) hands the map: Key, ETag (quoted), Size."""
    page = cloud.s3.list_objects_v2(Bucket=FACES)
    return [{key: item[key] for key in ("Key", "ETag", "Size")} for item in page["Contents"]]


@pytest.fixture
def two_crops(cloud, sample_set) -> list[dict]:
    """Two people's photos aligned; their crops as the map lists them."""
    for photo in sample_photos(sample_set, "train", 1)[:2]:
        align(cloud.put(INGEST, f"{photo.parent.name}/{photo.name}", photo.read_bytes()))
    items = listed(cloud)
    assert len(items) == 2
    return items


def expect_index_faces(stubber, items: list[dict], prefix: str, collection: str) -> None:
    for item in items:
        external = external_image_id(item["Key"])
        stubber.add_response(
            "index_faces",
            indexed_response(f"{prefix}-{item['Key']}", external),
            {**index_params(external), "CollectionId": collection},
        )


def test_a_batch_is_reembedded_and_indexed_into_a_new_collection(cloud, two_crops):
    batch = {"Items": two_crops, "BatchInput": {"reason": "new weights"}}
    expect_index_faces(cloud.stubber, two_crops, "old", ENV["COLLECTION_ID"])

    assert reindex(batch) == {"processed": 2, "statuses": {"indexed": 2}}

    cloud.stubber.assert_no_pending_responses()
    assert len(cloud.items(ENV["FACE_INDEX_TABLE"])) == 2
    keys = sorted(item["Key"] for item in two_crops)
    assert sorted(cloud.vectors(ENV["FACE_VECTOR_INDEX"])) == keys
    people = sorted(cloud.vectors(ENV["CENTROID_VECTOR_INDEX"]))
    assert people == sorted(key.split("/")[0] for key in keys)

    # the same batch again: the embeddings are rewritten, nothing is indexed twice
    assert reindex(batch) == {"processed": 2, "statuses": {"duplicate": 2}}
    cloud.stubber.assert_no_pending_responses()

    # a new collection (a newer face model): every crop is indexed into it
    settings = dataclasses.replace(cloud.app.settings, collection_id="facerec-test-v2")
    app = services_module.Services(settings, session=cloud.session, analyser=cloud.app.analyser)
    services_module.install(app)
    with Stubber(app.rekognition) as stubber:
        expect_index_faces(stubber, two_crops, "new", "facerec-test-v2")
        assert reindex({"Items": two_crops, "BatchInput": {}})["processed"] == 2
        stubber.assert_no_pending_responses()
    rows = cloud.items(ENV["FACE_INDEX_TABLE"])
    assert sorted(row["collection_id"]["S"] for row in rows) == [
        "facerec-test",
        "facerec-test",
        "facerec-test-v2",
        "facerec-test-v2",
    ]


def test_a_crop_that_fails_for_good_fails_the_batch_after_the_rest(cloud, two_crops):
    cloud.put(FACES, ORPHAN, b"\x89PNG not catalogued")
    items = listed(cloud)
    assert [item["Key"] for item in items][-1] == ORPHAN  # the last of three
    expect_index_faces(cloud.stubber, two_crops, "old", ENV["COLLECTION_ID"])

    with pytest.raises(BatchFailed) as failure:
        reindex({"Items": items, "BatchInput": {}})

    assert str(failure.value) == (
        "1 of 3 crops of the batch failed for good: item 3: crop_not_catalogued: no catalogued "
        "face holds this crop yet"
    )
    assert type(failure.value).__name__ == "BatchFailed"  # the map's error name
    assert failure.value.outcome == {"processed": 2, "statuses": {"indexed": 2}}
    cloud.stubber.assert_no_pending_responses()  # the two good crops were indexed
    assert len(cloud.items(ENV["FACE_INDEX_TABLE"])) == 2
    assert sorted(cloud.vectors(ENV["FACE_VECTOR_INDEX"])) == sorted(
        item["Key"] for item in two_crops
    )


def test_a_batch_where_every_crop_fails_names_the_first_reasons(cloud):
    items = [{"Key": f"nobody/x{number}-0.png", "ETag": '"abc"', "Size": 3} for number in range(5)]

    with pytest.raises(BatchFailed, match=r"^5 of 5 crops .*item 3: crop_not_catalogued") as e:
        reindex({"Items": items, "BatchInput": {}})

    assert str(e.value).endswith("; 2 more") and "item 4" not in str(e.value)
    assert "nobody" not in str(e.value)  # keys (they name people) are not in the message
    assert [item["key"] for item in e.value.failed] == [item["Key"] for item in items]


def test_a_single_item_without_a_batcher_is_accepted(cloud):
    with pytest.raises(BatchFailed, match=r"^1 of 1 crops"):
        reindex({"Key": "nobody/x-0.png", "ETag": '"abc"', "Size": 3})


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("s3vectors.PutVectors", "TooManyRequestsException", 429),
        ("s3vectors.PutVectors", "ServiceUnavailableException", 503),
        ("s3vectors.PutVectors", "InternalServerException", 500),
    ],
)
def test_a_throttled_or_failing_service_fails_the_batch_at_once(
    cloud, two_crops, operation, code, status
):
    failed = fail_calls(cloud.app.s3vectors, operation, code, status, 1)

    with pytest.raises(ClientError) as error:
        reindex({"Items": two_crops, "BatchInput": {}})

    assert type(error.value).__name__ == code  # the error name the map's retry matches
    assert len(failed) == 1  # the first crop's call; the second crop was not tried
    assert cloud.items(ENV["FACE_INDEX_TABLE"]) == []


def test_a_throttled_index_faces_fails_the_batch_and_its_retry_indexes_the_crop(cloud, two_crops):
    first = two_crops[0]
    external = external_image_id(first["Key"])
    cloud.stubber.add_client_error(
        "index_faces", "ThrottlingException", "Rate exceeded", 400, index_params(external)
    )
    with pytest.raises(ClientError, match="ThrottlingException"):
        reindex({"Items": two_crops, "BatchInput": {}})

    expect_index_faces(cloud.stubber, two_crops, "old", ENV["COLLECTION_ID"])
    assert reindex({"Items": two_crops, "BatchInput": {}})["processed"] == 2  # the map retries
    cloud.stubber.assert_no_pending_responses()
    assert len(cloud.items(ENV["FACE_INDEX_TABLE"])) == 2


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "AnyOperation",
    )


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",  # Rekognition, DynamoDB
        "ProvisionedThroughputExceededException",  # Rekognition, DynamoDB
        "InternalServerError",  # Rekognition, DynamoDB
        "RequestLimitExceeded",  # DynamoDB
        "TooManyRequestsException",  # S3 Vectors
        "ServiceUnavailableException",  # S3 Vectors
        "InternalServerException",  # S3 Vectors
        "RequestTimeoutException",  # S3 Vectors
        "SlowDown",  # S3
    ],
)
def test_transient_errors_are_left_to_the_retries(code):
    assert permanent_failure(client_error(code, 400)) is None


def test_what_fails_for_good_gets_a_reason_and_any_5xx_or_429_is_transient():
    assert permanent_failure(client_error("AccessDeniedException", 400)) == (
        "AccessDeniedException: m"
    )
    assert permanent_failure(client_error("SomeNewError", 502)) is None
    assert permanent_failure(client_error("SomeNewError", 429)) is None
    assert permanent_failure(ValueError("not an AWS error")) is None
