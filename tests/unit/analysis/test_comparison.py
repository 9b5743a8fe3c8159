"""The comparison (facerec.analysis.comparison): the cost model's arithmetic across
Rekognition's price tiers, the comparison ``compare`` assembles from the runs of the one
evaluation (facerec.flows.evaluate) on a small hand-made gallery, the hybrid replayed on them,
FaceNet's identify path timed, and Rekognition's gallery and answers through botocore's Stubber
on a real boto3 client (responses shaped as the service returns them, validated against its
model).

The shared scenario (three people, six training faces, five held-out faces, their crops and
the recorded runs) is imported by test_report.py too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory
from types import SimpleNamespace

import boto3
import numpy as np
import pytest
from botocore.stub import ANY, Stubber

from facerec.analysis import comparison as comparison_module
from facerec.analysis.comparison import (
    MEASURED_LOCALLY,
    compare,
    compare_model,
    cost_model,
    enrolment_refusals,
    hybrid_routing,
    rekognition_unavailable,
    run_rekognition,
    time_identify,
    training_history,
)
from facerec.core.costs import hybrid_costs, lambda_cost, plain_usd, rekognition_image_cost
from facerec.core.errors import CorruptImage, EngineUnavailable, NotEnoughData
from facerec.core.records import FaceRecord, PhotoRecord
from facerec.engines.base import Answer, Identification
from facerec.engines.classifier import FaceClassifier
from facerec.engines.facenet import FaceNetEngine, TrainedModel
from facerec.engines.openset import OpenSetIdentifier
from facerec.engines.rekognition import RekognitionEngine
from facerec.flows.evaluate import EngineRun, run_engine
from facerec.flows.train import TrainingSet, evaluate, held_out, local_engines
from facerec.storage.local import local_stores
from facerec.storage.rekognition import (
    FaceCollection,
    RekognitionGallery,
    cleanup,
    collection_gallery,
    external_image_id,
    index_gallery,
)
from facerec.vision.images import encode_png
from tests.factories import face_record, unit_vector
from tests.support import (
    ENV,
    index_params,
    indexed_response,
    refused_response,
    search_params,
    search_response,
)

COLLECTION = ENV["COLLECTION_ID"]
LABELS = ["ann", "bob", "cy"]
MODEL_ID = "20261128T120000Z-abcdef12"
FACENET_TIMED = "per photo: decode, detect, crop, embed, classify, open-set score"


def unit(**axes: float) -> np.ndarray:
    """A unit float32 (128,) vector from weights on axes ``a0`` .. ``a127``."""
    vector = np.zeros(128, np.float32)
    for axis, weight in axes.items():
        vector[int(axis[1:])] = weight
    return unit_vector(vector)


def labelled(person: str, name: str, embedding: np.ndarray) -> FaceRecord:
    """The labelled face of photo ``<person>/<name>.jpg`` (its crop is ``<name>-0.png``)."""
    return replace(face_record(f"{person}/{name}.jpg", 0, person), embedding=embedding)


# The training part: two faces per person on their own axis. Every leave-one-person-out
# impostor score is 0 - 0, so the calibrated "unknown" threshold is exactly 0.
TRAINING = [
    labelled(person, name, unit(**{f"a{axis}": 1}))
    for person, name, axis in [
        ("ann", "a1", 0),
        ("ann", "a2", 0),
        ("bob", "b1", 1),
        ("bob", "b2", 1),
        ("cy", "c1", 2),
        ("cy", "c2", 2),
    ]
]
# The held-out part, and the nearest face's answer to each: the person of the nearest face,
# accepted when its open-set score (cosine to that person's centroid minus the mean cosine to
# the other people's) is above 0.
HELD_OUT_RECORDS = [
    labelled("ann", "ah1", unit(a0=1)),  # ann: 1 - 0
    labelled("ann", "ah2", unit(a0=1, a1=0.5)),  # ann: 0.894 - (0.447 + 0) / 2
    labelled("bob", "bh1", unit(a0=0.8, a1=0.6)),  # nearest to ann: 0.8 - (0.6 + 0) / 2, wrong
    labelled("bob", "bh2", unit(a1=1)),  # bob: 1 - 0
    labelled("cy", "ch1", unit(a3=1)),  # like nobody enrolled: 0 - 0, not above 0: "unknown"
]
NEAREST_EXPECTED = [
    ("ann", 1.0),
    ("ann", 0.8944272 - 0.4472136 / 2),
    ("ann", 0.5),
    ("bob", 1.0),
    ("unknown", 0.0),
]
HELD_OUT_IDS = [item.face_id for item in HELD_OUT_RECORDS]
ENROLLED = TRAINING + HELD_OUT_RECORDS  # the labelled faces in catalog (face id) order
CROPS = {
    item.crop_key: encode_png(np.full((160, 160, 3), 40 + 7 * i, np.uint8))
    for i, item in enumerate(ENROLLED)
}
# The labelled faces as the training workflow gathers them.
TRAINING_SET = TrainingSet(
    np.array([item.face_id for item in ENROLLED]),
    np.array([item.crop_key for item in ENROLLED]),
    np.array([item.person for item in ENROLLED]),
    np.stack([item.embedding for item in ENROLLED]).astype(np.float32),
)
# The service's nearest engine's calibration (every labelled face), as fit writes it.
SERVICE_NEAREST = {
    "threshold": 0.3503,
    "far_target": 0.01,
    "method": "leave-one-person-out",
    "impostor_scores": 11,
    "impostor_false_accepts": 1,
    "score": "centroid cosine minus mean of the 20 nearest other centroids",
    "cohort": 20,
    "calibrated_at": "2026-11-28T12:00:00+00:00",
    "gallery": "every labelled face (11)",
}


def model_with_split(test_face_ids: list[str], **extra) -> TrainedModel:
    """A trained model's metadata as fit writes it (no classifier, no open-set part), plus
    ``extra`` metadata keys."""
    return TrainedModel(
        None,
        {
            **extra,
            "model_id": MODEL_ID,
            "created_at": "2026-11-28T12:00:00+00:00",
            "labels": LABELS,
            "classifier": {"kind": "SVC", "kernel": "linear", "C": 10.0},
            "embedding": {"model_id": "facenet-keras-128"},
            "crop": {"method": "aligned", "margin": 0.2, "size": 160},
            "cv": {"folds": 2, "mean": 0.9, "std": 0.05, "scores": [0.85, 0.95]},
            "split": {
                "test_size": 0.25,
                "seed": 42,
                "train_faces": len(ENROLLED) - len(test_face_ids),
                "test_faces": len(test_face_ids),
                "test_face_ids": test_face_ids,
            },
            "training_seconds": 0.04,
        },
    )


def nearest_model(test_face_ids: list[str], **extra) -> TrainedModel:
    """``model_with_split`` with a linear SVC and an open-set part fitted on the training part
    (the hand-made gallery), and both calibrations in its metadata as fit writes them."""
    held = set(test_face_ids)
    training = [item for item in ENROLLED if item.face_id not in held]
    X = np.stack([item.embedding for item in training])
    y = np.array([item.person for item in training])
    classifier = FaceClassifier(C=10.0).fit(X, y)
    identifier = OpenSetIdentifier().fit(X, y, np.array([item.face_id for item in training]))
    open_set = {
        **identifier.calibration_.to_dict(),
        "label": "the SVC's; unknown when the score is not above the threshold",
        "gallery": f"the training part's {len(training)} faces",
    }
    model = model_with_split(test_face_ids, open_set=open_set, nearest=SERVICE_NEAREST, **extra)
    return TrainedModel(classifier, model.metadata, identifier)


# The held-out faces as the evaluation and the report see them (stored embedding, crop read
# from the faces store on demand).
_, HELD_OUT = held_out(model_with_split(HELD_OUT_IDS), TRAINING_SET, CROPS.__getitem__)


def facenet_answer(
    person: str, probability: float, open_set: float, seconds: float, candidate: str = ""
) -> dict:
    """One FaceNet answer as run_engine records it: ``score`` is the probability (the scale of
    its threshold table), ``engine_score`` the open-set score hybrid routing reads,
    ``candidate`` the SVC's label before the "unknown" threshold."""
    return {
        "person": person,
        "candidate": candidate or person,
        "probability": probability,
        "score": probability,
        "engine_score": open_set,
        "accepted": person != "unknown",
        "seconds": seconds,
    }


