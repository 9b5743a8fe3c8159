"""The model artifact: arrays and JSON that answer exactly as the fitted model, a pickle never
loaded, and the library-version warning."""

from __future__ import annotations

import io
import json
import pickle
import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from facerec.core.errors import ModelIntegrityError
from facerec.engines.classifier import FaceClassifier, OneVsRestSVM
from facerec.engines.facenet import ModelVersionWarning, TrainedModel, library_versions
from facerec.engines.openset import OpenSetIdentifier


def _data(classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Six (N, 16) unit vectors around each of ``classes`` random centres, labels (N,) str."""
    rng = np.random.default_rng(seed)
    people = np.arange(6 * classes) % classes
    X = rng.normal(size=(len(people), 16)) + 2.0 * rng.normal(size=(classes, 16))[people]
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.array([f"p{n}" for n in people])


def _model(libraries: dict, classes: int = 3, seed: int = 0) -> TrainedModel:
    X, y = _data(classes, seed)
    return TrainedModel(
        FaceClassifier().fit(X, y),
        {"model_id": "m1", "libraries": libraries},
        OpenSetIdentifier().fit(X.astype(np.float32), y),
    )


@pytest.mark.parametrize("classes", [2, 3, 5, 9])
def test_round_trip_answers_exactly_as_the_fitted_model(classes):
    model = _model(library_versions(), classes, seed=classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = TrainedModel.from_bytes(model.to_bytes())
    probe = np.random.default_rng(1).normal(size=(300, 16))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    np.testing.assert_array_equal(loaded.classifier.predict(probe), model.classifier.predict(probe))
    np.testing.assert_array_equal(
        loaded.classifier.predict_proba(probe), model.classifier.predict_proba(probe)
    )
    first, again = model.identify(probe), loaded.identify(probe)
    np.testing.assert_array_equal(again.labels, first.labels)
    np.testing.assert_array_equal(again.scores, first.scores)
    assert loaded.metadata == model.metadata


@pytest.mark.parametrize("classes", [2, 3, 6])
def test_the_classifiers_arrays_answer_as_scikit_learns_svc_and_calibration(classes):
    X, y = _data(classes, seed=10 + classes)
    ours = FaceClassifier(C=10.0, random_state=0).fit(X, y)
    splitter = StratifiedKFold(3, shuffle=True, random_state=0)
    theirs = CalibratedClassifierCV(SVC(kernel="linear", C=10.0), cv=splitter, ensemble=False)
    theirs.fit(X, y)
    probe = np.random.default_rng(2).normal(size=(400, 16))
    svc = theirs.calibrated_classifiers_[0].estimator
    np.testing.assert_array_equal(ours.predict(probe), svc.predict(probe))
    np.testing.assert_allclose(ours.predict_proba(probe), theirs.predict_proba(probe), atol=1e-12)


def test_a_one_vs_rest_model_round_trips_as_itself():
    X, y = _data(7, seed=20)
    fitted = OneVsRestSVM(C=2.0, neighbours=3, background=10, random_state=5).fit(X, y)
    model = TrainedModel(
        fitted,
        {"model_id": "m2", "libraries": library_versions()},
        OpenSetIdentifier().fit(X.astype(np.float32), y),
    )
    loaded = TrainedModel.from_bytes(model.to_bytes())
    assert type(loaded.classifier) is OneVsRestSVM
    assert loaded.classifier.get_params() == fitted.get_params()
    probe = np.random.default_rng(3).normal(size=(300, 16))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    np.testing.assert_array_equal(
        loaded.classifier.decision_function(probe), fitted.decision_function(probe)
    )
    first, again = model.identify(probe), loaded.identify(probe)
    for field in ("labels", "candidates", "scores", "probabilities"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field), field)


def _rewrite_document(data: bytes, change) -> bytes:
    """The artifact ``data`` with ``change(document)`` applied to its JSON document."""
    with np.load(io.BytesIO(data), allow_pickle=False) as saved:
        arrays = dict(saved)
    document = json.loads(str(arrays.pop("document")))
    change(document)
    buffer = io.BytesIO()
    np.savez(buffer, document=np.array(json.dumps(document)), **arrays)
    return buffer.getvalue()


def test_an_artifact_from_before_the_classifier_type_loads_as_the_svc():
    model = _model(library_versions(), classes=4)
    older = _rewrite_document(model.to_bytes(), lambda document: document.pop("classifier_type"))
    loaded = TrainedModel.from_bytes(older)
    assert type(loaded.classifier) is FaceClassifier
    probe = np.random.default_rng(4).normal(size=(50, 16))
    np.testing.assert_array_equal(
        loaded.classifier.predict_proba(probe), model.classifier.predict_proba(probe)
    )


def test_an_unknown_classifier_type_is_refused():
    data = _rewrite_document(
        _model(library_versions()).to_bytes(),
        lambda document: document.update(classifier_type="Pipeline"),
    )
    with pytest.raises(ModelIntegrityError, match=r"m1/model\.npz is not a model artifact"):
        TrainedModel.from_bytes(data, "m1/model.npz")


class _RunsACommand:
    """A pickle payload: unpickling it would run ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (__import__("os").system, (f"touch {self.marker}",))


def test_a_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    crafted = pickle.dumps({"format": 2, "classifier": _RunsACommand(marker)})
    with pytest.raises(ModelIntegrityError, match=r"x/model\.npz.*pickles.*facerec train"):
        TrainedModel.from_bytes(crafted, "x/model.npz")
    assert not marker.exists()


def test_a_truncated_artifact_is_refused_with_its_name():
    data = _model(library_versions()).to_bytes()
    with pytest.raises(ModelIntegrityError, match=r"m1/model\.npz"):
        TrainedModel.from_bytes(data[: len(data) // 2], "m1/model.npz")


def test_other_library_versions_warn_clearly():
    versions = {**library_versions(), "scikit-learn": "1.5.0"}
    data = _model(versions).to_bytes()
    with pytest.warns(ModelVersionWarning, match=r"scikit-learn 1\.5\.0 -> .*facerec train"):
        TrainedModel.from_bytes(data)
