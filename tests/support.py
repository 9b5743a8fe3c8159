"""What the handler and chain tests share: the functions' environment, the AWS resources as the
stateful stack declares them (created in moto), real-shaped events (keys URL-encoded as S3
sends them), a simulated clock, service errors injected into real clients, and a view of what
the handlers left behind."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock
from urllib.parse import quote_plus

import boto3
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENV = {
    "INGEST_BUCKET": "facerec-test-ingest",
    "FACES_BUCKET": "facerec-test-faces",
    "MODELS_BUCKET": "facerec-test-models",
    "REPORTS_BUCKET": "facerec-test-reports",
    "QUARANTINE_BUCKET": "facerec-test-quarantine",
    "CATALOG_TABLE": "facerec-test-catalog",
    "FACE_INDEX_TABLE": "facerec-test-face-index",
    "COLLECTION_ID": "facerec-test",
    "VECTOR_BUCKET": "facerec-test-vectors",
    "FACE_VECTOR_INDEX": "faces",
    "CENTROID_VECTOR_INDEX": "centroids",
    "CROP_METHOD": "aligned",
    "REKOGNITION_MIN_SIMILARITY": "90",
    "LOG_LEVEL": "INFO",
}


def create_resources(session: boto3.session.Session) -> None:
    """Buckets and tables with the keys and indexes the stateful stack gives them."""
    s3 = session.client("s3")
    for name in ("INGEST", "FACES", "MODELS", "REPORTS", "QUARANTINE"):
        s3.create_bucket(Bucket=ENV[f"{name}_BUCKET"])
    s3.put_bucket_versioning(
        Bucket=ENV["MODELS_BUCKET"], VersioningConfiguration={"Status": "Enabled"}
    )
    vectors = session.client("s3vectors")
    vectors.create_vector_bucket(vectorBucketName=ENV["VECTOR_BUCKET"])
    for index in (ENV["FACE_VECTOR_INDEX"], ENV["CENTROID_VECTOR_INDEX"]):
        vectors.create_index(
            vectorBucketName=ENV["VECTOR_BUCKET"],
            indexName=index,
            dataType="float32",
            dimension=128,
            distanceMetric="cosine",
        )
    dynamodb = session.client("dynamodb")
    dynamodb.create_table(
        TableName=ENV["CATALOG_TABLE"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi3pk", "face_id")
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "gsi2",
                "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": "gsi3",
                "KeySchema": [
                    {"AttributeName": "gsi3pk", "KeyType": "HASH"},
                    {"AttributeName": "face_id", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
    )
    dynamodb.create_table(
        TableName=ENV["FACE_INDEX_TABLE"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "face_id", "AttributeType": "S"},
            {"AttributeName": "person", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "face_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "person-index",
                "KeySchema": [{"AttributeName": "person", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@contextmanager
def cloud_environment(analyser, models: Path) -> Iterator[Cloud]:
    """The functions' environment variables, moto with the stack's resources, the container's
    Services installed with the shared analyser, and a Stubber on its Rekognition client."""
    from functions import services as services_module
    from functions.settings import Settings

    environment = {
        **ENV,
        "MODELS_DIR": str(models),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    with mock.patch.dict(os.environ, environment), mock_aws():
        os.environ.pop("AWS_PROFILE", None)
        session = boto3.session.Session(region_name=REGION)
        create_resources(session)
        app = services_module.Services(Settings.from_env(), session=session, analyser=analyser)
        stubber = Stubber(app.rekognition)
        stubber.activate()
        services_module.install(app)
        try:
            yield Cloud(app, session, stubber)
        finally:
            services_module.install(None)
            stubber.deactivate()


class Cloud:
    """The installed Services plus helpers to inspect what the handlers left behind."""

    def __init__(self, app, session, stubber):
        self.app, self.session, self.stubber = app, session, stubber
        self.s3 = session.client("s3")
        self.dynamodb = session.client("dynamodb")

    def put(self, bucket: str, key: str, data: bytes) -> dict:
        """Upload an object and return the EventBridge event S3 sends for it."""
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        head = self.s3.head_object(Bucket=bucket, Key=key)
        return object_created_event(bucket, key, head["ETag"], head["ContentLength"])

    def keys(self, bucket: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def items(self, table: str) -> list[dict]:
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=table)
        return [item for page in pages for item in page["Items"]]

    def vectors(self, index: str) -> dict[str, tuple[dict, list[float]]]:
        """Every vector of one S3 Vectors index: key -> (metadata, data)."""
        client = self.session.client("s3vectors")
        arguments = {"vectorBucketName": ENV["VECTOR_BUCKET"], "indexName": index}
        found, token = {}, None
        while True:
            page = client.list_vectors(
                **arguments,
                returnData=True,
                returnMetadata=True,
                **({"nextToken": token} if token else {}),
            )
            for vector in page["vectors"]:
                found[vector["key"]] = (vector.get("metadata", {}), vector["data"]["float32"])
            token = page.get("nextToken")
            if not token:
                return found

    def catalog_items(self, prefix: str = "") -> list[dict]:
        return sorted(
            (
                item
                for item in self.items(ENV["CATALOG_TABLE"])
                if item["pk"]["S"].startswith(prefix)
            ),
            key=lambda item: (item["pk"]["S"], item["sk"]["S"]),
        )

    def created_events(self, bucket: str, prefix: str = "") -> list[dict]:
        """The "Object Created" events for every object now in ``bucket`` (as S3 sends)."""
        events = []
        for key in self.keys(bucket):
            if key.startswith(prefix):
                head = self.s3.head_object(Bucket=bucket, Key=key)
                events.append(
                    object_created_event(bucket, key, head["ETag"], head["ContentLength"])
                )
        return events


def encoded_key(key: str) -> str:
    """An object key as S3 writes it into an event: URL-encoded as a form value, ``/`` kept."""
    return quote_plus(key, safe="/")


def object_created_event(bucket: str, key: str, etag: str, size: int) -> dict:
    """An EventBridge event as S3 sends it for the object ``key`` (written encoded)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": "2026-11-28T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": encoded_key(key),
                "size": size,
                "etag": etag.strip('"'),
                "sequencer": "0062E99A88DC407460",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "198.51.100.7",
            "reason": "PutObject",
        },
    }