# FaceNet's recorded answers for the held-out faces: one wrong (bob as ann).
FACENET_ANSWERS = {
    HELD_OUT_IDS[0]: facenet_answer("ann", 0.91, 0.52, 0.21),
    HELD_OUT_IDS[1]: facenet_answer("ann", 0.85, 0.44, 0.25),
    HELD_OUT_IDS[2]: facenet_answer("bob", 0.77, 0.18, 0.30),
    HELD_OUT_IDS[3]: facenet_answer("ann", 0.31, 0.05, 0.20),
    HELD_OUT_IDS[4]: facenet_answer("cy", 0.88, 0.36, 0.24),
}
# A weaker FaceNet for the hybrid (Rekognition, stubbed: right on ann, ann, bob's second face;
# wrong on bob's first; refuses cy's): FaceNet right on 1 and 2 only, "unknown" on cy's face.
HYBRID_ANSWERS = {
    HELD_OUT_IDS[0]: facenet_answer("bob", 0.52, 0.10, 0.25),
    HELD_OUT_IDS[1]: facenet_answer("ann", 0.93, 0.40, 0.25),
    HELD_OUT_IDS[2]: facenet_answer("bob", 0.81, 0.30, 0.25),
    HELD_OUT_IDS[3]: facenet_answer("ann", 0.64, 0.20, 0.25),
    HELD_OUT_IDS[4]: facenet_answer("unknown", 0.47, 0.05, 0.25, candidate="cy"),
}


def facenet_run(answers: dict = FACENET_ANSWERS, open_set_threshold: float | None = None):
    """FaceNet's run on the held-out faces as load_runs reads it back from the reports store
    (``open_set_threshold``: the model's "unknown" threshold, when it has one)."""
    describe = {
        "model_id": MODEL_ID,
        "timed": "per face: one identify call on its stored embedding and crop",
    }
    if open_set_threshold is not None:
        describe["open_set_threshold"] = open_set_threshold
    stored = {"name": "facenet", "answers": answers, "describe": describe}
    return EngineRun.from_dict(json.loads(json.dumps(stored)))


def comparison_of(
    model: TrainedModel,
    runs: dict[str, EngineRun],
    identify_seconds: list[float] | None = None,
    stores=None,
    **options,
) -> dict:
    """``compare`` on HELD_OUT and the training part's 6 faces. FaceNet's identify path took
    its run's seconds per face unless ``identify_seconds`` says otherwise; ``stores`` default:
    empty ones (no enrolment refusals, no earlier models)."""
    if identify_seconds is None:
        facenet = runs.get("facenet")
        identify_seconds = [a["seconds"] for a in facenet.answers.values()] if facenet else []
    arguments = (model, HELD_OUT, len(TRAINING), runs, identify_seconds)
    if stores is not None:
        return compare(stores, *arguments, **options)
    with TemporaryDirectory() as root:
        empty = local_stores(Path(root))
        try:
            return compare(empty, *arguments, **options)
        finally:
            empty.catalog.close()


