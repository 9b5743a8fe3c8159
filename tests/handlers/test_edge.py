"""The handlers' shared edge without the models: events parsed into object references and
batches, and the settings read from the environment."""

from __future__ import annotations

import pytest

from functions.events import EventError, batch_items, object_event
from functions.settings import Settings, SettingsError
from tests.support import ENV, object_created_event


def test_eventbridge_keys_are_literal_and_notification_keys_decoded():
    event = object_created_event("bucket", "A B/50%+c.jpg", '"abc"', 12)
    assert object_event(event).key == "A B/50%+c.jpg"
    assert object_event(event).etag == "abc"
    notification = {
        "Records": [
            {
                "s3": {
                    "bucket": {"name": "bucket"},
                    "object": {"key": "A+B/50%25%2Bc.jpg", "eTag": "abc", "size": 12},
                }
            }
        ]
    }
    assert object_event(notification).key == "A B/50%+c.jpg"
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
    settings = Settings.from_env(ENV)
    assert settings.rekognition_min_similarity == 90.0 and settings.crop_method == "aligned"
    assert settings.function_memory_mb is None  # outside Lambda
    in_lambda = Settings.from_env({**ENV, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008"})
    assert in_lambda.function_memory_mb == 3008
