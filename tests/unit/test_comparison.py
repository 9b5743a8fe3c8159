"""The comparison: the cost model's arithmetic across Rekognition's price tiers, the records
of a comparison, the nearest-face engine on a small hand-made gallery, and Rekognition's
gallery and answers through botocore's Stubber on a real boto3 client (responses shaped as the
service returns them, validated against its model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace

import boto3
import numpy as np
import pytest
from botocore.stub import ANY, Stubber

from facerec import comparison as comparison_module
from facerec.comparison import (
    FACENET_SCORE,
    NEAREST_SCORE,
    NEAREST_THRESHOLDS,
    EngineRun,
    RekognitionGallery,
    assemble,
    box_overlap,
    cleanup,
    collection_gallery,
    compare,
    cost_model,
    enrolment_refusals,
    hybrid_routing,
    index_gallery,
    lambda_cost,
    prepare_rekognition,
    rekognition_image_cost,
    rekognition_unavailable,
    run_facenet,
    run_nearest,
    run_rekognition,
    split_faces,
    training_history,
)
from facerec.errors import NotEnoughData
from facerec.evaluation import DEFAULT_THRESHOLDS
from facerec.images import encode_png
from facerec.models import FaceNetAnswers, TrainedModel
from facerec.openset import OpenSetIdentifier
from facerec.rekognition import (
    FaceCollection,
    RekognitionEngine,
    UnavailableEngine,
    external_image_id,
)
from facerec.storage.local import FolderBlobStore, SqliteCatalog
from facerec.storage.ports import FaceRecord, PhotoRecord
from tests.functions.support import (
    ENV,
    index_params,
    indexed_response,
    refused_response,
    search_params,
    search_response,
)

COLLECTION = ENV["COLLECTION_ID"]
LABELS = ["ann", "bob", "cy"]


def face(person: str, name: str) -> FaceRecord:
    """A labelled face of photo ``<person>/<name>.jpg`` (its crop is ``<name>-0.png``)."""
    return FaceRecord(
        f"{person}/{name}.jpg#0",
        f"{person}/{name}.jpg",
        0,
        person,
        (10, 10, 110, 130),
        0.99,
        f"{person}/{name}-0.png",
        "aligned",
        np.zeros(128, np.float32),
    )


TRAINING = [face(p, n) for p, n in [("ann", "a1"), ("ann", "a2"), ("bob", "b1")]]
TRAINING += [face(p, n) for p, n in [("bob", "b2"), ("cy", "c1"), ("cy", "c2")]]
HELD_OUT = [face(p, n) for p, n in [("ann", "ah1"), ("ann", "ah2"), ("bob", "bh1")]]
HELD_OUT += [face("bob", "bh2"), face("cy", "ch1")]
CROPS = {
    item.crop_key: encode_png(np.full((160, 160, 3), 40 + 7 * i, np.uint8))
    for i, item in enumerate(TRAINING + HELD_OUT)
}


def facenet_answer(person: str, probability: float, open_set: float, seconds: float) -> dict:
    """One FaceNet answer as run_facenet records it."""
    return {
        "person": person,
        "score": probability,
        "open_set_score": open_set,
        "accepted": person != "unknown",
        "seconds": seconds,
    }


# FaceNet's answers for the held-out faces, as run_facenet records them: one wrong (bob as ann).
FACENET_ANSWERS = {
    HELD_OUT[0].face_id: facenet_answer("ann", 0.91, 0.52, 0.21),
    HELD_OUT[1].face_id: facenet_answer("ann", 0.85, 0.44, 0.25),
    HELD_OUT[2].face_id: facenet_answer("bob", 0.77, 0.18, 0.30),
    HELD_OUT[3].face_id: facenet_answer("ann", 0.31, 0.05, 0.20),
    HELD_OUT[4].face_id: facenet_answer("cy", 0.88, 0.36, 0.24),
}
# A weaker FaceNet for the hybrid (Rekognition, stubbed: right on ann, ann, bob's second face;
# wrong on bob's first; refuses cy's): FaceNet right on 1 and 2 only, "unknown" on cy's face.
HYBRID_ANSWERS = {
    HELD_OUT[0].face_id: facenet_answer("bob", 0.52, 0.10, 0.25),
    HELD_OUT[1].face_id: facenet_answer("ann", 0.93, 0.40, 0.25),
    HELD_OUT[2].face_id: facenet_answer("bob", 0.81, 0.30, 0.25),
    HELD_OUT[3].face_id: facenet_answer("ann", 0.64, 0.20, 0.25),
    HELD_OUT[4].face_id: facenet_answer("unknown", 0.47, 0.05, 0.25),
}


def model_with_split(test_face_ids: list[str], **extra) -> TrainedModel:
    """A trained model's metadata as Pipeline.train writes it (the classifier is not used),
    plus ``extra`` metadata keys."""
    return TrainedModel(
        None,
        {
            **extra,
            "model_id": "20261128T120000Z-abcdef12",
            "created_at": "2026-11-28T12:00:00+00:00",
            "labels": LABELS,
            "cv": {"folds": 2, "mean": 0.9, "std": 0.05, "scores": [0.85, 0.95]},
            "split": {
                "test_size": 0.25,
                "seed": 42,
                "train_faces": len(TRAINING),
                "test_faces": len(test_face_ids),
                "test_face_ids": test_face_ids,
            },
            "training_seconds": 0.04,
        },
    )


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


def rekognition_run(client, stubber) -> tuple[EngineRun, RekognitionGallery]:
    """Index the training crops and search with the held-out ones, all through the Stubber."""
    collection = FaceCollection(client, COLLECTION)
    people = stub_index_training(stubber)
    gallery = index_gallery(collection, TRAINING, CROPS.__getitem__)
    stub_searches(stubber, people)
    stubber.add_response("describe_collection", describe_response(), {"CollectionId": COLLECTION})
    engine = RekognitionEngine(collection, gallery, 0.0)
    return run_rekognition(engine, CROPS.__getitem__, HELD_OUT, gallery), gallery


def two_engine_comparison(
    client, stubber, answers: dict = FACENET_ANSWERS, metadata: dict | None = None, **options
) -> dict:
    """FaceNet's recorded answers and Rekognition's stubbed ones on the same held-out faces
    (``metadata``: extra model metadata)."""
    run, _ = rekognition_run(client, stubber)
    facenet = EngineRun(
        "facenet",
        FACENET_SCORE,
        DEFAULT_THRESHOLDS,
        answers,
        describe={
            "timed": "per photo: decode, detect, crop, embed, classify, open-set score",
            "open_set_threshold": 0.07,
        },
    )
    model = model_with_split([item.face_id for item in HELD_OUT], **(metadata or {}))
    return assemble(model, HELD_OUT, [facenet, run], len(TRAINING), [], [], **options)


def unit(**axes: float) -> np.ndarray:
    """A unit float32 (128,) vector from weights on axes ``a0`` .. ``a127``."""
    vector = np.zeros(128, np.float32)
    for axis, weight in axes.items():
        vector[int(axis[1:])] = weight
    return vector / np.linalg.norm(vector)


# The nearest engine's hand-made gallery: two faces per person on their own axis. Every
# leave-one-person-out impostor score is 0 - 0, so the calibrated threshold is exactly 0.
GALLERY_PEOPLE = ["ann", "ann", "bob", "bob", "cy", "cy"]
GALLERY_VECTORS = np.stack([unit(a0=1), unit(a0=1), unit(a1=1), unit(a1=1), unit(a2=1), unit(a2=1)])
# Held-out faces with embeddings, and the nearest engine's answer to each: the person of the
# nearest face, accepted when its open-set score (cosine to that person's centroid minus the
# mean cosine to the other people's) is above 0.
HELD_OUT_EMBEDDED = [
    replace(item, embedding=vector)
    for item, vector in zip(
        HELD_OUT,
        [
            unit(a0=1),  # ann: 1 - 0
            unit(a0=1, a1=0.5),  # ann: 0.894 - (0.447 + 0) / 2
            unit(a0=0.8, a1=0.6),  # bob, nearest to ann: 0.8 - (0.6 + 0) / 2, wrong
            unit(a1=1),  # bob: 1 - 0
            unit(a3=1),  # cy, like nobody enrolled: 0 - 0, not above 0: "unknown"
        ],
        strict=True,
    )
]
NEAREST_EXPECTED = [
    ("ann", 1.0),
    ("ann", 0.8944272 - 0.4472136 / 2),
    ("ann", 0.5),
    ("bob", 1.0),
    ("unknown", 0.0),
]
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


def nearest_model(test_face_ids: list[str], **extra) -> TrainedModel:
    """``model_with_split`` with an open-set part fitted on the hand-made gallery, and both
    calibrations in its metadata as fit writes them."""
    identifier = OpenSetIdentifier().fit(
        GALLERY_VECTORS, np.array(GALLERY_PEOPLE), np.array([f"g{i}" for i in range(6)])
    )
    open_set = {
        **identifier.calibration_.to_dict(),
        "label": "the SVC's; unknown when the score is not above the threshold",
        "gallery": "the training part's 6 faces",
    }
    model = model_with_split(test_face_ids, open_set=open_set, nearest=SERVICE_NEAREST, **extra)
    return TrainedModel(model.classifier, model.metadata, identifier)


def three_engine_comparison(client, stubber, **options) -> dict:
    """FaceNet's recorded answers (threshold 0, none "unknown"), the nearest engine on the
    hand-made gallery and Rekognition's stubbed answers, on the same held-out faces."""
    run, _ = rekognition_run(client, stubber)
    facenet = EngineRun(
        "facenet",
        FACENET_SCORE,
        DEFAULT_THRESHOLDS,
        FACENET_ANSWERS,
        describe={
            "timed": "per photo: decode, detect, crop, embed, classify, open-set score",
            "open_set_threshold": 0.0,
        },
    )
    model = nearest_model([item.face_id for item in HELD_OUT])
    nearest = run_nearest(model, HELD_OUT_EMBEDDED)
    return assemble(model, HELD_OUT, [facenet, nearest, run], len(TRAINING), [], [], **options)


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
    assert "Measured in this process on this machine, not in Lambda" in local
    where = "the write_report Lambda function at 3008 MB"
    cloud = " ".join(cost_model([1_000], 0.5, 0.8, 3008, 10, measured_in=where)["assumptions"])
    assert f"Measured in {where}, after one untimed warm-up call" in cloud
    assert "not in Lambda" not in cloud