@contextmanager
def stubbed_rekognition() -> Iterator[tuple[object, Stubber]]:
    """A real boto3 Rekognition client with a Stubber: every call must be expected."""
    client = boto3.client(
        "rekognition",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def rekognition():
    with stubbed_rekognition() as pair:
        yield pair


def invalid_image(stubber: Stubber, method: str, params: dict) -> None:
    """The error Rekognition answers when it finds no face in the image."""
    stubber.add_client_error(
        method,
        "InvalidParameterException",
        "There are no faces in the image. Should be at least 1.",
        400,
        expected_params=params,
    )


def stub_index_training(stubber: Stubber) -> dict[str, str]:
    """IndexFaces for every training crop; cy's second crop is refused. -> FaceId -> person."""
    people = {}
    for i, item in enumerate(TRAINING):
        external = external_image_id(item.crop_key)
        if item.crop_key == "cy/c2-0.png":
            stubber.add_response("index_faces", refused_response(), index_params(external))
            continue
        face_id = f"{i:08d}-1111-2222-3333-444444444444"
        stubber.add_response(
            "index_faces", indexed_response(face_id, external), index_params(external)
        )
        people[face_id] = item.person
    return people


def stub_searches(stubber: Stubber, people: dict[str, str]) -> None:
    """SearchFacesByImage per held-out crop: bob's first face matched to cy (84.0), cy's face
    has no face Rekognition can find, the others matched to their own person."""
    first = {person: face_id for face_id, person in reversed(list(people.items()))}
    matches = [
        [(first["ann"], 99.62)],
        [(first["ann"], 98.2)],
        [(first["cy"], 84.0), (first["bob"], 80.5)],
        [(first["bob"], 97.03)],
    ]
    for match in matches:
        stubber.add_response("search_faces_by_image", search_response(match), search_params())
    invalid_image(stubber, "search_faces_by_image", search_params())


def describe_response() -> dict:
    return {
        "FaceCount": 5,
        "FaceModelVersion": "7.0",
        "CollectionARN": f"arn:aws:rekognition:us-east-1:123456789012:collection/{COLLECTION}",
        "CreationTimestamp": "2026-11-28T12:00:00Z",
        "UserCount": 0,
    }


def stub_describe(stubber: Stubber) -> None:
    stubber.add_response("describe_collection", describe_response(), {"CollectionId": COLLECTION})


def rekognition_run(client, stubber) -> tuple[EngineRun, RekognitionGallery]:
    """run_rekognition with every call through the Stubber: the collection exists, the
    training crops are indexed into it, each held-out crop is searched."""
    stub_describe(stubber)  # open_collection: it exists
    people = stub_index_training(stubber)
    stub_searches(stubber, people)
    stub_describe(stubber)  # the engine's describe: its face-model version
    return run_rekognition(client, COLLECTION, TRAINING, HELD_OUT, CROPS.__getitem__)


def two_engine_comparison(
    client, stubber, answers: dict = FACENET_ANSWERS, metadata: dict | None = None, **options
) -> dict:
    """FaceNet's recorded answers (its "unknown" threshold 0.07) and Rekognition's stubbed
    ones on the same held-out faces (``metadata``: extra model metadata)."""
    run, _ = rekognition_run(client, stubber)
    model = model_with_split(HELD_OUT_IDS, **(metadata or {}))
    runs = {"facenet": facenet_run(answers, 0.07), "rekognition": run}
    return comparison_of(model, runs, **options)


def three_engine_comparison(client, stubber, **options) -> dict:
    """FaceNet's recorded answers (threshold 0, none "unknown"), the nearest engine on the
    hand-made gallery as the training workflow runs it, and Rekognition's stubbed answers, on
    the same held-out faces."""
    run, _ = rekognition_run(client, stubber)
    model = nearest_model(HELD_OUT_IDS)
    nearest = run_engine(local_engines(model)["nearest"], HELD_OUT)
    runs = {"facenet": facenet_run(FACENET_ANSWERS, 0.0), "nearest": nearest, "rekognition": run}
    return comparison_of(model, runs, **options)


def hybrid_comparison(client, stubber, **options) -> dict:
    """The weaker FaceNet (HYBRID_ANSWERS) against the stubbed Rekognition, at 2048 MB, with a
    routing threshold of 0.3 stored in the model's metadata."""
    routing = {"threshold": 0.3, "chosen_on": "the held-out faces"}
    return two_engine_comparison(
        client, stubber, HYBRID_ANSWERS, {"routing": routing}, memory_mb=2048, **options
    )


# ---- cost model ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "usd"),
    [
        (0, 0.0),
        (1_500, 1.5),
        (1_000_000, 1_000.0),
        (1_000_001, 1_000.0008),
        (10_000_000, 1_000 + 9_000_000 * 0.0008),
        (100_000_000, 8_200 + 90_000_000 * 0.0006),
        (1_000_000_000, 62_200 + 900_000_000 * 0.0004),
    ],
)
def test_rekognition_price_follows_the_tiers(images, usd):
    assert rekognition_image_cost(images) == pytest.approx(usd, rel=1e-12)


def test_rekognition_price_refuses_negative_volumes():
    with pytest.raises(ValueError, match="images must be >= 0"):
        rekognition_image_cost(-1)


def test_lambda_cost_is_gb_seconds_plus_requests():
    cost = lambda_cost(1_000_000, 0.5, 2048)
    assert cost["compute"] == pytest.approx(1_000_000 * 0.5 * 2 * 0.0000166667)
    assert cost["requests"] == pytest.approx(0.20)
    assert cost["total"] == pytest.approx(cost["compute"] + 0.20)


def test_hybrid_costs_are_one_lambda_call_per_face_and_the_average_price_per_image():
    facenet, call = hybrid_costs(0.25, 2048)
    assert facenet == pytest.approx(0.25 * 2 * 0.0000166667 + 0.2 / 1e6)
    assert call == pytest.approx(0.001)  # 1 M images a month: all in the first tier
    assert hybrid_costs(0.25, 2048, 10_000_000)[1] == pytest.approx(0.00082)
    assert plain_usd(0.00001) == "0.00001" and plain_usd(1.5) == "1.5"


