"""flows.train.fit with each classifier choice (TrainOptions.classifier): the classifier it
fits, what the metadata says of it, and the options a retraining reads back. Synthetic
people: 12 x 8 faces of 128-d unit vectors."""

from __future__ import annotations

import pytest

from facerec.core.settings import TrainOptions
from facerec.engines import classifier as classifier_module
from facerec.engines.classifier import C_GRID, FaceClassifier, OneVsRestSVM
from facerec.flows.train import TrainingSet, fit
from tests.unit.engines.test_gallery import people

ANALYSIS = {"embedding": {"model_id": "facenet-test"}, "crop": {"method": "aligned"}}


@pytest.fixture(scope="module")
def training_set() -> TrainingSet:
    ids, labels, vectors, _ = people(12, 8, spread=1.0)
    return TrainingSet(ids, ids, labels, vectors)


def test_ovr_fits_one_svm_per_person_and_says_so(training_set):
    options = TrainOptions(classifier="ovr")
    model, test_index = fit(training_set, options, ANALYSIS)
    assert type(model.classifier) is OneVsRestSVM and model.classifier.coef_.shape == (12, 128)
    described = model.metadata["classifier"]
    assert described["kind"] == "one-vs-rest SVMs" and described["choice"] == "ovr"
    assert described["C"] == options.C and described["c_selection"] is None
    assert "nearest people" in described["negatives"]
    assert "top decision" in described["probabilities"]
    cv = model.metadata["cv"]
    assert cv == model.classifier.cv_  # the folds its probability was calibrated on
    assert cv["folds"] == 3 and len(cv["scores"]) == 3  # 6 training faces per person
    held_out = training_set.embeddings[test_index]
    answers = model.identify(held_out)
    assert (answers.candidates == training_set.labels[test_index]).mean() >= 0.9
    assert TrainOptions.of(model.metadata) == options


def test_auto_fits_the_svc_for_few_people(training_set):
    model, _ = fit(training_set, TrainOptions(), ANALYSIS)
    assert type(model.classifier) is FaceClassifier
    described = model.metadata["classifier"]
    assert described["kind"] == "SVC" and described["choice"] == "auto"
    assert "negatives" not in described
    assert model.metadata["cv"]["folds"] == 6  # the thesis's: up to 10, the smallest class
    assert TrainOptions.of(model.metadata).classifier == "auto"  # chosen again next time


def test_auto_counts_the_people_of_the_training_part(training_set, monkeypatch):
    monkeypatch.setattr(classifier_module, "SVC_MAX_PEOPLE", 11)
    model, _ = fit(training_set, TrainOptions(), ANALYSIS)
    assert type(model.classifier) is OneVsRestSVM
    assert model.metadata["classifier"]["choice"] == "auto"
    assert model.metadata["classifier"]["kind"] == "one-vs-rest SVMs"
    monkeypatch.setattr(classifier_module, "SVC_MAX_PEOPLE", 12)
    assert type(fit(training_set, TrainOptions(), ANALYSIS)[0].classifier) is FaceClassifier


def test_ovr_selects_c_on_its_own_cross_validation(training_set):
    model, _ = fit(training_set, TrainOptions(classifier="ovr", select_c=True), ANALYSIS)
    described = model.metadata["classifier"]
    table = described["c_selection"]
    assert [row["C"] for row in table] == list(C_GRID)
    assert described["C"] == model.classifier.C
    chosen = next(row for row in table if row["C"] == described["C"])
    assert chosen["mean"] == max(row["mean"] for row in table)
    assert model.metadata["cv"] == {k: v for k, v in chosen.items() if k != "C"}
    assert TrainOptions.of(model.metadata) == TrainOptions(C=described["C"], classifier="ovr")
