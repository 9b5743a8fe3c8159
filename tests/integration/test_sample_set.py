"""The real models on the real 5-person sample set (weights and photos from `make setup`)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facerec.core.settings import TrainOptions
from facerec.engines.classifier import FaceClassifier
from facerec.flows.enrol import read_labelled_folder
from facerec.flows.identify import identify_photo
from facerec.vision.assets import sha256_of
from facerec.vision.images import decode_image

pytestmark = pytest.mark.model

SUNGLASSES_PHOTO = (
    "elton_john/httpsuploadwikimediaorgwikipediacommonsthumbEltonJohninsjpgpxEltonJohninsjpg.jpg"
)


def test_enrolment_outcomes_match_the_sample_set(enrolled):
    _, outcomes, _ = enrolled
    assert len(outcomes) == 93
    statuses = {outcome.key: outcome.status for outcome in outcomes}
    assert statuses[SUNGLASSES_PHOTO] == "no_face"
    assert sum(status == "enrolled" for status in statuses.values()) == 92
    multi = [outcome for outcome in outcomes if outcome.faces > 1]
    assert len(multi) >= 3
    assert all(outcome.rule == "reference" for outcome in multi)


def test_multi_face_photos_label_only_the_named_person(enrolled):
    local, outcomes, _ = enrolled
    everyone = local.stores.catalog.faces(labelled_only=False)
    for outcome in (outcome for outcome in outcomes if outcome.faces > 1):
        faces = [face for face in everyone if face.photo_key == outcome.key]
        others = [
            face.embedding
            for face in local.stores.catalog.faces(outcome.person)
            if face.photo_key != outcome.key
        ]
        centroid = np.mean(others, axis=0)
        centroid /= np.linalg.norm(centroid)
        labelled = [face for face in faces if face.person == outcome.person]
        assert len(labelled) == 1, outcome.key
        assert [face.person for face in faces].count(None) == len(faces) - 1
        assert labelled[0].embedding @ centroid > 0.6
        assert all(face.embedding @ centroid < 0.45 for face in faces if face.person is None)


def test_every_face_has_a_png_crop_stored(enrolled):
    local, _, _ = enrolled
    faces = local.stores.catalog.faces(labelled_only=False)
    assert len(faces) == 97
    crop = decode_image(local.stores.faces.get(faces[0].crop_key))
    assert crop.shape == (160, 160, 3)
    assert faces[0].crop_key.endswith("-0.png")
    assert all(local.stores.faces.exists(face.crop_key) for face in faces)


def test_val_accuracy_on_held_out_photos(enrolled, sample_set):
    local, _, _ = enrolled
    evaluation = local.evaluate_photos(read_labelled_folder(sample_set / "val", print))
    assert evaluation["photos"] == 25
    assert evaluation["photo_accuracy"] >= 0.96
    assert evaluation["refused"] == []


def test_same_person_embeddings_are_closer_than_different_people(enrolled):
    local, _, _ = enrolled
    faces = local.stores.catalog.faces()
    vectors = np.stack([face.embedding for face in faces])
    people = np.array([face.person for face in faces])
    similarity = vectors @ vectors.T
    upper = np.triu_indices(len(faces), k=1)
    same = (people[:, None] == people[None, :])[upper]
    assert similarity[upper][same].mean() > similarity[upper][~same].mean() + 0.4
    assert roc_auc_score(same, similarity[upper]) > 0.99
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedding_is_the_same_at_batch_1_and_batch_32(enrolled, analyser):
    local, _, _ = enrolled
    crops = np.stack(
        [
            decode_image(local.stores.faces.get(face.crop_key))
            for face in local.stores.catalog.faces()[:40]
        ]
    )
    batched = analyser.embedder.embed(crops)
    single = np.concatenate([analyser.embedder.embed(crop[None]) for crop in crops[:3]])
    assert batched.shape == (40, 128) and batched.dtype == np.float32
    np.testing.assert_allclose(single, batched[:3], atol=1e-4)


def test_batched_detection_matches_one_photo_at_a_time(analyser, sample_set):
    photos = sorted((sample_set / "val").glob("*/*.jpg"))[:12]
    images = [decode_image(path.read_bytes()) for path in photos]
    batched = analyser.detector.detect_batch(images)
    for image, faces in zip(images, batched, strict=True):
        alone = analyser.detector.detect(image)
        assert [face.box for face in faces] == [face.box for face in alone]


def test_identify_names_every_face_with_box_and_probability(enrolled, sample_set):
    local, _, model = enrolled
    photo = sorted((sample_set / "val" / "madonna").glob("*.jpg"))[0]
    answer = identify_photo(
        local.analyser, local.engines, ("facenet", "nearest"), photo.read_bytes()
    )
    assert answer["model_id"] == model.model_id
    assert answer["faces"], "no face found"
    best = max(answer["faces"], key=lambda face: face["box"]["width"] * face["box"]["height"])
    assert best["facenet"]["person"] == best["nearest"]["person"] == "madonna"
    assert 0.0 < best["facenet"]["probability"] <= 1.0
    assert best["facenet"]["score"] > answer["engines"]["facenet"]["unknown_threshold"]
    assert best["nearest"]["score"] > answer["engines"]["nearest"]["unknown_threshold"]
    assert set(best["box"]) == {"left", "top", "width", "height"}


def test_train_with_holdout_records_metadata_and_evaluation(local, sample_set):
    local.enrol(read_labelled_folder(sample_set / "train", print))
    model, evaluation = local.train(TrainOptions(test_size=0.25, seed=7))
    meta = model.metadata
    assert evaluation["faces"] == meta["split"]["test_faces"] == 23
    assert evaluation["accuracy"] >= 0.9
    assert meta["classifier"]["C"] == 10.0 and meta["classifier"]["kernel"] == "linear"
    assert meta["cv"]["folds"] == 10 and meta["cv"]["mean"] >= 0.9
    assert meta["embedding"]["model_id"] == "facenet-keras-20170512-110547"
    assert len(meta["embedding"]["weights_sha256"]) == 64
    assert meta["embedding"]["preprocessing"] == "prewhiten"
    assert meta["embedding"]["runtime"] == "onnxruntime"
    assert meta["embedding"]["precision"] == local.analyser.embedder.precision
    network = local.analyser.embedder.models.path(f"facenet-{meta['embedding']['precision']}")
    assert meta["embedding"]["network_sha256"] == sha256_of(network)
    assert meta["crop"] == {"method": "aligned", "margin": 32, "size": 160}
    assert {"scikit-learn", "onnxruntime", "numpy"} <= set(meta["libraries"])
    assert meta["labels"] == sorted(meta["labels"]) and len(meta["labels"]) == 5
    again = local.evaluate_holdout()
    assert again["accuracy"] == evaluation["accuracy"]
    assert isinstance(local.current_model().classifier, FaceClassifier)
    assert local.stores.reports.exists(f"{model.model_id}/holdout-evaluation.json")


def test_select_c_picks_from_the_thesis_grid(local, sample_set):
    local.enrol(read_labelled_folder(sample_set / "train", print))
    model, _ = local.train(TrainOptions(select_c=True, test_size=0.0))
    table = model.metadata["classifier"]["c_selection"]
    assert [row["C"] for row in table] == [0.01, 0.25, 0.5, 1.0, 2.0, 10.0, 100.0]
    assert model.metadata["classifier"]["C"] == max(table, key=lambda row: row["mean"])["C"]


def test_new_bytes_under_a_known_key_replace_the_old_crops(local, sample_set):
    from facerec.flows.enrol import PhotoInput

    train = sample_set / "train"
    two_faces = train / "elton_john" / "httpssmediacacheakpinimgcomxfcfcbaeaeddabbjpg.jpg"
    one_face = sorted((train / "elton_john").glob("*.jpg"))[0]
    [first] = local.enrol([PhotoInput("elton_john", "x.jpg", two_faces.read_bytes())])
    assert first.faces == 2 and local.stores.faces.exists("elton_john/x-1.png")
    [second] = local.enrol([PhotoInput("elton_john", "x.jpg", one_face.read_bytes())])
    assert second.status == "enrolled" and second.faces == 1
    assert local.stores.faces.exists("elton_john/x-0.png")
    assert not local.stores.faces.exists("elton_john/x-1.png")
    [third] = local.enrol([PhotoInput("elton_john", "x.jpg", b"garbage")])
    assert third.code == "not_an_image"
    # the user's upload is kept as uploaded, and quarantined with its reason
    assert local.stores.ingest.get("elton_john/x.jpg") == b"garbage"
    digest = hashlib.sha256(b"garbage").hexdigest()
    assert local.stores.quarantine.get(f"elton_john/{digest}.bin") == b"garbage"
    reason = json.loads(local.stores.quarantine.get(f"elton_john/{digest}.json"))
    assert (reason["key"], reason["code"]) == ("elton_john/x.jpg", "not_an_image")
    # what came from the old photo is gone: its crops and its faces with their embeddings
    assert not local.stores.faces.exists("elton_john/x-0.png")
    assert local.stores.catalog.faces("elton_john", labelled_only=False) == []
    assert local.stores.catalog.get_photo("elton_john/x.jpg").status == "rejected"
