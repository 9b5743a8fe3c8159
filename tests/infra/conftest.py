"""Session fixtures: the app synthesized once per environment (synth is the slow part)."""

from __future__ import annotations

import pytest
from infra_support import Synthesized, synthesize


@pytest.fixture(scope="session")
def dev(tmp_path_factory) -> Synthesized:
    return synthesize("dev", tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def prod(tmp_path_factory) -> Synthesized:
    return synthesize("prod", tmp_path_factory.mktemp("cdk-prod"))


@pytest.fixture(params=["dev", "prod"])
def synthesized(request) -> Synthesized:
    """Each environment in turn."""
    return request.getfixturevalue(request.param)
