"""The handlers' shared edge without the models: events parsed into object references and
batches, and the settings read from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.events import EventError, batch_items, object_event
from functions.settings import Settings, SettingsError
from tests.support import ENV, object_created_event, object_deleted_event

KEYS = [
    "A B/50%+c.jpg",
    "Zoë Saldaña/été à Paris (1).jpg",
    "李小龍/照片-0.png",
    "O'Brien, Conan/a+b=c & d%20e-0.png",
    "Jean-Claude Van Damme/~tilde* [x] #y?-0.png",
]


@pytest.mark.parametrize("key", KEYS)
def test_keys_arrive_url_encoded_and_are_decoded(key):
    event = object_created_event("bucket", key, '"abc"', 12)
    sent = event["detail"]["object"]["key"]
    assert sent.isascii() and " " not in sent and sent.count("/") == key.count("/")
    assert object_event(event).key == key
    assert object_event(event).etag == "abc"
    assert object_event(object_deleted_event("bucket", key)).key == key


def test_the_event_builder_encodes_as_s3_does():
    event = object_created_event("bucket", "A B/50%+c é.jpg", "abc", 12)
    assert event["detail"]["object"]["key"] == "A+B/50%25%2Bc+%C3%A9.jpg"


def test_eventbridge_and_notification_keys_decode_alike():
    """The same key as both event shapes show it: spaces as ``+`` or ``%20``, a slash as
    ``/`` or ``%2F``, a ``+`` as ``%2B`` and a ``%`` as ``%25``."""
    expected = "Zoë Saldaña/50% off + more.jpg"
    for sent in (
        "Zo%C3%AB+Salda%C3%B1a/50%25+off+%2B+more.jpg",
        "Zo%C3%AB%20Salda%C3%B1a%2F50%25%20off%20%2B%20more.jpg",
    ):
        bridge = object_created_event("bucket", "x", "abc", 12)
        bridge["detail"]["object"]["key"] = sent
        notification = {
            "Records": [
                {
                    "s3": {
                        "bucket": {"name": "bucket"},
                        "object": {"key": sent, "eTag": "abc", "size": 12},
                    }
                }
            ]
        }
        assert object_event(bridge).key == object_event(notification).key == expected
    with pytest.raises(EventError):
        object_event({"source": "aws.ec2", "detail-type": "Object Created"})


def test_batches_and_single_items_give_keys_and_unquoted_etags():
    items = [{"Key": "a", "ETag": '"1"', "Size": 1}, {"Key": "b", "ETag": "2", "Size": 2}]
    assert batch_items({"Items": items, "BatchInput": {}}) == [("a", "1"), ("b", "2")]
    assert batch_items(items[0]) == [("a", "1")]
    with pytest.raises(EventError):
        batch_items({})


def test_an_object_deleted_event_says_so():
    event = object_created_event("bucket", "A B/c-0.png", "abc", 10)
    assert object_event(event).deleted is False
    deleted = {**event, "detail-type": "Object Deleted"}
    assert (object_event(deleted).key, object_event(deleted).deleted) == ("A B/c-0.png", True)
    notification = {
        "Records": [
            {
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "bucket"}, "object": {"key": "A+B/c-0.png"}},
            }
        ]
    }
    assert (object_event(notification).key, object_event(notification).deleted) == (
        "A B/c-0.png",
        True,
    )


def test_settings_name_what_is_missing_or_wrong():
    with pytest.raises(SettingsError, match="INGEST_BUCKET"):
        Settings.from_env({})
    with pytest.raises(SettingsError, match="not a number"):
        Settings.from_env({**ENV, "REKOGNITION_MIN_SIMILARITY": "0.9x"})
    with pytest.raises(SettingsError, match="0-100"):
        Settings.from_env({**ENV, "REKOGNITION_MIN_SIMILARITY": "900"})
    with pytest.raises(SettingsError, match=r"EMBEDDING_PRECISION is one of .*'fp16'"):
        Settings.from_env({**ENV, "EMBEDDING_PRECISION": "fp16"})
    settings = Settings.from_env(ENV)
    assert settings.rekognition_min_similarity == 90.0 and settings.crop_method == "aligned"
    assert (settings.models_dir, settings.precision) == (Path("/opt/facerec/models"), "int8")
    chosen = Settings.from_env({**ENV, "MODELS_DIR": "/models", "EMBEDDING_PRECISION": "fp32"})
    assert (chosen.models_dir, chosen.precision) == (Path("/models"), "fp32")
    assert settings.function_memory_mb is None  # outside Lambda
    in_lambda = Settings.from_env({**ENV, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008"})
    assert in_lambda.function_memory_mb == 3008
