"""Shared fixtures. The real weights, converted networks and sample set come from `make
setup` (never skipped: a missing asset fails with the command that fixes it). Nothing here
reads ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facerec.vision.assets import AssetPaths, verify_weights
from facerec.vision.runtime import ModelFiles

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption(
        "--run-aws", action="store_true", help="run tests marked `aws` against a real AWS account"
    )


def pytest_collection_modifyitems(config, items):
    """Tests that load the models (the ``analyser`` fixture, directly or through another)
    are marked ``model``, so ``-m "not model"`` is a fast lane; ``aws`` tests are skipped
    unless --run-aws is given."""
    skip = pytest.mark.skip(reason="needs a real AWS account: pass --run-aws with credentials")
    for item in items:
        if "analyser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)
        if "aws" in item.keywords and not config.getoption("--run-aws"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def assets() -> AssetPaths:
    paths = AssetPaths(Path(os.environ.get("FACEREC_CACHE_DIR", REPO_ROOT / ".cache")))
    verify_weights(paths.weights)
    ModelFiles(paths.models).manifest()  # converted by `make setup`, or AssetError saying so
    return paths


@pytest.fixture(scope="session")
def sample_set(assets) -> Path:
    """The 5-person sample set: ``train/`` (93 photos) and ``val/`` (25) in LFW layout."""
    return assets.sample_set


@pytest.fixture(scope="session")
def analyser(assets):
    """MTCNN + FaceNet (ONNX Runtime) with the default settings, loaded once for the run."""
    from facerec.vision.analyser import build_analyser

    return build_analyser(assets.models)


@pytest.fixture
def local(tmp_path, assets, analyser):
    """The local deployment over an empty workspace in tmp_path (models loaded once)."""
    from facerec.interfaces.local import LocalDeployment

    return LocalDeployment(tmp_path / "workspace", analyser)


@pytest.fixture(scope="session")
def enrolled(tmp_path_factory, assets, analyser, sample_set):
    """A local deployment with the sample set's train part enrolled and a model trained on
    all of it. Shared by the whole session: tests must not change it."""
    from facerec.core.settings import TrainOptions
    from facerec.flows.enrol import read_labelled_folder
    from facerec.interfaces.local import LocalDeployment

    local = LocalDeployment(tmp_path_factory.mktemp("enrolled"), analyser)
    outcomes = local.enrol(read_labelled_folder(sample_set / "train", lambda *_: None))
    model, _ = local.train(TrainOptions(test_size=0.0))
    return local, outcomes, model
