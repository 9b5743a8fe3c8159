"""The crop events under Lambda's asynchronous delivery, in simulated time: an invocation that
raises is retried a minute later and again two minutes after that (a timed-out one a minute
after its timeout), then its event goes to the dead-letter queue; events are also delivered
twice, and a crop's event reaches embed and index while align is still writing its photo's
catalog rows. IndexFaces fails through botocore's Stubber; PutVectors and the face-index
PutItem fail through botocore's event system on the clients moto serves. The indexing claims
read the simulated clock. Every crop ends indexed (FaceId row, claim ``indexed``, vector) or
its event lies in the dead-letter queue with the error that stopped it."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from unittest import mock

import pytest

from facerec.flows.chain import not_indexed_reason
from facerec.storage import aws
from facerec.storage.rekognition import external_image_id
from functions.align_faces.handler import handler as align
from functions.embed_faces.handler import handler as embed
from functions.events import object_event
from functions.index_faces.handler import handler as index
from tests.support import (
    ENV,
    SimulatedClock,
    fail_calls,
    index_params,
    indexed_response,
    object_created_event,
    sample_photos,
)

pytestmark = pytest.mark.model

INGEST, FACES = ENV["INGEST_BUCKET"], ENV["FACES_BUCKET"]
COLLECTION = ENV["COLLECTION_ID"]
RETRY_DELAYS = (60.0, 120.0)  # Lambda's two retries of a failed asynchronous invocation
INDEX_TIMEOUT = 60.0  # the index function's timeout (infra/config.py)
DUPLICATE_AFTER = 1.0  # a second delivery of the same crop event


class Killed(BaseException):
    """The function stopped at its timeout: none of its own except blocks run."""


@dataclass(order=True)
class Delivery:
    at: float
    number: int
    function: Callable = field(compare=False)
    event: dict = field(compare=False)
    attempt: int = field(default=0, compare=False)


class AsyncLambda:
    """Lambda's asynchronous invocation in simulated time. ``send`` queues an event ``delay``
    seconds from now, ``invoke`` runs one attempt at once, ``run`` delivers the queue in time
    order. A failed attempt is retried RETRY_DELAYS later (counted from the function's
    timeout for a Killed one); after the last, the event goes to ``dead_letters`` with its
    error type and message, as the dead-letter queue receives them."""

    def __init__(self, clock: SimulatedClock):
        self.clock = clock
        self.queue: list[Delivery] = []
        self.answers: list[tuple[str, dict]] = []
        self.dead_letters: list[dict] = []
        self.sent = 0

    def send(self, function: Callable, event: dict, delay: float = 0.0) -> None:
        self._queue(function, event, self.clock.now + delay, 0)

    def _queue(self, function: Callable, event: dict, at: float, attempt: int) -> None:
        self.sent += 1
        heapq.heappush(self.queue, Delivery(at, self.sent, function, event, attempt))

    def invoke(self, function: Callable, event: dict, attempt: int = 0) -> None:
        failed_at = self.clock.now
        try:
            answer = function(event, None)
        except Killed:
            failed_at += INDEX_TIMEOUT
            error = ("Sandbox.Timedout", "Task timed out")
        except Exception as raised:
            error = (type(raised).__name__, str(raised))
        else:
            self.answers.append((function.__module__.split(".")[1], answer))
            return
        if attempt < len(RETRY_DELAYS):
            self._queue(function, event, failed_at + RETRY_DELAYS[attempt], attempt + 1)
        else:
            name = function.__module__.split(".")[1]
            key = object_event(event).key
            self.dead_letters.append({"function": name, "key": key, "error": error})

    def run(self) -> None:
        while self.queue:
            delivery = heapq.heappop(self.queue)
            self.clock.now = max(self.clock.now, delivery.at)
            self.invoke(delivery.function, delivery.event, delivery.attempt)

    def statuses(self, function: str) -> list[str]:
        return [answer["status"] for name, answer in self.answers if name == function]


@pytest.fixture
def async_lambda():
    """The async invoker, and the indexing claims on its clock."""
    clock = SimulatedClock()
    with mock.patch.object(aws, "time", clock):
        yield AsyncLambda(clock)


def announce_crops(cloud, async_lambda: AsyncLambda) -> None:
    """S3 -> EventBridge for the faces bucket: each crop align puts reaches embed and index at
    once (align has not written the photo's catalog rows yet), and again DUPLICATE_AFTER
    seconds later."""
    events = cloud.app.stores.faces.client.meta.events

    def remember(params, context, **_):
        context["put"] = (params["Bucket"], params["Key"])

    def announce(http_response, context, **_):
        bucket, key = context["put"]
        if bucket != FACES or http_response.status_code != 200:
            return
        head = cloud.s3.head_object(Bucket=bucket, Key=key)
        event = object_created_event(bucket, key, head["ETag"], head["ContentLength"])
        for function in (embed, index):
            async_lambda.invoke(function, event)
            async_lambda.send(function, event, DUPLICATE_AFTER)

    events.register("before-parameter-build.s3.PutObject", remember)
    events.register("after-call.s3.PutObject", announce)


def upload(cloud, async_lambda: AsyncLambda, sample_set) -> str:
    """One photo uploaded and its event sent to align; its crop key."""
    photo = sample_photos(sample_set, "train", 1)[0]
    async_lambda.send(align, cloud.put(INGEST, f"ben_afflek/{photo.name}", photo.read_bytes()))
    return f"ben_afflek/{photo.stem}-0.png"


def aligned_crop_event(cloud, sample_set) -> dict:
    """One photo aligned at once; the event its crop's upload sent."""
    photo = sample_photos(sample_set, "train", 1)[0]
    assert align(cloud.put(INGEST, f"ben_afflek/{photo.name}", photo.read_bytes()))["faces"] == 1
    (event,) = cloud.created_events(FACES)
    return event


def assert_indexed(cloud, crop: str, face_id: str) -> None:
    """The crop's one FaceId row, its claim finished as indexed, its labelled vector."""
    rows = cloud.items(ENV["FACE_INDEX_TABLE"])
    assert [(row["face_id"]["S"], row["crop_key"]["S"]) for row in rows] == [(face_id, crop)]
    claim = cloud.app.catalog.indexing_state(COLLECTION, crop)
    assert (claim["state"], claim["face_id"]) == ("indexed", face_id)
    vectors = cloud.vectors(ENV["FACE_VECTOR_INDEX"])
    assert list(vectors) == [crop] and vectors[crop][0] == {"person": "ben_afflek"}
    assert list(cloud.vectors(ENV["CENTROID_VECTOR_INDEX"])) == ["ben_afflek"]


def test_a_crop_early_throttled_and_duplicated_ends_indexed_once(cloud, async_lambda, sample_set):
    """The crop's events reach embed and index before its catalog row (CropNotCatalogued, so
    Lambda retries them), their duplicates a second later meet a throttled PutVectors and a
    throttled IndexFaces; the retries a minute later store the vector and index the crop."""
    crop = upload(cloud, async_lambda, sample_set)
    announce_crops(cloud, async_lambda)
    put_vectors = fail_calls(
        cloud.app.s3vectors, "s3vectors.PutVectors", "TooManyRequestsException", 429, 1
    )
    external = external_image_id(crop)
    cloud.stubber.add_client_error(
        "index_faces", "ThrottlingException", "Rate exceeded", 400, index_params(external)
    )
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-1", external), index_params(external)
    )

    async_lambda.run()

    assert async_lambda.dead_letters == []
    assert async_lambda.statuses("align_faces") == ["enrolled"]
    assert async_lambda.statuses("index_faces") == ["indexed", "duplicate"]
    assert [
        answer["vectors"] for name, answer in async_lambda.answers if name == "embed_faces"
    ] == [
        "stored",
        "stored",
    ]
    assert len(put_vectors) == 1
    cloud.stubber.assert_no_pending_responses()  # IndexFaces: one throttled, one indexed
    assert_indexed(cloud, crop, "face-1")