def test_cost_model_rows_and_assumptions():
    model = cost_model([1_000_000, 1_000], 0.5, 0.8, 2048, 100)
    assert [row["images"] for row in model["rows"]] == [1_000, 1_000_000]
    row = model["rows"][1]
    assert row["rekognition_images"] == pytest.approx(1_000.0)
    assert row["rekognition_storage"] == pytest.approx(100 * 0.00001)
    assert row["rekognition_total"] == pytest.approx(1_000.001)
    assert row["facenet_compute"] == pytest.approx(16.6667, rel=1e-5)
    assert row["facenet_total"] == pytest.approx(16.8667, rel=1e-5)
    assert row["rekognition_per_1000"] == pytest.approx(1.000001)
    assert row["facenet_per_1000"] == pytest.approx(0.0168667, rel=1e-5)
    assert row["lambda_concurrency"] == pytest.approx(1_000_000 / (30 * 86_400) * 0.5)
    assert model["indexing_once"] == pytest.approx(0.1)
    text = " ".join(model["assumptions"])
    for fact in ("2048 MB", "0.500 s", "p95 0.800 s", "100 faces", "0.0000166667 USD per GB"):
        assert fact in text
    assert "0.00001 USD per face per month" in text
    assert "1.00 USD per 1,000 images for the first 1 M" in text
    assert "0.40 USD per 1,000 images beyond" in text
    assert model["prices"]["rekognition_tiers"][0] == (1_000_000, 0.001)


def test_cost_model_says_where_the_facenet_path_was_timed():
    local = " ".join(cost_model([1_000], 0.5, 0.8, 3008, 10)["assumptions"])
    assert f"Measured in {MEASURED_LOCALLY}" in local
    assert "Measured in this process on this machine, not in Lambda" in local
    where = "the write_report Lambda function at 3008 MB"
    cloud = " ".join(cost_model([1_000], 0.5, 0.8, 3008, 10, measured_in=where)["assumptions"])
    assert f"Measured in {where}, after one untimed warm-up call" in cloud
    assert "not in Lambda" not in cloud


@pytest.mark.parametrize("volumes", [[], [0], [1_000, -5]])
def test_cost_model_refuses_volumes_that_are_not_positive(volumes):
    with pytest.raises(ValueError, match="volumes must be positive"):
        cost_model(volumes, 0.2, 0.3, 3008, 10)


# ---- Rekognition's gallery and answers -----------------------------------------------------


def test_index_gallery_maps_face_ids_and_records_refusals(rekognition):
    client, stubber = rekognition
    people = stub_index_training(stubber)
    gallery = index_gallery(FaceCollection(client, COLLECTION), TRAINING, CROPS.__getitem__)
    assert gallery.face_people == people and len(people) == 5
    assert list(gallery.refused) == ["cy/c2-0.png"]
    assert "LOW_SHARPNESS" in gallery.refused["cy/c2-0.png"]
    assert gallery.exclude == frozenset() and not gallery.created_collection
    assert gallery.people(["nope", *people][:3]) == {
        face_id: people[face_id] for face_id in list(people)[:2]
    }


def test_a_collection_filled_at_enrolment_names_training_faces_and_excludes_held_out_ones():
    # The chain indexed every labelled crop, held-out ones too; one training crop is missing.
    indexed = {f"face-{i}": item.crop_key for i, item in enumerate(TRAINING[:-1] + HELD_OUT)}
    gallery = collection_gallery(
        COLLECTION,
        indexed,
        {item.crop_key: item.person for item in TRAINING},
        (face.crop_key for face in HELD_OUT),
        lambda key: f"refused: {key}",
    )
    assert gallery.collection_id == COLLECTION and not gallery.created_collection
    assert gallery.face_people == {f"face-{i}": item.person for i, item in enumerate(TRAINING[:-1])}
    assert gallery.exclude == {f"face-{i}" for i in range(len(TRAINING) - 1, len(indexed))}
    assert gallery.refused == {"cy/c2-0.png": "refused: cy/c2-0.png"}


def test_rekognition_run_records_answers_refusals_and_timings(rekognition):
    client, stubber = rekognition
    run, gallery = rekognition_run(client, stubber)
    assert (run.name, run.reason) == ("rekognition", "")
    answers = [run.answers[face.face_id] for face in HELD_OUT]
    assert [answer["person"] for answer in answers] == ["ann", "ann", "cy", "bob", None]
    assert [answer["candidate"] for answer in answers] == ["ann", "ann", "cy", "bob", None]
    assert [answer["score"] for answer in answers] == [99.62, 98.2, 84.0, 97.03, None]
    assert [answer["similarity"] for answer in answers] == [99.62, 98.2, 84.0, 97.03, None]
    assert [answer["engine_score"] for answer in answers] == [99.62, 98.2, 84.0, 97.03, None]
    assert [answer["accepted"] for answer in answers] == [True, True, True, True, False]
    assert "found no face" in answers[4]["reason"]
    assert all(answer["seconds"] >= 0 for answer in answers)
    assert run.gallery_refusals == (
        {"crop_key": "cy/c2-0.png", "reason": gallery.refused["cy/c2-0.png"]},
    )
    assert run.describe["face_model_version"] == "7.0"
    assert run.describe["min_similarity"] == 0.0
    assert run.describe["collection_id"] == COLLECTION
    assert not gallery.created_collection and len(gallery.face_people) == 5
    json.dumps(run.to_dict(), allow_nan=False)


def test_excluded_face_ids_never_match_and_unmapped_matches_name_nobody(rekognition):
    client, stubber = rekognition
    collection = FaceCollection(client, COLLECTION)
    gallery = RekognitionGallery(COLLECTION, {"face-ann": "ann"}, exclude=frozenset({"held"}))
    # One more match is asked for each excluded FaceId, so excluding never leaves none.
    stubber.add_response(
        "search_faces_by_image",
        search_response([("held", 99.9), ("face-ann", 96.5)]),
        search_params(2),
    )
    stubber.add_response(
        "search_faces_by_image", search_response([("face-elsewhere", 91.0)]), search_params(2)
    )
    stub_describe(stubber)
    engine = RekognitionEngine(collection, gallery, 0.0, gallery.exclude)
    run = run_engine(engine, HELD_OUT[:2])
    first, second = (run.answers[face.face_id] for face in HELD_OUT[:2])
    assert (first["person"], first["score"], first["accepted"]) == ("ann", 96.5, True)
    # The match is outside the gallery: nobody named, a miss with its similarity.
    assert (second["person"], second["candidate"], second["score"]) == ("unknown", None, 91.0)
    assert second["accepted"] is False
    assert "not in the face index table" in second["reason"]


