"""Amazon Rekognition's stores: a face collection and the FaceId -> person table.

- IndexFaces gets one face crop per call (MaxFaces=1, QualityFilter=AUTO); its FaceId is
  mapped to the person in the face index table (many FaceIds per person).
- SearchFacesByImage searches with the largest face of an image only, so every face of a
  photo is sent as its own crop. Similarity and FaceMatchThreshold are on a 0-100 scale.
- A collection is tied to one face-model version; the crops stay in the faces bucket so
  everything can be re-indexed into a new collection.

boto3 is imported only where AWS is called: the local server runs without it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from facerec.core.errors import FaceNotIndexed, NoFaceFound
from facerec.core.records import FaceRecord

MAX_EXTERNAL_ID = 255
MAX_SEARCH_FACES = 4096
DELETE_BATCH = 4096
_SAFE = re.compile(r"[A-Za-z0-9_.\-]")


def external_image_id(crop_key: str) -> str:
    """A crop key as a Rekognition ExternalImageId (``[a-zA-Z0-9_.\\-:]+``, at most 255).

    Allowed characters pass; every other UTF-8 byte becomes ``:XX`` (upper-case hex), so the
    mapping is reversible. Keys whose encoding is longer than 255 are cut and end with ``::``
    and 16 hex digits of their sha256 (unique, not reversible: the table holds the real key)."""
    encoded = "".join(
        char if _SAFE.fullmatch(char) else "".join(f":{byte:02X}" for byte in char.encode())
        for char in crop_key
    )
    if len(encoded) <= MAX_EXTERNAL_ID:
        return encoded
    digest = hashlib.sha256(crop_key.encode()).hexdigest()[:16]
    head = encoded[: MAX_EXTERNAL_ID - 18]
    head = head[: head.rfind(":")] if ":" in head[-2:] else head  # never cut an escape
    return f"{head}::{digest}"


def crop_key_from_external_image_id(value: str) -> str | None:
    """Inverse of ``external_image_id``; None for a shortened (hashed) id."""
    if "::" in value:
        return None
    data, position = bytearray(), 0
    while position < len(value):
        if value[position] == ":":
            data.append(int(value[position + 1 : position + 3], 16))
            position += 3
        else:
            data += value[position].encode()
            position += 1
    return data.decode()


@dataclass(frozen=True)
class IndexedFace:
    face_id: str
    external_image_id: str
    confidence: float


@dataclass(frozen=True)
class FaceMatch:
    face_id: str
    similarity: float


class FaceCollection:
    """One Rekognition collection through a boto3 ``rekognition`` client."""

    def __init__(self, client, collection_id: str):
        self.client, self.collection_id = client, collection_id

    def index(self, crop: bytes, external_id: str) -> IndexedFace:
        """Index the one face of a crop. Raises FaceNotIndexed with Rekognition's reasons."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.index_faces(
                CollectionId=self.collection_id,
                Image={"Bytes": crop},
                ExternalImageId=external_id,
                MaxFaces=1,
                QualityFilter="AUTO",
                DetectionAttributes=["DEFAULT"],
            )
        except ClientError as error:
            if error.response["Error"]["Code"] in ("InvalidParameterException",):
                raise FaceNotIndexed(error.response["Error"]["Message"]) from None
            raise
        records = response.get("FaceRecords", [])
        if not records:
            reasons = sorted(
                {
                    reason
                    for face in response.get("UnindexedFaces", [])
                    for reason in face.get("Reasons", [])
                }
            )
            raise FaceNotIndexed(
                "Rekognition did not index the crop: "
                + (", ".join(reasons) if reasons else "no face detected")
            )
        face = records[0]["Face"]
        return IndexedFace(
            face["FaceId"],
            face.get("ExternalImageId", external_id),
            float(face.get("Confidence", 0.0)),
        )

    def search(self, crop: bytes, threshold: float = 0.0, max_faces: int = 1) -> list[FaceMatch]:
        """Matches for the largest face of ``crop``, best first; ``threshold`` 0-100.
        Raises NoFaceFound when Rekognition finds no face in it."""
        if not 0.0 <= threshold <= 100.0:
            raise ValueError(f"threshold is on Rekognition's 0-100 scale; got {threshold}")
        from botocore.exceptions import ClientError

        try:
            response = self.client.search_faces_by_image(
                CollectionId=self.collection_id,
                Image={"Bytes": crop},
                MaxFaces=max(1, min(max_faces, MAX_SEARCH_FACES)),
                FaceMatchThreshold=threshold,
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "InvalidParameterException":
                raise NoFaceFound(
                    f"Rekognition found no face in the crop ({error.response['Error']['Message']})"
                ) from None
            raise
        matches = [
            FaceMatch(match["Face"]["FaceId"], float(match["Similarity"]))
            for match in response.get("FaceMatches", [])
        ]
        return sorted(matches, key=lambda match: match.similarity, reverse=True)

    def delete(self, face_ids: Iterable[str]) -> list[str]:
        """Delete faces by FaceId; returns the ids Rekognition reports deleted."""
        face_ids, deleted = list(face_ids), []
        for start in range(0, len(face_ids), DELETE_BATCH):
            response = self.client.delete_faces(
                CollectionId=self.collection_id, FaceIds=face_ids[start : start + DELETE_BATCH]
            )
            deleted += response.get("DeletedFaces", [])
        return deleted

    def face_model_version(self) -> str:
        response = self.client.describe_collection(CollectionId=self.collection_id)
        return response["FaceModelVersion"]


@dataclass(frozen=True)
class IndexRow:
    """One row of the face index table: a FaceId and whose face it is."""

    face_id: str
    person: str
    photo_key: str
    crop_key: str
    external_image_id: str
    collection_id: str


class FaceIndexTable:
    """The FaceId -> person table (partition ``face_id``; GSI ``person-index`` on ``person``)."""

    def __init__(self, resource, table_name: str):
        self.table = resource.Table(table_name)

    def put(self, row: IndexRow) -> None:
        """Insert a new FaceId (a FaceId is never rewritten: conditional on its absence)."""
        from boto3.dynamodb.conditions import Attr
        from botocore.exceptions import ClientError

        try:
            self.table.put_item(Item=asdict(row), ConditionExpression=Attr("face_id").not_exists())
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def get(self, face_id: str) -> IndexRow | None:
        item = self.table.get_item(Key={"face_id": face_id}).get("Item")
        return _row(item) if item else None

    def people(self, face_ids: Iterable[str]) -> dict[str, str]:
        """FaceId -> person for those of ``face_ids`` that are in the table."""
        wanted, found = sorted(set(face_ids)), {}
        client = self.table.meta.client
        for start in range(0, len(wanted), 100):
            request = {
                self.table.name: {
                    "Keys": [{"face_id": face_id} for face_id in wanted[start : start + 100]]
                }
            }
            while request:
                response = client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.table.name, []):
                    found[item["face_id"]] = item["person"]
                request = response.get("UnprocessedKeys") or None
        return found

    def by_person(self, person: str) -> list[IndexRow]:
        from boto3.dynamodb.conditions import Key

        items, arguments = (
            [],
            {
                "IndexName": "person-index",
                "KeyConditionExpression": Key("person").eq(person),
            },
        )
        while True:
            page = self.table.query(**arguments)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [_row(item) for item in items]

    def for_crop(self, person: str, crop_key: str, collection_id: str) -> list[IndexRow]:
        """The rows of one crop in one collection (found through the person's rows)."""
        return [
            row
            for row in self.by_person(person)
            if row.crop_key == crop_key and row.collection_id == collection_id
        ]

    def rows(self, collection_id: str | None = None) -> list[IndexRow]:
        from boto3.dynamodb.conditions import Attr

        arguments = {}
        if collection_id is not None:
            arguments["FilterExpression"] = Attr("collection_id").eq(collection_id)
        items, page = [], self.table.scan(**arguments)
        items += page["Items"]
        while "LastEvaluatedKey" in page:
            page = self.table.scan(ExclusiveStartKey=page["LastEvaluatedKey"], **arguments)
            items += page["Items"]
        return [_row(item) for item in items]

    def delete(self, face_id: str) -> None:
        self.table.delete_item(Key={"face_id": face_id})