def object_deleted_event(bucket: str, key: str) -> dict:
    """The EventBridge event S3 sends when an object is deleted (no ETag, no size)."""
    event = object_created_event(bucket, key, "", 0)
    event["detail-type"] = "Object Deleted"
    event["detail"]["object"] = {"key": encoded_key(key), "sequencer": "0062E99A88DC407461"}
    event["detail"]["reason"] = "DeleteObject"
    event["detail"]["deletion-type"] = "Permanently Deleted"
    return event


class SimulatedClock:
    """Simulated time for a module that reads ``time.time()``: patch the module's ``time``
    with it (``mock.patch.object(module, "time", clock)``); ``time()`` answers ``now``
    (seconds), the rest of the time module is the real one."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def fail_calls(client, operation: str, code: str, status: int, times: int) -> list[dict]:
    """The next ``times`` calls of ``operation`` (``service.Operation``, e.g.
    ``s3vectors.PutVectors``) on ``client`` answer the error ``code`` with HTTP ``status``, as
    the service does once botocore's own retries are spent (botocore raises its modelled
    exception); later calls reach the service (moto). Returns the requests it failed
    (serialised: ``body``, ``url_path``, ...)."""
    failed = []

    def answer(params, **_):
        if len(failed) >= times:
            return None
        failed.append(params)
        error = {"Code": code, "Message": f"{code} on this call"}
        return AWSResponse(None, status, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    client.meta.events.register(f"before-call.{operation}", answer)
    return failed


def api_event(body: str | None, is_base64: bool = False) -> dict:
    """An API Gateway REST proxy event (IAM-authorised) for POST /identify."""
    return {
        "resource": "/identify",
        "path": "/identify",
        "httpMethod": "POST",
        "headers": {
            "Content-Type": "application/json",
            "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        },
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/identify",
            "httpMethod": "POST",
            "stage": "dev",
            "requestId": str(uuid.uuid4()),
            "identity": {"userArn": f"arn:aws:iam::{ACCOUNT}:user/tester", "caller": "AIDATESTER"},
            "accountId": ACCOUNT,
            "apiId": "abc123",
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sample_photos(sample_set: Path, split: str, per_person: int | None = None) -> list[Path]:
    """Photos of the sample set's ``split``, sorted; at most ``per_person`` per person."""
    photos = []
    for folder in sorted((sample_set / split).iterdir()):
        photos += sorted(folder.glob("*.jpg"))[:per_person]
    return photos


