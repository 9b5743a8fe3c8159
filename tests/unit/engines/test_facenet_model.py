"""The model artifact: round trip and the library-version warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from facerec.engines.classifier import FaceClassifier
from facerec.engines.facenet import ModelVersionWarning, TrainedModel, library_versions


def _model(libraries: dict) -> TrainedModel:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 8))
    y = np.array(["a", "b", "c"] * 4)
    X[y == "a"] += 3
    X[y == "b"] -= 3
    return TrainedModel(FaceClassifier().fit(X, y), {"model_id": "m1", "libraries": libraries})


def test_round_trip_keeps_predictions_and_metadata():
    model = _model(library_versions())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = TrainedModel.from_bytes(model.to_bytes())
    probe = np.random.default_rng(1).normal(size=(5, 8))
    np.testing.assert_array_equal(loaded.classifier.predict(probe), model.classifier.predict(probe))
    assert loaded.metadata == model.metadata


def test_other_library_versions_warn_clearly():
    versions = {**library_versions(), "scikit-learn": "1.5.0"}
    data = _model(versions).to_bytes()
    with pytest.warns(ModelVersionWarning, match=r"scikit-learn 1\.5\.0 -> .*facerec train"):
        TrainedModel.from_bytes(data)
