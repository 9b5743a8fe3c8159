"""The event shapes the functions receive, parsed into small typed objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus


class EventError(ValueError):
    """An event of a shape this function does not handle (a wiring error)."""


@dataclass(frozen=True)
class ObjectRef:
    """One S3 object version: bucket, key (decoded), ETag (unquoted), size in bytes, and
    whether the event says it was ``deleted`` (else created)."""

    bucket: str
    key: str
    etag: str
    size: int | None
    deleted: bool = False


DETAIL_TYPES = ("Object Created", "Object Deleted")


def object_event(event: dict) -> ObjectRef:
    """An EventBridge "Object Created" or "Object Deleted" event from S3, or an S3
    notification record (``Records``). S3 sends the key URL-encoded as a form value in both
    (a space as ``+``, a ``+`` as ``%2B``, ``%`` as ``%25``, UTF-8 bytes as ``%XX``); the key
    is decoded here."""
    if "Records" in event:
        records = event["Records"]
        if len(records) != 1 or "s3" not in records[0]:
            raise EventError("expected exactly one S3 notification record")
        s3 = records[0]["s3"]
        bucket, obj = s3["bucket"]["name"], s3["object"]
        deleted = records[0].get("eventName", "").startswith("ObjectRemoved")
    else:
        if event.get("source") != "aws.s3" or event.get("detail-type") not in DETAIL_TYPES:
            raise EventError(
                f"expected an aws.s3 'Object Created' or 'Object Deleted' event, got "
                f"{event.get('source')!r} {event.get('detail-type')!r}"
            )
        detail = event["detail"]
        bucket, obj = detail["bucket"]["name"], detail["object"]
        deleted = event["detail-type"] == "Object Deleted"
    size = obj.get("size")
    return ObjectRef(
        bucket,
        unquote_plus(obj["key"]),
        etag_of(obj),
        int(size) if size is not None else None,
        deleted,
    )


def etag_of(obj: dict) -> str:
    """An object's ETag unquoted (ListObjectsV2 quotes it, EventBridge does not)."""
    return str(obj.get("etag") or obj.get("eTag") or obj.get("ETag") or "").strip('"')


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    body: str | None
    is_base64: bool
    request_id: str
    path_parameters: dict[str, str]


def api_gateway(event: dict) -> HttpRequest:
    """An API Gateway REST proxy event (payload format 1.0)."""
    context = event.get("requestContext") or {}
    return HttpRequest(
        event.get("httpMethod", ""),
        event.get("resource") or event.get("path", ""),
        event.get("body"),
        bool(event.get("isBase64Encoded")),
        context.get("requestId", ""),
        event.get("pathParameters") or {},
    )


def http_response(
    status: int, body: dict, request_id: str = "", headers: dict | None = None
) -> dict:
    headers = {"Content-Type": "application/json", **(headers or {})}
    if request_id:
        headers["X-Request-Id"] = request_id
    return {
        "statusCode": status,
        "headers": headers,
        "body": json.dumps(body, ensure_ascii=False),
        "isBase64Encoded": False,
    }


def batch_items(event: dict) -> list[tuple[str, str]]:
    """A Distributed Map batch (``{"Items": [...], "BatchInput": {...}}``) or a single item
    (``{"Key": ..., "ETag": ..., "Size": ...}``) -> (key, unquoted ETag) per item."""
    if "Items" in event:
        items = list(event["Items"])
    elif "Key" in event:
        items = [event]
    else:
        raise EventError(
            "expected {'Items': [...]} from a Distributed Map or one {'Key': ...} item"
        )
    return [(item["Key"], etag_of(item)) for item in items]
