"""The AWS adapters of the storage ports: a bucket as a BlobStore (S3) and the Catalog on one
DynamoDB table (single-table design). Clients, resources and names come in as arguments.

Catalog table items (partition ``pk``, sort ``sk``; overloaded GSI ``gsi1`` on ``gsi1pk`` /
``gsi1sk``; the person-folder GSI ``gsi2`` on ``gsi2pk`` alone, keys only; the labelled-face
GSI ``gsi3`` on ``gsi3pk`` / ``face_id``)::

    pk                    sk          gsi1pk        gsi1sk      gsi2pk     gsi3pk      what
    PHOTO#<ingest key>    META        SHA#<sha256>  PHOTO#<key> FOLDER#<p> -           a photo
    PHOTO#<ingest key>    FACE#<nnnn> PERSON#<name> FACE#<id>   FOLDER#<p> LABELLED#nn labelled face
    PHOTO#<ingest key>    FACE#<nnnn> UNLABELLED    FACE#<id>   FOLDER#<p> -           other face
    CROP#<crop key>       META        -             -           FOLDER#<p> -           crop -> face
    MODEL#<model id>      META        -             -           MODELS     -           a model
    MODEL                 CURRENT     -             -           -          -           current model
    TRAINING              LOCK        -             -           -          -           training lock
    OBJECT#<bucket>#<key> ETAG#<etag> -             -           FOLDER#<p> -           event handled
    REKOGNITION#<coll>    CROP#<key>  -             -           FOLDER#<p> -           index claim

``<p>`` is the first segment of the item's object key (``<Person>/...``): forgetting a person
reads their items from ``gsi2`` instead of scanning the table, and the other faces of every
photo (group photos) are one ``gsi1`` partition.

``gsi3`` holds the labelled faces only (sparse: ``gsi3pk`` is written with a face's label and
is absent from an unlabelled face, which a rewrite of the face item drops), all attributes
projected, spread over LABELLED_SHARDS partitions (``nn``: the CRC-32 of the face_id modulo
LABELLED_SHARDS), so that gathering every labelled face for training is one paged Query per
shard instead of a Scan of the table, and no one partition takes every labelled face's writes.
Faces written before ``gsi3`` existed lack ``gsi3pk``: ``DynamoCatalog.index_labelled_faces``
adds it, once, after the index is deployed.

Faces carry their embedding as float32 bytes and ``embedding_model`` (which weights made it).
"""

from __future__ import annotations

import json
import mimetypes
import time
import zlib
from collections.abc import Iterator
from decimal import Decimal
from types import EllipsisType

import numpy as np
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from facerec.core.records import FaceRecord, ModelRecord, PhotoRecord

MISSING_OBJECT_CODES = ("404", "NoSuchKey", "NotFound")
# Errors a retry with back-off can cure (throttling, a service briefly unavailable or failing),
# as the services' API references name them: Rekognition (ThrottlingException,
# ProvisionedThroughputExceededException, InternalServerError), DynamoDB (the same three and
# RequestLimitExceeded), S3 Vectors (TooManyRequestsException, ServiceUnavailableException,
# InternalServerException, RequestTimeoutException) and S3 (SlowDown, ServiceUnavailable,
# InternalError, RequestTimeout). Any other 5xx or 429 answer counts as transient too.
TRANSIENT_CODES = (
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "InternalServerError",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailableException",
    "InternalServerException",
    "RequestTimeoutException",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
)
MODELS = "MODELS"  # gsi2 partition of the registered models
UNLABELLED = "UNLABELLED"  # gsi1 partition of the faces that are nobody's label
FOLDER_INDEX = "gsi2"  # the person-folder index: keys only, partition ``gsi2pk``
LABELLED_INDEX = "gsi3"  # the labelled faces only: partition ``gsi3pk``, sort ``face_id``
LABELLED_SHARDS = 16  # gsi3 partitions, LABELLED#00 .. LABELLED#15
TRAINING_LOCK = {"pk": "TRAINING", "sk": "LOCK"}  # one training at a time (lock_training)
_DESERIALIZE = TypeDeserializer()