def test_a_crop_throttled_on_every_attempt_lands_in_the_dead_letter_queue(
    cloud, async_lambda, sample_set
):
    """Every IndexFaces of both deliveries is throttled: both events end in the dead-letter
    queue with the throttling error, the claim says why, and the event redriven from the
    queue later indexes the crop."""
    crop = upload(cloud, async_lambda, sample_set)
    announce_crops(cloud, async_lambda)
    external = external_image_id(crop)
    for _ in range(2 * len(RETRY_DELAYS) + 1):  # the first attempt met no catalog row
        cloud.stubber.add_client_error(
            "index_faces", "ThrottlingException", "Rate exceeded", 400, index_params(external)
        )

    async_lambda.run()

    cloud.stubber.assert_no_pending_responses()
    assert async_lambda.statuses("index_faces") == []
    assert [(letter["function"], letter["key"]) for letter in async_lambda.dead_letters] == [
        ("index_faces", crop),
        ("index_faces", crop),
    ]
    for letter in async_lambda.dead_letters:
        assert letter["error"][0] == "ThrottlingException"
        assert "IndexFaces" in letter["error"][1]
    assert cloud.items(ENV["FACE_INDEX_TABLE"]) == []
    claim = cloud.app.catalog.indexing_state(COLLECTION, crop)
    assert claim["state"] == "failed" and claim["reason"].startswith("ThrottlingException")
    assert "ThrottlingException" in not_indexed_reason(cloud.app.catalog, COLLECTION, crop)

    cloud.stubber.add_response(
        "index_faces", indexed_response("face-1", external), index_params(external)
    )
    (redriven,) = {letter["key"] for letter in async_lambda.dead_letters}
    head = cloud.s3.head_object(Bucket=FACES, Key=redriven)
    async_lambda.send(
        index, object_created_event(FACES, redriven, head["ETag"], head["ContentLength"])
    )
    async_lambda.run()
    assert async_lambda.statuses("index_faces") == ["indexed"]
    assert_indexed(cloud, crop, "face-1")


