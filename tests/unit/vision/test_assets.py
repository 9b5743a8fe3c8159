"""A missing or corrupt weights file names the command that fixes it."""

from __future__ import annotations

import pytest

from facerec.core.errors import AssetError
from facerec.vision.assets import AssetPaths, ensure_assets, verify_weights


def test_missing_weights_name_the_fix(tmp_path):
    with pytest.raises(AssetError, match=r"not found.*run `make setup`"):
        verify_weights(tmp_path / "facenet_keras.h5")


def test_corrupt_weights_name_the_fix(tmp_path):
    corrupt = tmp_path / "facenet_keras.h5"
    corrupt.write_bytes(b"not the weights")
    with pytest.raises(AssetError, match=r"corrupt.*`make setup`"):
        verify_weights(corrupt)


def test_intact_assets_are_not_fetched_again(assets):
    messages = []
    ensure_assets(AssetPaths(assets.cache_dir), log=messages.append)
    assert messages == [f"assets: up to date in {assets.cache_dir}"]