class S3BlobStore:
    """One S3 bucket as a BlobStore. ``get`` raises FileNotFoundError for a missing key, as the
    folder adapter does."""

    def __init__(self, client, bucket: str):
        self.client, self.bucket = client, bucket

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` with the content type its extension implies (an HTML report then
        opens in a browser from a presigned link instead of downloading)."""
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in MISSING_OBJECT_CODES:
                raise FileNotFoundError(f"no object {key!r} in bucket {self.bucket}") from None
            raise

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""
        head = self._head(key)
        return None if head is None else head["ContentLength"]

    def etag(self, key: str) -> str | None:
        """The object's ETag, unquoted, or None when it does not exist."""
        head = self._head(key)
        return None if head is None else head["ETag"].strip('"')

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in MISSING_OBJECT_CODES:
                return None
            raise

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    def purge(self, prefix: str) -> int:
        """Delete every version and delete marker of every key under ``prefix`` (a plain
        DeleteObject would leave the old versions of a versioned bucket). The listing is read
        to the end before anything is deleted: a page must not start at a deleted version."""
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        versions = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for page in pages
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(versions), 1000):  # DeleteObjects takes 1,000 at most
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": versions[start : start + 1000], "Quiet": True},
            )
            if response.get("Errors"):
                error = response["Errors"][0]
                raise RuntimeError(
                    f"S3 refused to delete {len(response['Errors'])} object versions in "
                    f"{self.bucket} (first: {error.get('Code')}: {error.get('Message')})"
                )
        return len({item["Key"] for item in versions})


def permanent_failure(error: Exception) -> str | None:
    """Why an AWS call failed for good (``code: message``), or None when ``error`` is not an
    AWS error or a retry may cure it (TRANSIENT_CODES, or an HTTP status of 429 or 5xx)."""
    if not isinstance(error, ClientError):
        return None
    code = error.response["Error"]["Code"]
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return None
    return f"{code}: {error.response['Error'].get('Message', '')}"


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(float(value), 6)))


def _face_sk(index: int) -> str:
    return f"FACE#{index:04d}"


def _labelled_partition(shard: int) -> str:
    return f"LABELLED#{shard:02d}"


def _labelled_shard(face_id: str) -> str:
    """The ``gsi3`` partition of a labelled face: ``LABELLED#nn``, ``nn`` the CRC-32 of its
    face_id modulo LABELLED_SHARDS (the same in every process, unlike ``hash``)."""
    return _labelled_partition(zlib.crc32(face_id.encode()) % LABELLED_SHARDS)


def _folder(key: str) -> dict:
    """The person-folder index attribute of an item about object ``key`` (``<Person>/...``);
    none for a key outside any folder."""
    folder, slash, _ = key.partition("/")
    return {"gsi2pk": f"FOLDER#{folder}"} if slash and folder else {}


class DynamoCatalog:
    """The Catalog port on one DynamoDB table (see the module docstring for the items).

    ``embedding_model`` is stamped on every face written (e.g. the weights' model id and hash),
    so a change of weights shows which embeddings are stale."""

    def __init__(self, resource, table_name: str, embedding_model: str = ""):
        self.table = resource.Table(table_name)
        self.embedding_model = embedding_model

    # ---- photos and faces -------------------------------------------------------------------

    def get_photo(self, key: str) -> PhotoRecord | None:
        item = self.table.get_item(Key={"pk": f"PHOTO#{key}", "sk": "META"}).get("Item")
        return _photo(item) if item else None

    def photo_with_sha256(self, sha256: str) -> PhotoRecord | None:
        items = self.table.query(
            IndexName="gsi1",
            KeyConditionExpression=Key("gsi1pk").eq(f"SHA#{sha256}"),
            Limit=1,
        )["Items"]
        return self.get_photo(items[0]["key"]) if items else None

    def put_photo(self, photo: PhotoRecord, faces: list[FaceRecord]) -> None:
        """Replace the photo and all of its faces. Faces first, the photo item last: a photo
        item is only ever visible with its faces in place (a retry rewrites the same items)."""
        existing = self._photo_items(photo.key)
        new_sks = {_face_sk(face.index) for face in faces}
        with self.table.batch_writer() as batch:
            for face in faces:
                batch.put_item(Item=self._face_item(face))
                batch.put_item(
                    Item={
                        "pk": f"CROP#{face.crop_key}",
                        "sk": "META",
                        "photo_key": face.photo_key,
                        "index": face.index,
                        **_folder(face.crop_key),
                    }
                )
            for item in existing:
                if item["sk"].startswith("FACE#") and item["sk"] not in new_sks:
                    batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
                    batch.delete_item(Key={"pk": f"CROP#{item['crop_key']}", "sk": "META"})
        self.table.put_item(
            Item={
                "pk": f"PHOTO#{photo.key}",
                "sk": "META",
                "gsi1pk": f"SHA#{photo.sha256}",
                "gsi1sk": f"PHOTO#{photo.key}",
                "key": photo.key,
                "person": photo.person,
                "sha256": photo.sha256,
                "status": photo.status,
                "reason": photo.reason,
                "face_count": photo.face_count,
                "width": photo.width,
                "height": photo.height,
                "updated_at": _now(),
                **_folder(photo.key),
            }
        )

    def _photo_items(self, key: str) -> list[dict]:
        return list(_items(self.table.query, KeyConditionExpression=Key("pk").eq(f"PHOTO#{key}")))

    def _face_item(self, face: FaceRecord) -> dict:
        item = {
            "pk": f"PHOTO#{face.photo_key}",
            "sk": _face_sk(face.index),
            "face_id": face.face_id,
            "photo_key": face.photo_key,
            "index": face.index,
            "box": list(face.box),
            "confidence": _decimal(face.confidence),
            "crop_key": face.crop_key,
            "crop_method": face.crop_method,
            "embedding": np.asarray(face.embedding, dtype=np.float32).tobytes(),
            "embedding_model": self.embedding_model,
            "gsi1sk": f"FACE#{face.face_id}",
            **_folder(face.photo_key),
        }
        if face.person is not None:
            item.update(
                person=face.person,
                gsi1pk=f"PERSON#{face.person}",
                gsi3pk=_labelled_shard(face.face_id),
            )
        else:
            item["gsi1pk"] = UNLABELLED
        return item

    def faces(self, person: str | None = None, labelled_only: bool = True) -> list[FaceRecord]:
        """Faces ordered by face_id, by paged queries, never a scan: ``person``'s (their
        ``gsi1`` partition), else every labelled face (the LABELLED_SHARDS partitions of
        ``gsi3``) and, unless ``labelled_only``, the unlabelled ones (``gsi1``) too."""
        if person is not None:
            partitions = [("gsi1", Key("gsi1pk").eq(f"PERSON#{person}"))]
        else:
            partitions = [
                (LABELLED_INDEX, Key("gsi3pk").eq(_labelled_partition(shard)))
                for shard in range(LABELLED_SHARDS)
            ]
            if not labelled_only:
                partitions.append(("gsi1", Key("gsi1pk").eq(UNLABELLED)))
        faces = [
            _face(item)
            for index, condition in partitions
            for item in _items(self.table.query, IndexName=index, KeyConditionExpression=condition)
        ]
        return sorted(faces, key=lambda face: face.face_id)

    def index_labelled_faces(self) -> int:
        """Give ``gsi3pk`` to the labelled faces written before ``gsi3`` existed (one paged
        scan of the face items that lack it); the count given. Run it once after deploying the
        index, as someone allowed Scan and UpdateItem on the table, e.g.
        ``DynamoCatalog(boto3.resource("dynamodb"), "<catalog table>").index_labelled_faces()``;
        a second run finds nothing to do. A face relabelled or deleted meanwhile is skipped:
        its new item is already right."""
        missing = (
            Attr("sk").begins_with("FACE#") & Attr("person").exists() & Attr("gsi3pk").not_exists()
        )
        given = 0
        for item in _items(
            self.table.scan, FilterExpression=missing, ProjectionExpression="pk, sk, face_id"
        ):
            try:
                self.table.update_item(
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    UpdateExpression="SET gsi3pk = :shard",
                    ConditionExpression=Attr("person").exists()
                    & Attr("face_id").eq(item["face_id"]),
                    ExpressionAttributeValues={":shard": _labelled_shard(item["face_id"])},
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                continue
            given += 1
        return given

    def face_by_crop(self, crop_key: str) -> FaceRecord | None:
        """The face a crop belongs to, or None if no enrolled photo holds it."""
        pointer = self.table.get_item(Key={"pk": f"CROP#{crop_key}", "sk": "META"}).get("Item")
        if pointer is None:
            return None
        item = self.table.get_item(
            Key={"pk": f"PHOTO#{pointer['photo_key']}", "sk": _face_sk(int(pointer["index"]))}
        ).get("Item")
        return _face(item) if item else None

    def set_embedding(self, face: FaceRecord, embedding: np.ndarray) -> None:
        """Replace one face's embedding (stamped with this catalog's embedding model)."""
        self.table.update_item(
            Key={"pk": f"PHOTO#{face.photo_key}", "sk": _face_sk(face.index)},
            UpdateExpression="SET embedding = :embedding, embedding_model = :model",
            ConditionExpression=Attr("pk").exists(),
            ExpressionAttributeValues={
                ":embedding": np.asarray(embedding, dtype=np.float32).tobytes(),
                ":model": self.embedding_model,
            },
        )

    # ---- models ------------------------------------------------------------------------------

    def put_model(self, model: ModelRecord, replaces: str | EllipsisType | None = ...) -> bool:
        """Register a model and make it current in one transaction, if the current model is
        still ``replaces`` (its id; None: no current model; ``...``: the one current now).
        False, with nothing written, when another model became current meanwhile."""
        if replaces is ...:
            current = self.current_model()
            replaces = current.model_id if current else None
        pointer = {"TableName": self.table.name, "Item": _model_item(model, "MODEL", "CURRENT")}
        if replaces is None:
            pointer["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            pointer["ConditionExpression"] = "model_id = :replaces"
            pointer["ExpressionAttributeValues"] = {":replaces": replaces}
        registered = {**_model_item(model, f"MODEL#{model.model_id}", "META"), "gsi2pk": MODELS}
        try:
            self.table.meta.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.table.name, "Item": registered}},
                    {"Put": pointer},
                ]
            )
        except ClientError as error:
            reasons = [
                reason.get("Code") for reason in error.response.get("CancellationReasons", [])
            ]
            if "ConditionalCheckFailed" in reasons:
                return False
            raise
        return True

    def get_model(self, model_id: str) -> ModelRecord | None:
        item = self.table.get_item(Key={"pk": f"MODEL#{model_id}", "sk": "META"}).get("Item")
        return _model(item) if item else None

    def current_model(self) -> ModelRecord | None:
        item = self.table.get_item(Key={"pk": "MODEL", "sk": "CURRENT"}).get("Item")
        return _model(item) if item else None

    def models(self) -> list[ModelRecord]:
        """Every registered model (the ``MODELS`` partition of ``gsi2``), oldest first."""
        models = [self.get_model(pk.removeprefix("MODEL#")) for pk, _ in self._folder_keys(MODELS)]
        return sorted(filter(None, models), key=lambda model: model.model_id)

    def delete_model(self, model_id: str) -> None:
        """Delete a model's record, and the current-model pointer when it points at it."""
        self.table.delete_item(Key={"pk": f"MODEL#{model_id}", "sk": "META"})
        try:
            self.table.delete_item(
                Key={"pk": "MODEL", "sk": "CURRENT"},
                ConditionExpression=Attr("model_id").eq(model_id),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def lock_training(self, owner: str, seconds: float) -> dict | None:
        """Take the one training lock for ``owner`` (a training execution) for ``seconds``:
        None when ``owner`` holds it now (also when it already did: a retried step takes it
        again), else the lock another owner holds (``owner``, ``expires_at`` epoch seconds),
        which can be taken over once expired."""
        now = time.time()
        try:
            self.table.put_item(
                Item={**TRAINING_LOCK, "owner": owner, "expires_at": _decimal(now + seconds)},
                ConditionExpression=Attr("pk").not_exists()
                | Attr("expires_at").lt(_decimal(now))
                | Attr("owner").eq(owner),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            held = error.response.get("Item", {})
            return {name: _DESERIALIZE.deserialize(value) for name, value in held.items()}
        return None

    def unlock_training(self, owner: str) -> bool:
        """Release the training lock if ``owner`` holds it; False when it does not."""
        try:
            self.table.delete_item(Key=TRAINING_LOCK, ConditionExpression=Attr("owner").eq(owner))
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def forget_person(self, person: str) -> dict[str, int]:
        """Delete every item about the person's folder (``gsi2``, no scan): their photos and
        faces, crop pointers, handled-event markers and Rekognition indexing claims."""
        photos = faces = other = 0
        with self.table.batch_writer() as batch:
            for pk, sk in self._folder_keys(f"FOLDER#{person}"):
                photos += pk.startswith("PHOTO#") and sk == "META"
                faces += pk.startswith("PHOTO#") and sk.startswith("FACE#")
                other += not pk.startswith("PHOTO#")
                batch.delete_item(Key={"pk": pk, "sk": sk})
        return {"photo_records": photos, "face_records": faces, "other_records": other}

    def photos(self, person: str) -> list[PhotoRecord]:
        """The photos in the person's folder, any status, ordered by key (``gsi2``)."""
        keys = sorted(
            pk.removeprefix("PHOTO#")
            for pk, sk in self._folder_keys(f"FOLDER#{person}")
            if pk.startswith("PHOTO#") and sk == "META"
        )
        return [photo for key in keys if (photo := self.get_photo(key)) is not None]

    def unlabelled_faces(self) -> list[FaceRecord]:
        """The faces that are nobody's label (the other faces of group photos), by face_id:
        one ``gsi1`` partition."""
        items = _items(
            self.table.query, IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq(UNLABELLED)
        )
        return sorted((_face(item) for item in items), key=lambda face: face.face_id)

    def delete_faces(self, faces: list[FaceRecord]) -> int:
        """Delete these faces' records and crop pointers (their photos stay); the count."""
        with self.table.batch_writer() as batch:
            for face in faces:
                batch.delete_item(Key={"pk": f"PHOTO#{face.photo_key}", "sk": _face_sk(face.index)})
                batch.delete_item(Key={"pk": f"CROP#{face.crop_key}", "sk": "META"})
        return len(faces)

    def _folder_keys(self, partition: str) -> list[tuple[str, str]]:
        """(pk, sk) of every item in one ``gsi2`` partition."""
        items = _items(
            self.table.query,
            IndexName=FOLDER_INDEX,
            KeyConditionExpression=Key("gsi2pk").eq(partition),
        )
        return [(item["pk"], item["sk"]) for item in items]

    # ---- idempotency ----------------------------------------------------------------------

    def object_handled(self, bucket: str, key: str, etag: str) -> bool:
        """Whether an event for this object version (key + ETag) was already handled."""
        item = self.table.get_item(Key={"pk": f"OBJECT#{bucket}#{key}", "sk": f"ETAG#{etag}"}).get(
            "Item"
        )
        return item is not None

    def mark_object_handled(self, bucket: str, key: str, etag: str, outcome: str) -> None:
        self.table.put_item(
            Item={
                "pk": f"OBJECT#{bucket}#{key}",
                "sk": f"ETAG#{etag}",
                "outcome": outcome,
                "handled_at": _now(),
                **_folder(key),
            }
        )

    def claim_indexing(
        self, collection_id: str, crop_key: str, etag: str, stale_after: float = 60.0
    ) -> dict | None:
        """Claim the right to index one crop version into a collection (a conditional write).

        Returns the claim, or None when another invocation holds a fresh claim or the same
        crop version is already indexed (or refused). A claim that ``failed`` can be taken
        over at once, one still ``pending`` after ``stale_after`` seconds too (its holder was
        stopped: a claim lives for one IndexFaces, inside the index function's 60 s timeout,
        and Lambda retries a failed event a minute later), and so can one for an older crop
        version. The FaceId the previous claim holds, if any, is returned in ``replaces`` for
        the caller to delete."""
        key = {"pk": f"REKOGNITION#{collection_id}", "sk": f"CROP#{crop_key}"}
        now = time.time()
        previous = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        claim = {**key, "crop_key": crop_key, "etag": etag, "state": "pending", **_folder(crop_key)}
        claim["claimed_at"] = _decimal(now)
        if previous is None:
            condition = Attr("pk").not_exists()
        elif previous["etag"] == etag and (
            previous["state"] in ("indexed", "refused")
            or (
                previous["state"] == "pending" and now - float(previous["claimed_at"]) < stale_after
            )
        ):
            return None
        else:
            condition = Attr("claimed_at").eq(previous["claimed_at"])
            if previous.get("face_id"):
                claim["replaces"] = previous["face_id"]
        try:
            self.table.put_item(Item=claim, ConditionExpression=condition)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return claim

    def finish_indexing(self, claim: dict, state: str, face_id: str = "", reason: str = "") -> bool:
        """``state``: indexed (with ``face_id``), refused (with ``reason``) or failed (with
        ``reason``, and the ``face_id`` the failed run left in the collection, if any: the
        next claim replaces it). False when the claim was taken over meanwhile (the caller
        then undoes its own work)."""
        item = {key: value for key, value in claim.items() if key != "replaces"}
        item.update(state=state, reason=reason, finished_at=_now())
        if face_id:
            item["face_id"] = face_id
        try:
            self.table.put_item(
                Item=item, ConditionExpression=Attr("claimed_at").eq(claim["claimed_at"])
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def indexing_state(self, collection_id: str, crop_key: str) -> dict | None:
        return self.table.get_item(
            Key={"pk": f"REKOGNITION#{collection_id}", "sk": f"CROP#{crop_key}"}
        ).get("Item")

    def release_indexing(self, collection_id: str, crop_key: str) -> None:
        """Forget a crop's claim (its crop was deleted), so the crop written again is
        indexed again."""
        self.table.delete_item(Key={"pk": f"REKOGNITION#{collection_id}", "sk": f"CROP#{crop_key}"})

    # ---- counts ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """people (labelled), photos by status, faces, labelled faces, models (one scan)."""
        counts = dict.fromkeys(
            (
                "people",
                "photos",
                "photos_enrolled",
                "photos_no_face",
                "photos_rejected",
                "faces",
                "faces_labelled",
                "models",
            ),
            0,
        )
        people = set()
        projection = "pk, sk, #status, person"
        for item in _items(
            self.table.scan,
            ProjectionExpression=projection,
            ExpressionAttributeNames={"#status": "status"},
        ):
            pk, sk = item["pk"], item["sk"]
            if pk.startswith("PHOTO#") and sk == "META":
                counts["photos"] += 1
                status_key = f"photos_{item['status']}"
                if status_key in counts:
                    counts[status_key] += 1
            elif pk.startswith("PHOTO#") and sk.startswith("FACE#"):
                counts["faces"] += 1
                if "person" in item:
                    counts["faces_labelled"] += 1
                    people.add(item["person"])
            elif pk.startswith("MODEL#"):
                counts["models"] += 1
        counts["people"] = len(people)
        return counts


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _items(call, **arguments) -> Iterator[dict]:
    """Every item of a ``table.query`` or ``table.scan``, page by page (LastEvaluatedKey),
    one page (at most 1 MB) held at a time."""
    page = call(**arguments)
    yield from page["Items"]
    while "LastEvaluatedKey" in page:
        page = call(ExclusiveStartKey=page["LastEvaluatedKey"], **arguments)
        yield from page["Items"]


def _photo(item: dict) -> PhotoRecord:
    return PhotoRecord(
        item["key"],
        item["person"],
        item["sha256"],
        item["status"],
        item.get("reason", ""),
        int(item.get("face_count", 0)),
        int(item.get("width", 0)),
        int(item.get("height", 0)),
    )


def _face(item: dict) -> FaceRecord:
    return FaceRecord(
        item["face_id"],
        item["photo_key"],
        int(item["index"]),
        item.get("person"),
        tuple(int(value) for value in item["box"]),
        float(item["confidence"]),
        item["crop_key"],
        item["crop_method"],
        np.frombuffer(bytes(item["embedding"]), dtype=np.float32).copy(),
        item.get("embedding_model", ""),
    )


def _model_item(model: ModelRecord, pk: str, sk: str) -> dict:
    """A model's pointer; its figures compressed, as every model item has been (those written
    before the metadata moved to the models store hold all of it)."""
    return {
        "pk": pk,
        "sk": sk,
        "model_id": model.model_id,
        "artifact_key": model.artifact_key,
        "created_at": model.created_at,
        "metadata": zlib.compress(json.dumps(model.metadata).encode()),
        "sha256": model.sha256,
    }


def _model(item: dict) -> ModelRecord:
    return ModelRecord(
        item["model_id"],
        item["artifact_key"],
        item["created_at"],
        json.loads(zlib.decompress(bytes(item["metadata"]))),
        item.get("sha256", ""),
    )