def test_run_rekognition_creates_a_missing_collection_indexes_and_cleans_up(rekognition):
    client, stubber = rekognition
    stubber.add_client_error(
        "describe_collection",
        "ResourceNotFoundException",
        f"The collection id: {COLLECTION} does not exist",
        400,
        expected_params={"CollectionId": COLLECTION},
    )
    stubber.add_response(
        "create_collection",
        {
            "StatusCode": 200,
            "CollectionArn": f"aws:rekognition:us-east-1:123456789012:collection/{COLLECTION}",
            "FaceModelVersion": "7.0",
        },
        {"CollectionId": COLLECTION},
    )
    people = stub_index_training(stubber)
    stub_searches(stubber, people)
    stub_describe(stubber)
    run, gallery = run_rekognition(client, COLLECTION, TRAINING, HELD_OUT, CROPS.__getitem__)
    assert run.reason == "" and run.describe["min_similarity"] == 0.0  # closed set, as FaceNet
    assert gallery.created_collection and gallery.face_people == people
    ids = sorted(people)
    stubber.add_response(
        "delete_faces", {"DeletedFaces": ids}, {"CollectionId": COLLECTION, "FaceIds": ids}
    )
    stubber.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": COLLECTION})
    collection = FaceCollection(client, COLLECTION)
    assert cleanup(collection, gallery) == {"faces_deleted": 5, "collection_deleted": True}


def test_run_rekognition_reports_an_aws_refusal_as_not_run(rekognition):
    client, stubber = rekognition
    stubber.add_client_error(
        "describe_collection",
        "AccessDeniedException",
        "User is not authorized to perform: rekognition:DescribeCollection",
        400,
        expected_params={"CollectionId": COLLECTION},
    )
    run, gallery = run_rekognition(client, COLLECTION, TRAINING, HELD_OUT, CROPS.__getitem__)
    assert gallery is None and run.name == "rekognition" and run.answers == {}
    assert run.reason.startswith("AWS call failed: ")
    assert "AccessDeniedException" in run.reason and "not authorized" in run.reason


def test_an_aws_error_during_the_searches_keeps_the_gallery_to_clean_up(rekognition):
    client, stubber = rekognition
    stub_describe(stubber)
    people = stub_index_training(stubber)
    stubber.add_client_error(
        "search_faces_by_image",
        "ThrottlingException",
        "Rate exceeded",
        400,
        expected_params=search_params(),
    )
    run, gallery = run_rekognition(client, COLLECTION, TRAINING, HELD_OUT, CROPS.__getitem__)
    assert run.answers == {} and "ThrottlingException" in run.reason
    assert gallery.face_people == people and not gallery.created_collection


# ---- the comparison ------------------------------------------------------------------------


def test_compare_joins_every_engine_face_by_face(rekognition):
    comparison = two_engine_comparison(*rekognition, memory_mb=2048, volumes=(1_000,))
    assert len(comparison["faces"]) == 5
    bob = comparison["faces"][2]
    assert (bob["face_id"], bob["photo_key"]) == ("bob/bh1.jpg#0", "bob/bh1.jpg")
    assert bob["truth"] == "bob" and bob["crop_key"] == "bob/bh1-0.png"
    assert bob["answers"]["facenet"] == FACENET_ANSWERS["bob/bh1.jpg#0"]
    assert bob["answers"]["rekognition"] == {
        "person": "cy",
        "candidate": "cy",
        "similarity": 84.0,
        "score": 84.0,
        "engine_score": 84.0,
        "accepted": True,
        "seconds": ANY,
    }
    facenet, rekognition = comparison["engines"]["facenet"], comparison["engines"]["rekognition"]
    assert (facenet["correct"], facenet["answered"], facenet["accuracy_all"]) == (4, 5, 0.8)
    assert facenet["closed_set_accuracy"] == 0.8
    assert (rekognition["correct"], rekognition["answered"]) == (3, 4)
    assert rekognition["accuracy_all"] == pytest.approx(0.6)
    assert [item["stage"] for item in rekognition["refusals"]] == ["identify", "gallery"]
    assert rekognition["evaluation"]["errors"] == [
        {"truth": "bob", "predicted": "cy", "score": 84.0}
    ]
    # FaceNet's durations are its identify path's, described as such.
    assert facenet["seconds"]["mean"] == pytest.approx(1.2 / 5)
    assert facenet["seconds"]["count"] == 5
    assert facenet["describe"]["timed"] == FACENET_TIMED
    cost = comparison["cost"]
    assert cost["seconds_per_photo"] == pytest.approx(1.2 / 5) and cost["memory_mb"] == 2048
    assert [row["images"] for row in cost["rows"]] == [1_000]
    assert cost["stored_faces"] == 5  # 6 training crops, one refused by IndexFaces
    assert comparison["model"]["people"] == 3 and comparison["model"]["test_faces"] == 5
    assert comparison["model"]["model_id"] == MODEL_ID
    assert comparison["model"]["open_set"] is None and comparison["model"]["nearest"] is None
    assert comparison["enrolment_refusals"] == [] and comparison["training_history"] == []
    json.dumps(comparison, allow_nan=False)  # JSON-ready


def test_an_engine_that_did_not_run_has_a_reason_and_no_answers():
    absent = EngineRun("rekognition", reason="no AWS credentials")
    model = model_with_split(HELD_OUT_IDS)
    comparison = comparison_of(model, {"facenet": facenet_run(), "rekognition": absent})
    assert comparison["engines"]["rekognition"] == {
        "name": "rekognition",
        "ran": False,
        "reason": "no AWS credentials",
        "score": "similarity (0-100)",
        "describe": {},
        "held_out_faces": 5,
    }
    assert set(comparison["faces"][0]["answers"]) == {"facenet"}
    assert comparison["cost"]["stored_faces"] == len(TRAINING)
    # No hybrid figures without Rekognition: the reason, and no curve.
    hybrid = comparison["hybrid"]
    assert set(hybrid) == {"ran", "reason"} and hybrid["ran"] is False
    assert "Rekognition did not run (no AWS credentials)" in hybrid["reason"]
    alone = comparison_of(model, {"facenet": facenet_run()})["hybrid"]
    assert alone == {"ran": False, "reason": "Rekognition was not part of this comparison."}
    with pytest.raises(NotEnoughData, match="FaceNet run is missing"):
        comparison_of(model, {"rekognition": absent})
    with pytest.raises(NotEnoughData, match="FaceNet run is missing"):
        comparison_of(model, {"facenet": EngineRun("facenet", reason="no model")})