def test_a_duplicate_while_a_fresh_claim_is_held_waits_and_a_timed_out_claim_is_taken_over(
    cloud, async_lambda, sample_set
):
    """The first invocation is stopped by its timeout inside IndexFaces, holding its claim.
    A duplicate five seconds later does not index the crop a second time; the first event's
    retry, two minutes on, takes the stale claim over and indexes it."""
    event = aligned_crop_event(cloud, sample_set)
    crop = object_event(event).key
    stopped = []

    def stop_once(**_):
        if not stopped:
            stopped.append(async_lambda.clock.now)
            raise Killed

    cloud.app.rekognition.meta.events.register(
        "before-parameter-build.rekognition.IndexFaces", stop_once
    )
    external = external_image_id(crop)
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-1", external), index_params(external)
    )
    embed(event)  # the vector, so that only indexing is at stake
    async_lambda.send(index, event)
    async_lambda.send(index, event, 5.0)

    async_lambda.run()

    assert len(stopped) == 1 and async_lambda.dead_letters == []
    assert async_lambda.statuses("index_faces") == ["in_progress", "indexed"]
    cloud.stubber.assert_no_pending_responses()  # IndexFaces answered once
    assert_indexed(cloud, crop, "face-1")


def test_a_face_id_left_by_a_failed_run_is_replaced_by_the_retry(cloud, async_lambda, sample_set):
    """IndexFaces answers, then writing the FaceId row is throttled: the retry deletes the
    FaceId the failed run left in the collection and indexes the crop again."""
    event = aligned_crop_event(cloud, sample_set)
    crop = object_event(event).key
    embed(event)
    face_index = cloud.app.stores.face_index.table.meta.client
    put_row = fail_calls(
        face_index, "dynamodb.PutItem", "ProvisionedThroughputExceededException", 400, 1
    )
    external = external_image_id(crop)
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-1", external), index_params(external)
    )
    cloud.stubber.add_response(
        "delete_faces",
        {"DeletedFaces": ["face-1"]},
        {"CollectionId": COLLECTION, "FaceIds": ["face-1"]},
    )
    cloud.stubber.add_response(
        "index_faces", indexed_response("face-2", external), index_params(external)
    )
    async_lambda.send(index, event)

    async_lambda.run()

    assert [json.loads(request["body"])["TableName"] for request in put_row] == [
        ENV["FACE_INDEX_TABLE"]
    ]
    assert async_lambda.dead_letters == [] and async_lambda.statuses("index_faces") == ["indexed"]
    cloud.stubber.assert_no_pending_responses()
    assert_indexed(cloud, crop, "face-2")
