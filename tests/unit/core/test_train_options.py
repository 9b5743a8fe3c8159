"""TrainOptions: from a request (validated) and from a trained model's metadata (to retrain)."""

from __future__ import annotations

import pytest

from facerec.core.settings import CLASSIFIER_CHOICES, DEFAULT_FAR, TrainOptions


@pytest.mark.parametrize("choice", CLASSIFIER_CHOICES)
def test_a_request_names_the_classifier(choice):
    assert TrainOptions.from_request({"classifier": choice}).classifier == choice


def test_a_request_without_one_lets_the_number_of_people_choose():
    assert TrainOptions.from_request({}) == TrainOptions()
    assert TrainOptions().classifier == "auto"


@pytest.mark.parametrize("choice", ["SVC", "knn", "", None])
def test_a_request_for_another_classifier_is_refused(choice):
    with pytest.raises(ValueError, match=r"classifier must be one of auto, svc, ovr; got '"):
        TrainOptions.from_request({"classifier": choice})


def metadata(classifier: dict) -> dict:
    """A trained model's metadata, the parts TrainOptions.of reads."""
    return {
        "classifier": classifier,
        "split": {"test_size": 0.2, "seed": 7},
        "open_set": {"far_target": 0.05},
    }


def test_a_model_is_retrained_with_its_classifier_choice_and_chosen_c():
    chosen = metadata({"kind": "one-vs-rest SVMs", "choice": "ovr", "C": 0.5})
    assert TrainOptions.of(chosen) == TrainOptions(
        C=0.5, select_c=False, test_size=0.2, seed=7, far=0.05, classifier="ovr"
    )


def test_a_model_from_before_the_choice_is_retrained_with_auto():
    older = {"classifier": {"kind": "SVC", "C": 3.0}, "split": {"test_size": 0.0, "seed": 1}}
    assert TrainOptions.of(older) == TrainOptions(C=3.0, test_size=0.0, seed=1, far=DEFAULT_FAR)