def test_compare_reads_the_runs_of_the_one_evaluation_in_their_order():
    model = nearest_model(HELD_OUT_IDS)
    runs = evaluate(model, TRAINING_SET, CROPS.__getitem__)  # the training workflow's step
    assert list(runs) == ["facenet", "nearest"]
    runs["rekognition"] = EngineRun("rekognition", reason="no AWS credentials")
    comparison = comparison_of(model, runs, identify_seconds=[0.2, 0.3])
    engines = comparison["engines"]
    assert list(engines) == ["facenet", "nearest", "rekognition"]
    # FaceNet answers the SVC's label, accepted by the same open-set score as the nearest face.
    facenet = [face["answers"]["facenet"] for face in comparison["faces"]]
    nearest = [face["answers"]["nearest"] for face in comparison["faces"]]
    persons = [person for person, _ in NEAREST_EXPECTED]
    assert [answer["person"] for answer in facenet] == persons
    assert [answer["person"] for answer in nearest] == persons
    np.testing.assert_allclose(
        [answer["engine_score"] for answer in facenet],
        [score for _, score in NEAREST_EXPECTED],
        atol=1e-6,
    )
    assert engines["facenet"]["correct"] == engines["nearest"]["correct"] == 3
    assert engines["facenet"]["open_set"] == {"unknown": 1, "threshold": 0.0}
    assert engines["nearest"]["open_set"] == {"unknown": 1, "threshold": 0.0}
    # FaceNet's durations are those of the identify path, the others' their runs' per face.
    assert engines["facenet"]["seconds"]["count"] == 2
    assert engines["facenet"]["seconds"]["mean"] == pytest.approx(0.25)
    assert engines["nearest"]["seconds"]["count"] == 5
    assert not engines["rekognition"]["ran"] and comparison["hybrid"]["ran"] is False
    assert set(comparison["faces"][0]["answers"]) == {"facenet", "nearest"}
    assert comparison["model"]["train_faces"] == 6
    # A model without an open-set part: no nearest engine to run, FaceNet never "unknown".
    legacy = TrainedModel(model.classifier, model_with_split(HELD_OUT_IDS).metadata)
    runs = evaluate(legacy, TRAINING_SET, CROPS.__getitem__)
    assert list(runs) == ["facenet"]
    comparison = comparison_of(legacy, runs, identify_seconds=[0.2])
    assert list(comparison["engines"]) == ["facenet"]
    assert all(face["answers"]["facenet"]["accepted"] for face in comparison["faces"])
    assert comparison["engines"]["facenet"]["open_set"] == {"unknown": 0, "threshold": None}
    assert comparison["model"]["open_set"] is None and comparison["model"]["nearest"] is None


# ---- hybrid routing ------------------------------------------------------------------------

FACENET_USD = 0.25 * 2 * 0.0000166667 + 0.2 / 1e6  # 0.25 s at 2048 MB, one request
CALL_USD = 0.001  # the average price per image at 1 M images a month: the first tier


def test_the_hybrid_is_replayed_on_the_same_faces(rekognition):
    comparison = hybrid_comparison(*rekognition)
    hybrid = comparison["hybrid"]
    assert hybrid["ran"] is True and hybrid["faces"] == 5 and hybrid["always_routed"] == 1
    assert hybrid["costs"]["facenet_per_face"] == pytest.approx(FACENET_USD)
    assert hybrid["costs"]["rekognition_per_call"] == pytest.approx(CALL_USD)
    # Per threshold: (routed, correct). Routed are the unknown cy and the scores below t.
    assert [(p["threshold"], p["routed"], p["correct"]) for p in hybrid["points"]] == [
        ("-inf", 1, 2),  # cy to Rekognition, which refuses the crop: FaceNet's 2 only
        (0.1, 1, 2),  # ann's 0.10 is not below 0.10
        (0.2, 2, 3),  # ann's wrong "bob" goes to Rekognition: right
        (0.3, 3, 4),  # bob's wrong "ann" too: right
        (0.4, 4, 3),  # bob's right "bob" (0.30) too: Rekognition says cy
        ("inf", 5, 3),  # Rekognition alone's answers, FaceNet paid as well
    ]
    for point in hybrid["points"]:
        assert point["rekognition_calls"] == point["routed"]
        assert point["accuracy"] == pytest.approx(point["correct"] / 5)
        assert point["cost_per_1000"] == pytest.approx(
            1000 * (FACENET_USD + CALL_USD * point["routed"] / 5)
        )
    assert (hybrid["facenet_alone"]["correct"], hybrid["rekognition_alone"]["correct"]) == (2, 3)
    engines = comparison["engines"]
    assert hybrid["facenet_alone"]["correct"] == engines["facenet"]["correct"]
    assert hybrid["rekognition_alone"]["correct"] == engines["rekognition"]["correct"]
    assert hybrid["facenet_alone"]["cost_per_1000"] == pytest.approx(1000 * FACENET_USD)
    assert hybrid["rekognition_alone"]["cost_per_1000"] == pytest.approx(1.0)
    assert hybrid["target"] == {"engine": "rekognition", "correct": 3, "accuracy": 0.6}
    best = hybrid["best"]
    # The cheapest threshold as accurate as Rekognition alone: 0.2 (0.3 is more accurate).
    assert (best["threshold"], best["routed"], best["correct"], best["reached"]) == (
        0.2,
        2,
        3,
        True,
    )
    assert best["cost_per_1000"] == pytest.approx(1000 * FACENET_USD + 0.4)
    stored = hybrid["stored"]
    assert (stored["threshold"], stored["routed"], stored["correct"]) == (0.3, 3, 4)
    assert stored["metadata"] == {"threshold": 0.3, "chosen_on": "the held-out faces"}
    text = " ".join(hybrid["assumptions"])
    for fact in ("0.250 s at 2048 MB", "1,000,000 images a month, 0.001 USD", "no FaceNet cost"):
        assert fact in text
    assert engines["facenet"]["open_set"] == {"unknown": 1, "threshold": 0.07}
    assert "open_set" not in engines["rekognition"]
    json.dumps(comparison, allow_nan=False)