def indexed_response(face_id: str, external_id: str) -> dict:
    """An IndexFaces answer that indexed the crop's one face."""
    return {
        "FaceRecords": [
            {
                "Face": {
                    "FaceId": face_id,
                    "BoundingBox": {"Width": 0.6, "Height": 0.7, "Left": 0.2, "Top": 0.15},
                    "ImageId": str(uuid.uuid4()),
                    "ExternalImageId": external_id,
                    "Confidence": 99.99,
                },
                "FaceDetail": {"Confidence": 99.99},
            }
        ],
        "FaceModelVersion": "7.0",
        "UnindexedFaces": [],
    }


def refused_response() -> dict:
    """An IndexFaces answer whose quality filter refused the face."""
    return {
        "FaceRecords": [],
        "FaceModelVersion": "7.0",
        "UnindexedFaces": [{"Reasons": ["LOW_SHARPNESS", "SMALL_BOUNDING_BOX"]}],
    }


def search_response(matches: list[tuple[str, float]]) -> dict:
    """A SearchFacesByImage answer: (FaceId, similarity 0-100) pairs, best first."""
    return {
        "SearchedFaceBoundingBox": {"Width": 0.6, "Height": 0.7, "Left": 0.2, "Top": 0.15},
        "SearchedFaceConfidence": 99.9,
        "FaceMatches": [
            {"Similarity": similarity, "Face": {"FaceId": face_id, "Confidence": 99.9}}
            for face_id, similarity in matches
        ],
        "FaceModelVersion": "7.0",
    }


def index_params(external_id: str, collection_id: str = ENV["COLLECTION_ID"]) -> dict:
    from botocore.stub import ANY

    return {
        "CollectionId": collection_id,
        "Image": {"Bytes": ANY},
        "ExternalImageId": external_id,
        "MaxFaces": 1,
        "QualityFilter": "AUTO",
        "DetectionAttributes": ["DEFAULT"],
    }


def search_params(max_faces: int = 1, collection_id: str = ENV["COLLECTION_ID"]) -> dict:
    from botocore.stub import ANY

    return {
        "CollectionId": collection_id,
        "Image": {"Bytes": ANY},
        "MaxFaces": max_faces,
        "FaceMatchThreshold": 0.0,
    }


def install_model(cloud: Cloud, model) -> None:
    """Publish a trained model (e.g. the session's ``enrolled`` one) into the cloud stores."""
    from facerec.core.records import ModelRecord
    from facerec.flows.train import save_model

    keys = save_model(cloud.app.stores.models, model)
    created = model.metadata["created_at"]
    record = ModelRecord(model.model_id, keys["artifact"], created, model.metadata, keys["sha256"])
    cloud.app.catalog.put_model(record)


def copy_gallery(cloud: Cloud, local) -> dict[str, str]:
    """Put a local deployment's enrolled photos (into the ingest bucket too, as uploaded), faces
    and crops into the cloud stores, and a face index row per labelled crop (as index_faces
    leaves them). Returns crop key -> FaceId."""
    from facerec.storage.rekognition import IndexRow, external_image_id

    faces = local.stores.catalog.faces(labelled_only=False)
    face_ids = {}
    for photo_key in sorted({face.photo_key for face in faces}):
        own = [face for face in faces if face.photo_key == photo_key]
        cloud.app.stores.ingest.put(photo_key, local.stores.ingest.get(photo_key))
        cloud.app.catalog.put_photo(local.stores.catalog.get_photo(photo_key), own)
        for face in own:
            cloud.app.stores.faces.put(face.crop_key, local.stores.faces.get(face.crop_key))
            if face.person is not None:
                face_id = f"face-{len(face_ids):04d}"
                face_ids[face.crop_key] = face_id
                cloud.app.stores.face_index.put(
                    IndexRow(
                        face_id,
                        face.person,
                        photo_key,
                        face.crop_key,
                        external_image_id(face.crop_key),
                        ENV["COLLECTION_ID"],
                    )
                )
    return face_ids


