"""Handlers against moto (S3, DynamoDB) and botocore's Stubber (Rekognition: moto has no
collections); the models are the real ones (the session's ``analyser``)."""

from __future__ import annotations

import pytest

from tests.support import cloud_environment


@pytest.fixture
def cloud(assets, analyser):
    """moto S3 + DynamoDB with the stack's resources, the container's Services installed
    (the session's analyser shared), and a Stubber on the Rekognition client."""
    with cloud_environment(analyser, assets.models) as environment:
        yield environment