def test_a_facenet_that_answers_every_face_keeps_them_all_at_the_best_threshold(rekognition):
    # FaceNet alone (4 of 5) beats Rekognition alone (3) and answers "unknown" nowhere:
    # routing nothing (-inf) already reaches it, and nothing is cheaper.
    hybrid = two_engine_comparison(*rekognition)["hybrid"]
    assert [(p["threshold"], p["routed"], p["correct"]) for p in hybrid["points"]] == [
        ("-inf", 0, 4),
        (0.05, 0, 4),
        (0.18, 1, 5),
        (0.36, 2, 4),
        (0.44, 3, 3),
        (0.52, 4, 3),
        ("inf", 5, 3),
    ]
    assert hybrid["target"]["engine"] == "facenet" and hybrid["best"]["threshold"] == "-inf"
    assert hybrid["best"]["rekognition_calls"] == 0 and hybrid["stored"] is None


class FixedClassifier:
    """Stands for FaceClassifier: the given (label, probability) of each embedding."""

    def __init__(self, answers: dict[bytes, tuple[str, float]]):
        self.answers = answers

    def predict_with_probability(self, X) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.answers[np.asarray(row, np.float32).tobytes()] for row in X]
        return np.array([label for label, _ in pairs]), np.array([p for _, p in pairs])


def test_answers_without_an_open_set_score_route_on_their_probability():
    # A model without an open-set part: FaceNet's own score is its probability, so routing
    # reads the probability (as identify does for such a model).
    answers = [FACENET_ANSWERS[face.face_id] for face in HELD_OUT]
    classifier = FixedClassifier(
        {
            face.embedding.tobytes(): (answer["person"], answer["probability"])
            for face, answer in zip(HELD_OUT, answers, strict=True)
        }
    )
    model = TrainedModel(classifier, model_with_split(HELD_OUT_IDS, routing=0.5).metadata)
    facenet = run_engine(FaceNetEngine(lambda: model), HELD_OUT)
    recorded = [facenet.answers[face.face_id] for face in HELD_OUT]
    assert [answer["person"] for answer in recorded] == [a["person"] for a in answers]
    assert [answer["score"] for answer in recorded] == [a["probability"] for a in answers]
    assert [answer["engine_score"] for answer in recorded] == pytest.approx(
        [a["probability"] for a in answers]
    )
    assert facenet.describe["open_set_score"].startswith("none: a model without an open-set")
    rekognition = EngineRun(
        "rekognition",
        {face.face_id: {"person": face.truth, "score": 99.0, "seconds": 0.3} for face in HELD_OUT},
    )
    hybrid = hybrid_routing(model, HELD_OUT, facenet, rekognition, 0.25)
    thresholds = [point["threshold"] for point in hybrid["points"]]
    assert (thresholds[0], thresholds[-1]) == ("-inf", "inf")
    assert thresholds[1:-1] == pytest.approx([0.31, 0.77, 0.85, 0.88, 0.91])
    assert hybrid["stored"]["routed"] == 1 and hybrid["stored"]["correct"] == 5  # 0.31 routed
    assert hybrid["stored"]["metadata"] == 0.5
    assert hybrid["best"]["threshold"] == pytest.approx(0.77) and hybrid["best"]["correct"] == 5
    assert hybrid["score"] == "the SVC's probability (no open-set part)"


# ---- the nearest-face engine in the comparison ---------------------------------------------


def test_the_nearest_unknown_is_a_miss_and_counted_as_unknown(rekognition):
    comparison = three_engine_comparison(*rekognition)
    engines = comparison["engines"]
    assert list(engines) == ["facenet", "nearest", "rekognition"]
    nearest = engines["nearest"]
    assert (nearest["correct"], nearest["answered"], nearest["accuracy_all"]) == (3, 5, 0.6)
    assert nearest["open_set"] == {"unknown": 1, "threshold": 0.0}
    assert nearest["refusals"] == []
    assert sorted(
        (error["truth"], error["predicted"]) for error in nearest["evaluation"]["errors"]
    ) == [("bob", "ann"), ("cy", "unknown")]
    assert [row["threshold"] for row in nearest["evaluation"]["thresholds"]] == [
        round(value, 2) for value in np.arange(0.0, 0.601, 0.05)
    ]
    cy = comparison["faces"][4]["answers"]
    assert cy["nearest"]["person"] == "unknown" and cy["nearest"]["accepted"] is False
    assert comparison["model"]["open_set"]["impostor_scores"] == 6
    assert comparison["model"]["open_set"]["threshold"] == 0.0
    assert comparison["model"]["nearest"] == SERVICE_NEAREST
    # The hybrid stays FaceNet + Rekognition, the cost model FaceNet's.
    assert comparison["hybrid"]["facenet_alone"]["correct"] == engines["facenet"]["correct"]
    assert comparison["cost"]["seconds_per_photo"] == pytest.approx(1.2 / 5)
    json.dumps(comparison, allow_nan=False)


# ---- FaceNet's identify path, timed --------------------------------------------------------