def deploy_gallery(cloud: Cloud, local, model) -> dict[str, str]:
    """``local``'s enrolled photos, crops, face index rows and ``model`` in the cloud stores,
    every labelled face and centroid in the vector store (as the chain and training leave
    them). Returns crop key -> FaceId."""
    import numpy as np

    face_ids = copy_gallery(cloud, local)
    faces = local.stores.catalog.faces()
    vectors = cloud.app.stores.vectors
    vectors.put_faces(
        [face.crop_key for face in faces],
        [face.person for face in faces],
        np.stack([face.embedding for face in faces]),
    )
    for person in sorted({face.person for face in faces}):
        vectors.put_centroid(person, np.stack([f.embedding for f in faces if f.person == person]))
    install_model(cloud, model)
    return face_ids


def run_workflow(
    definition: dict,
    state: dict,
    invoke: Callable[[str, dict], dict],
    execution: str = "execution-1",
) -> tuple[str, dict]:
    """Run a state machine ``definition`` (Amazon States Language, as synthesized) from
    ``state``, as Step Functions would for the states these workflows use: a Lambda Task
    calls ``invoke(function ARN, state)`` (the answer becomes the state, or an error goes to
    the first Catch naming States.ALL or its type, under its ResultPath), Choice (IsPresent,
    BooleanEquals), Pass (its Parameters, under its ResultPath), Succeed and Fail. The
    execution is named ``execution`` (``$$.Execution.Name``). Retries are Lambda's and the
    service's, not simulated here. -> (SUCCEEDED or FAILED, the final state or {Error,
    Cause})."""
    context = {"Execution": {"Name": execution}}
    name = definition["StartAt"]
    while True:
        current = definition["States"][name]
        kind = current["Type"]
        if kind == "Succeed":
            return "SUCCEEDED", state
        if kind == "Fail":
            error = state.get("error", {})
            return "FAILED", {"Error": error.get("Error"), "Cause": error.get("Cause")}
        if kind == "Choice":
            name = next(
                (rule["Next"] for rule in current["Choices"] if _choice_holds(rule, state)),
                current.get("Default"),
            )
            continue
        if kind == "Task":
            try:
                state = invoke(current["Resource"], state)
            except Exception as error:  # the function's error, as Lambda reports it
                catcher = next(
                    catcher
                    for catcher in current.get("Catch", [])
                    if {"States.ALL", type(error).__name__} & set(catcher["ErrorEquals"])
                )
                caught = {"Error": type(error).__name__, "Cause": str(error)}
                state = _placed(state, catcher.get("ResultPath", "$"), caught)
                name = catcher["Next"]
                continue
        elif kind == "Pass":
            if "Parameters" in current:
                result = _parameters(current["Parameters"], state, context)
                state = _placed(state, current.get("ResultPath", "$"), result)
        else:
            raise NotImplementedError(f"state type {kind} ({name})")
        if current.get("End"):
            return "SUCCEEDED", state
        name = current["Next"]


def _placed(state: dict, result_path: str | None, result: dict) -> dict:
    """``state`` with ``result`` at a ResultPath: ``$`` (the result replaces the state),
    ``$.name`` (a top-level field) or None (the result is discarded)."""
    if result_path is None:
        return state
    if result_path == "$":
        return result
    return {**state, result_path.removeprefix("$."): result}


def _parameters(template: dict, state: dict, context: dict) -> dict:
    """A Parameters object: a ``name.$`` field takes the value at its path, ``$.a.b`` in the
    state or ``$$.a.b`` in the context object (no intrinsic functions); other fields as
    written."""
    built = {}
    for field, value in template.items():
        if not field.endswith(".$"):
            built[field] = value
            continue
        if not value.startswith(("$.", "$$.")):
            raise NotImplementedError(f"path or intrinsic function {value}")
        root, path = (context, value[3:]) if value.startswith("$$.") else (state, value[2:])
        for part in path.split("."):
            root = root[part]
        built[field.removesuffix(".$")] = root
    return built


def _choice_holds(rule: dict, state: dict) -> bool:
    """One Choice rule on a top-level ``$.name`` variable."""
    field = rule["Variable"].removeprefix("$.")
    if "IsPresent" in rule:
        return (field in state) == rule["IsPresent"]
    if "BooleanEquals" in rule:
        return state.get(field) == rule["BooleanEquals"]
    raise NotImplementedError(f"choice rule {rule}")