@pytest.mark.parametrize("volumes", [[], [0], [1_000, -5]])
def test_cost_model_refuses_volumes_that_are_not_positive(volumes):
    with pytest.raises(ValueError, match="volumes must be positive"):
        cost_model(volumes, 0.2, 0.3, 3008, 10)


# ---- records -------------------------------------------------------------------------------


def test_box_overlap():
    assert box_overlap((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_overlap((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_overlap((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_split_faces_uses_the_models_held_out_ids():
    everyone = TRAINING + HELD_OUT
    training, held_out = split_faces(everyone, model_with_split([HELD_OUT[1].face_id]))
    assert held_out == [HELD_OUT[1]] and len(training) == len(everyone) - 1
    with pytest.raises(NotEnoughData, match="without a held-out part"):
        split_faces(everyone, model_with_split([]))
    with pytest.raises(NotEnoughData, match=r"1 held-out faces .* no longer enrolled"):
        split_faces(TRAINING, model_with_split([HELD_OUT[0].face_id]))


def test_index_gallery_maps_face_ids_and_records_refusals(rekognition):
    client, stubber = rekognition
    people = stub_index_training(stubber)
    gallery = index_gallery(FaceCollection(client, COLLECTION), TRAINING, CROPS.__getitem__)
    assert gallery.face_people == people and len(people) == 5
    assert list(gallery.refused) == ["cy/c2-0.png"]
    assert "LOW_SHARPNESS" in gallery.refused["cy/c2-0.png"]
    assert gallery.people(["nope", *people][:3]) == {
        face_id: people[face_id] for face_id in list(people)[:2]
    }


def test_a_collection_filled_at_enrolment_names_training_faces_and_excludes_held_out_ones():
    # The chain indexed every labelled crop, held-out ones too; one training crop is missing.
    indexed = {f"face-{i}": item.crop_key for i, item in enumerate(TRAINING[:-1] + HELD_OUT)}
    gallery = collection_gallery(
        COLLECTION, indexed, TRAINING, HELD_OUT, lambda key: f"refused: {key}"
    )
    assert gallery.collection_id == COLLECTION and not gallery.created_collection
    assert gallery.face_people == {f"face-{i}": item.person for i, item in enumerate(TRAINING[:-1])}
    assert gallery.exclude == {f"face-{i}" for i in range(len(TRAINING) - 1, len(indexed))}
    assert gallery.refused == {"cy/c2-0.png": "refused: cy/c2-0.png"}


def test_rekognition_run_records_answers_refusals_and_timings(rekognition):
    client, stubber = rekognition
    run, _ = rekognition_run(client, stubber)
    answers = [run.answers[item.face_id] for item in HELD_OUT]
    assert [answer["person"] for answer in answers] == ["ann", "ann", "cy", "bob", None]
    assert [answer["score"] for answer in answers] == [99.62, 98.2, 84.0, 97.03, None]
    assert "found no face" in answers[4]["reason"]
    assert all(answer["seconds"] >= 0 for answer in answers)
    assert run.gallery_refusals[0]["crop_key"] == "cy/c2-0.png"
    assert run.describe["face_model_version"] == "7.0"
    assert run.describe["min_similarity"] == 0.0


def test_excluded_face_ids_never_match_and_unmapped_matches_name_nobody(rekognition):
    client, stubber = rekognition
    collection = FaceCollection(client, COLLECTION)
    gallery = RekognitionGallery(COLLECTION, {"face-ann": "ann"}, exclude=frozenset({"held"}))
    stubber.add_response(
        "search_faces_by_image",
        search_response([("held", 99.9), ("face-ann", 96.5)]),
        search_params(2),
    )
    stubber.add_response(
        "search_faces_by_image", search_response([("face-elsewhere", 91.0)]), search_params(2)
    )
    stubber.add_response("describe_collection", describe_response(), {"CollectionId": COLLECTION})
    engine = RekognitionEngine(collection, gallery, 0.0)
    run = run_rekognition(engine, CROPS.__getitem__, HELD_OUT[:2], gallery)
    first, second = (run.answers[item.face_id] for item in HELD_OUT[:2])
    assert (first["person"], first["score"]) == ("ann", 96.5)
    assert (second["person"], second["score"]) == (None, 91.0)
    assert "not in the face index table" in second["reason"]


def test_assemble_joins_both_engines_face_by_face(rekognition):
    comparison = two_engine_comparison(*rekognition, memory_mb=2048, volumes=(1_000,))
    assert len(comparison["faces"]) == 5
    bob = comparison["faces"][2]
    assert bob["truth"] == "bob" and bob["crop_key"] == "bob/bh1-0.png"
    assert bob["answers"]["facenet"]["person"] == "bob"
    assert bob["answers"]["rekognition"] == {"person": "cy", "score": 84.0, "seconds": ANY}
    facenet, rekognition = comparison["engines"]["facenet"], comparison["engines"]["rekognition"]
    assert (facenet["correct"], facenet["answered"], facenet["accuracy_all"]) == (4, 5, 0.8)
    assert (rekognition["correct"], rekognition["answered"]) == (3, 4)
    assert rekognition["accuracy_all"] == pytest.approx(0.6)
    assert [item["stage"] for item in rekognition["refusals"]] == ["identify", "gallery"]
    assert rekognition["evaluation"]["errors"] == [
        {"truth": "bob", "predicted": "cy", "score": 84.0}
    ]
    assert facenet["seconds"]["mean"] == pytest.approx(1.2 / 5)
    cost = comparison["cost"]
    assert cost["seconds_per_photo"] == pytest.approx(1.2 / 5) and cost["memory_mb"] == 2048
    assert cost["stored_faces"] == 5  # 6 training crops, one refused by IndexFaces
    assert comparison["model"]["people"] == 3 and comparison["model"]["test_faces"] == 5
    json.dumps(comparison)  # JSON-ready


def test_an_engine_that_did_not_run_has_a_reason_and_no_answers():
    facenet = EngineRun("facenet", FACENET_SCORE, DEFAULT_THRESHOLDS, FACENET_ANSWERS)
    absent = EngineRun("rekognition", "similarity (0-100)", (), reason="no AWS credentials")
    model = model_with_split([item.face_id for item in HELD_OUT])
    comparison = assemble(model, HELD_OUT, [facenet, absent], len(TRAINING), [], [])
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
    alone = assemble(model, HELD_OUT, [facenet], len(TRAINING), [], [])["hybrid"]
    assert alone == {"ran": False, "reason": "Rekognition was not part of this comparison."}
    with pytest.raises(NotEnoughData, match="FaceNet run is missing"):
        assemble(model, HELD_OUT, [absent], len(TRAINING), [], [])


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


def test_answers_without_an_open_set_score_route_on_their_probability():
    # A run recorded before the open-set score: its probability stands in (identify answers
    # with the probability for a model without an open-set part).
    legacy = {
        face_id: {key: answer[key] for key in ("person", "score", "seconds")}
        for face_id, answer in FACENET_ANSWERS.items()
    }
    facenet = EngineRun("facenet", FACENET_SCORE, DEFAULT_THRESHOLDS, legacy)
    rekognition = EngineRun(
        "rekognition",
        "similarity (0-100)",
        (),
        {item.face_id: {"person": item.person, "score": 99.0, "seconds": 0.3} for item in HELD_OUT},
    )
    model = model_with_split([item.face_id for item in HELD_OUT], routing=0.5)
    hybrid = hybrid_routing(model, HELD_OUT, facenet, rekognition, 0.25)
    assert [p["threshold"] for p in hybrid["points"]] == [
        "-inf",
        0.31,
        0.77,
        0.85,
        0.88,
        0.91,
        "inf",
    ]
    assert hybrid["stored"]["routed"] == 1 and hybrid["stored"]["correct"] == 5  # 0.31 routed
    assert hybrid["best"]["threshold"] == 0.77 and hybrid["best"]["correct"] == 5


# ---- the nearest-face engine ---------------------------------------------------------------


def test_the_nearest_engine_names_the_nearest_person_or_unknown():
    model = nearest_model([item.face_id for item in HELD_OUT])
    assert model.open_set.calibration_.threshold == 0.0
    run = run_nearest(model, HELD_OUT_EMBEDDED)
    assert (run.name, run.score, run.thresholds, run.reason) == (
        "nearest",
        NEAREST_SCORE,
        NEAREST_THRESHOLDS,
        "",
    )
    answers = [run.answers[item.face_id] for item in HELD_OUT]
    assert [answer["person"] for answer in answers] == [person for person, _ in NEAREST_EXPECTED]
    np.testing.assert_allclose(
        [answer["score"] for answer in answers], [score for _, score in NEAREST_EXPECTED], atol=1e-6
    )
    assert [answer["accepted"] for answer in answers] == [True, True, True, True, False]
    assert all(0 <= answer["seconds"] < 1 for answer in answers)
    assert run.describe["open_set_threshold"] == 0.0
    assert run.describe["gallery_faces"] == 6 and run.describe["people"] == 3
    assert run.describe["timed"].startswith("per face: gallery search of the stored embedding")
    assert run.describe["calibration"] == "leave-one-person-out"
    json.dumps(run.answers, allow_nan=False)


def test_the_nearest_thresholds_cover_the_open_set_scale():
    assert NEAREST_THRESHOLDS[0] == 0.0 and NEAREST_THRESHOLDS[-1] == 0.6
    assert np.allclose(np.diff(NEAREST_THRESHOLDS), 0.05)


def test_a_model_without_an_open_set_part_does_not_run_the_nearest_engine():
    run = run_nearest(model_with_split([item.face_id for item in HELD_OUT]), HELD_OUT_EMBEDDED)
    assert run.answers == {} and "no open-set gallery" in run.reason
    assert "retrain" in run.reason


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
    assert [row["threshold"] for row in nearest["evaluation"]["thresholds"]] == list(
        NEAREST_THRESHOLDS
    )
    cy = comparison["faces"][4]["answers"]
    assert cy["nearest"]["person"] == "unknown" and cy["nearest"]["accepted"] is False
    assert comparison["model"]["open_set"]["impostor_scores"] == 6
    assert comparison["model"]["open_set"]["threshold"] == 0.0
    assert comparison["model"]["nearest"] == SERVICE_NEAREST
    # The hybrid stays FaceNet + Rekognition, the cost model FaceNet's.
    assert comparison["hybrid"]["facenet_alone"]["correct"] == engines["facenet"]["correct"]
    assert comparison["cost"]["seconds_per_photo"] == pytest.approx(1.2 / 5)
    json.dumps(comparison, allow_nan=False)


def test_compare_runs_facenet_nearest_and_rekognition_in_that_order(tmp_path, monkeypatch):
    model = nearest_model([item.face_id for item in HELD_OUT])
    facenet = EngineRun("facenet", FACENET_SCORE, DEFAULT_THRESHOLDS, FACENET_ANSWERS)
    monkeypatch.setattr(comparison_module, "run_facenet", lambda *_: facenet)
    pipeline = SimpleNamespace(
        labelled_faces=lambda: TRAINING + HELD_OUT_EMBEDDED,
        catalog=SqliteCatalog(tmp_path / "catalog.sqlite"),
        quarantine=FolderBlobStore(tmp_path / "q"),
        models=FolderBlobStore(tmp_path / "m"),
    )
    comparison = compare(pipeline, model, UnavailableEngine("rekognition", "no AWS credentials"))
    engines = comparison["engines"]
    assert list(engines) == ["facenet", "nearest", "rekognition"]
    assert engines["nearest"]["ran"] and engines["nearest"]["correct"] == 3
    assert not engines["rekognition"]["ran"]
    legacy = compare(
        pipeline,
        model_with_split([item.face_id for item in HELD_OUT]),
        UnavailableEngine("rekognition", "no AWS credentials"),
    )
    assert legacy["engines"]["nearest"]["ran"] is False
    assert "no open-set gallery" in legacy["engines"]["nearest"]["reason"]
    assert legacy["model"]["open_set"] is None and legacy["model"]["nearest"] is None


def fake_photo(*faces: tuple[tuple[int, int, int, int], str, float, float]) -> list:
    """Analysed faces of one photo: (box, label, probability, open-set score) each."""
    return [
        SimpleNamespace(
            embedding=np.full(128, index, np.float32),
            face=SimpleNamespace(box=box),
            answer=(label, probability, score),
        )
        for index, (box, label, probability, score) in enumerate(faces)
    ]


def test_run_facenet_records_the_open_set_answer_of_the_enrolled_face():
    enrolled, elsewhere = (10, 10, 110, 130), (300, 300, 400, 420)
    photos = {
        HELD_OUT[0].photo_key: fake_photo(
            (elsewhere, "bob", 0.6, 0.1), (enrolled, "ann", 0.9, 0.45)
        ),
        HELD_OUT[1].photo_key: fake_photo((enrolled, "unknown", 0.7, 0.12)),
        HELD_OUT[2].photo_key: fake_photo((elsewhere, "bob", 0.8, 0.5)),
        HELD_OUT[3].photo_key: fake_photo((enrolled, "unknown", 0.4, -np.inf)),
    }
    analysed = []
    pipeline = SimpleNamespace(
        ingest=SimpleNamespace(get=lambda key: key),
        analyse_photo=lambda key: (None, analysed.append(key) or photos[key]),
    )

    def identify(embeddings):
        items = photos[analysed[-1]]
        assert embeddings.shape == (len(items), 128)
        labels, probabilities, scores = zip(*(item.answer for item in items), strict=True)
        return FaceNetAnswers(
            np.array(labels), np.array(probabilities), np.array(scores, np.float32), 0.2
        )

    metadata = {
        "classifier": {"kind": "SVC", "kernel": "linear", "C": 1.0},
        "embedding": {"model_id": "facenet"},
        "crop": {"method": "aligned"},
        "open_set": {"score": "centroid cosine minus mean of the 20 nearest other centroids"},
    }
    model = SimpleNamespace(model_id="m", metadata=metadata, identify=identify)
    run = run_facenet(pipeline, model, HELD_OUT[:4])
    answers = [run.answers[item.face_id] for item in HELD_OUT[:4]]
    assert {key: answers[0][key] for key in ("person", "accepted")} == {
        "person": "ann",
        "accepted": True,
    }
    assert answers[0]["score"] == 0.9 and answers[0]["open_set_score"] == pytest.approx(0.45)
    assert (answers[1]["person"], answers[1]["accepted"]) == ("unknown", False)
    assert answers[1]["score"] == 0.7 and answers[1]["open_set_score"] == pytest.approx(0.12)
    assert answers[2]["person"] is None and answers[2]["accepted"] is False
    assert answers[2]["open_set_score"] is None and "not found again" in answers[2]["reason"]
    assert answers[3]["open_set_score"] is None  # -inf is not JSON: no score
    assert run.describe["open_set_threshold"] == 0.2
    assert run.describe["open_set_score"].startswith("centroid cosine")
    assert analysed.count(HELD_OUT[0].photo_key) == 2  # the untimed warm-up call
    json.dumps(run.answers, allow_nan=False)


def test_enrolment_refusals_and_training_history_come_from_the_stores(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite")
    quarantine, models = FolderBlobStore(tmp_path / "q"), FolderBlobStore(tmp_path / "m")
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


def test_prepare_creates_a_missing_collection_indexes_and_cleans_up(rekognition):
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
    engine, gallery = prepare_rekognition(client, COLLECTION, TRAINING, CROPS.__getitem__)
    assert isinstance(engine, RekognitionEngine) and engine.min_similarity == 0.0
    assert gallery.created_collection and gallery.face_people == people
    ids = sorted(people)
    stubber.add_response(
        "delete_faces", {"DeletedFaces": ids}, {"CollectionId": COLLECTION, "FaceIds": ids}
    )
    stubber.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": COLLECTION})
    assert cleanup(engine.collection, gallery) == {"faces_deleted": 5, "collection_deleted": True}


def test_prepare_reports_an_aws_refusal_as_not_run(rekognition):
    client, stubber = rekognition
    stubber.add_client_error(
        "describe_collection",
        "AccessDeniedException",
        "User is not authorized to perform: rekognition:DescribeCollection",
        400,
        expected_params={"CollectionId": COLLECTION},
    )
    engine, gallery = prepare_rekognition(client, COLLECTION, TRAINING, CROPS.__getitem__)
    assert isinstance(engine, UnavailableEngine) and gallery is None
    assert "AccessDeniedException" in engine.reason and "not authorized" in engine.reason