class Clock:
    """A perf_counter that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Analyser:
    """Stands for FaceAnalyser: ``analyse_photo(data)`` takes 0.1 s and returns one face
    tagged with the photo, or raises CorruptImage for the photos in ``bad``."""

    settings = SimpleNamespace(crop_method="aligned")

    def __init__(self, clock: Clock, bad=()):
        self.clock, self.bad, self.photos = clock, set(bad), []

    def analyse_photo(self, data: bytes):
        self.photos.append(data)
        self.clock.advance(0.1)
        if data in self.bad:
            raise CorruptImage(f"{data!r} is not a photo")
        face = SimpleNamespace(photo=data, crop=None, embedding=np.zeros(128, np.float32))
        return np.zeros((8, 8, 3), np.uint8), [face]


class TimedEngine:
    """An engine whose answer takes 0.02 s; it cannot answer for the photos in ``refuse``."""

    name, available, reason = "facenet", True, ""

    def __init__(self, clock: Clock, refuse=()):
        self.clock, self.refuse, self.asked = clock, set(refuse), []

    def identify(self, faces) -> Identification:
        self.asked.append([face.photo for face in faces])
        self.clock.advance(0.02)
        if any(face.photo in self.refuse for face in faces):
            raise EngineUnavailable("no model to answer with")
        return Identification(tuple(Answer("ann", 0.9) for _ in faces), {})

    def describe(self) -> dict:
        return {"engine": self.name}


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The comparison module's clock, moved by the fakes only."""
    clock = Clock()
    monkeypatch.setattr(comparison_module, "time", SimpleNamespace(perf_counter=clock))
    return clock


def test_time_identify_warms_up_once_and_times_each_usable_photo(clock):
    analyser, engine = Analyser(clock, bad={b"bad"}), TimedEngine(clock, refuse={b"refused"})
    photos = [b"p1", b"bad", b"p2", b"refused", b"p3"]
    timings = time_identify(analyser, engine, photos)
    # The first photo twice (one untimed warm-up), then every photo once.
    assert analyser.photos == [b"p1", *photos]
    assert engine.asked == [[b"p1"], [b"p1"], [b"p2"], [b"refused"], [b"p3"]]
    # One timing per usable photo: decode to answer, 0.1 + 0.02 s; bad and refused left out.
    assert timings == pytest.approx([0.12, 0.12, 0.12])
    assert time_identify(analyser, engine, []) == []


def test_compare_model_times_the_held_out_photos_it_finds(tmp_path, clock):
    stores = local_stores(tmp_path)
    for item in ENROLLED:
        record = PhotoRecord(item.photo_key, item.person, f"sha-{item.photo_key}", "enrolled")
        stores.catalog.put_photo(replace(record, face_count=1), [item])
    for item in HELD_OUT_RECORDS[:4]:  # cy's held-out photo is no longer in the ingest store
        stores.ingest.put(item.photo_key, item.photo_key.encode())
    refused = {"key": "cy/dark.jpg", "code": "no_face", "reason": "no face found in the photo"}
    stores.quarantine.put("aaa.json", json.dumps(refused).encode())
    earlier = {
        "model_id": "2026-a",
        "labels": LABELS,
        "split": {"train_faces": 4},
        "training_seconds": 0.1,
    }
    stores.models.put("2026-a/metadata.json", json.dumps(earlier).encode())
    model = nearest_model(HELD_OUT_IDS)
    runs = evaluate(model, TRAINING_SET, CROPS.__getitem__)
    analyser, engine = Analyser(clock, bad={b"bob/bh2.jpg"}), TimedEngine(clock)
    comparison = compare_model(stores, analyser, engine, model, runs, 2048, (1_000,))
    found = [item.photo_key.encode() for item in HELD_OUT_RECORDS[:4]]
    assert analyser.photos == [found[0], *found]
    seconds = comparison["engines"]["facenet"]["seconds"]
    assert seconds["count"] == 3 and seconds["mean"] == pytest.approx(0.12)
    assert comparison["cost"]["seconds_per_photo"] == pytest.approx(0.12)
    assert comparison["cost"]["memory_mb"] == 2048
    assert comparison["cost"]["stored_faces"] == len(TRAINING)
    assert [face["face_id"] for face in comparison["faces"]] == HELD_OUT_IDS
    assert comparison["engines"]["nearest"]["correct"] == 3
    assert comparison["enrolment_refusals"] == [
        {"photo_key": "cy/dark.jpg", "code": "no_face", "reason": "no face found in the photo"}
    ]
    assert comparison["training_history"] == [
        {"model_id": "2026-a", "people": 3, "train_faces": 4, "training_seconds": 0.1}
    ]
    stores.catalog.close()


# ---- what the stores say -------------------------------------------------------------------


def test_enrolment_refusals_and_training_history_come_from_the_stores(tmp_path):
    stores = local_stores(tmp_path)
    catalog, quarantine, models = stores.catalog, stores.quarantine, stores.models
    refused = {"key": "ann/dark.jpg", "code": "no_face", "reason": "no face found in the photo"}
    quarantine.put("aaa.json", json.dumps(refused).encode())
    quarantine.put("aaa.bin", b"\xff\xd8")
    since = {"key": "ann/a1.jpg", "code": "no_face", "reason": "no face found in the photo"}
    quarantine.put("bbb.json", json.dumps(since).encode())
    catalog.put_photo(PhotoRecord("ann/a1.jpg", "ann", "bbb", "enrolled", "", 1), [TRAINING[0]])
    assert enrolment_refusals(catalog, quarantine) == [
        {"photo_key": "ann/dark.jpg", "code": "no_face", "reason": "no face found in the photo"}
    ]
    for model_id, faces, seconds in (("2026-b", 60, 0.9), ("2026-a", 30, 0.2)):
        meta = {
            "model_id": model_id,
            "labels": LABELS,
            "split": {"train_faces": faces},
            "training_seconds": seconds,
        }
        models.put(f"{model_id}/metadata.json", json.dumps(meta).encode())
        models.put(f"{model_id}/model.joblib", b"not read")
    assert training_history(models) == [
        {"model_id": "2026-a", "people": 3, "train_faces": 30, "training_seconds": 0.2},
        {"model_id": "2026-b", "people": 3, "train_faces": 60, "training_seconds": 0.9},
    ]
    catalog.close()


# ---- Rekognition from a laptop -------------------------------------------------------------


def test_rekognition_needs_credentials_and_a_region(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert "no AWS credentials" in rekognition_unavailable(boto3.session.Session())
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    assert "no AWS region" in rekognition_unavailable(boto3.session.Session(**keys))
    assert rekognition_unavailable(boto3.session.Session(region_name="us-east-1", **keys)) is None