def _row(item: dict) -> IndexRow:
    return IndexRow(
        item["face_id"],
        item["person"],
        item["photo_key"],
        item["crop_key"],
        item["external_image_id"],
        item.get("collection_id", ""),
    )


@dataclass(frozen=True)
class RekognitionGallery:
    """What a collection holds for an evaluation: FaceId -> person (``face_people``, the
    lookup RekognitionEngine needs instead of its table), the training crops Rekognition
    refused (crop key -> reason), FaceIds that must never match (the held-out crops' own),
    and whether the collection was created for this evaluation."""

    collection_id: str
    face_people: dict[str, str]
    refused: dict[str, str] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()
    created_collection: bool = False

    def people(self, face_ids) -> dict[str, str]:
        return {
            face_id: self.face_people[face_id]
            for face_id in face_ids
            if face_id in self.face_people
        }


def open_collection(client, collection_id: str) -> tuple[FaceCollection, bool]:
    """The collection, created when it does not exist; True when it was created here."""
    from botocore.exceptions import ClientError

    try:
        client.describe_collection(CollectionId=collection_id)
        return FaceCollection(client, collection_id), False
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    client.create_collection(CollectionId=collection_id)
    return FaceCollection(client, collection_id), True


def index_gallery(
    collection: FaceCollection,
    faces: Sequence[FaceRecord],
    read_crop: Callable[[str], bytes],
    created: bool = False,
) -> RekognitionGallery:
    """IndexFaces with every training crop; crops Rekognition refuses are recorded with why."""
    people, refused = {}, {}
    for face in faces:
        try:
            indexed = collection.index(read_crop(face.crop_key), external_image_id(face.crop_key))
        except FaceNotIndexed as error:
            refused[face.crop_key] = str(error)
            continue
        people[indexed.face_id] = face.person
    return RekognitionGallery(collection.collection_id, people, refused, frozenset(), created)


def collection_gallery(
    collection_id: str,
    indexed: Mapping[str, str],
    training: Mapping[str, str],
    held_out: Iterable[str],
    why_missing: Callable[[str], str],
) -> RekognitionGallery:
    """The gallery of a collection that the enrolment chain filled (every labelled crop was
    indexed as it arrived, the held-out ones too). ``indexed`` maps the collection's FaceIds
    to their crop keys, ``training`` the training crops to their people, ``held_out`` lists
    the held-out crops, whose FaceIds are excluded from matching; a training crop missing
    from the collection is refused with ``why_missing(crop_key)``."""
    present, held_out = set(indexed.values()), set(held_out)
    return RekognitionGallery(
        collection_id,
        {face_id: training[crop] for face_id, crop in indexed.items() if crop in training},
        {crop: why_missing(crop) for crop in training if crop not in present},
        frozenset(face_id for face_id, crop in indexed.items() if crop in held_out),
    )


def cleanup(collection: FaceCollection, gallery: RekognitionGallery) -> dict:
    """Delete the faces an evaluation indexed, and the collection when it created it."""
    deleted = collection.delete(sorted(gallery.face_people))
    if gallery.created_collection:
        collection.client.delete_collection(CollectionId=gallery.collection_id)
    return {"faces_deleted": len(deleted), "collection_deleted": gallery.created_collection}
