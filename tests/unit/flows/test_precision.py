"""Embeddings of two FaceNet precisions are never mixed: a gallery or model made at one is
refused at the other, with the command that re-embeds it, and ``reembed_stale`` does."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from facerec.core.errors import EngineUnavailable, NotEnoughData
from facerec.core.records import LEGACY_EMBEDDING_MODEL
from facerec.core.settings import DEFAULT_PRECISION, AnalysisSettings, TrainOptions
from facerec.flows.enrol import read_labelled_folder
from facerec.flows.identify import identify_photo
from facerec.flows.reembed import reembed_stale
from facerec.interfaces.local import LocalDeployment
from facerec.storage.local import SqliteCatalog
from facerec.vision.assets import WEIGHTS_SHA256
from facerec.vision.embedding import MODEL_ID, embedding_stamp
from facerec.vision.images import decode_image


def test_the_legacy_stamp_is_the_fp32_networks_own():
    fp32 = {"model_id": MODEL_ID, "weights_sha256": WEIGHTS_SHA256, "precision": "fp32"}
    assert embedding_stamp(fp32) == LEGACY_EMBEDDING_MODEL
    int8 = {**fp32, "precision": "int8", "network_sha256": "ab" * 32}
    assert embedding_stamp(int8) == f"{MODEL_ID}+int8@{WEIGHTS_SHA256[:12]}"


def test_a_catalog_from_before_stamps_marks_its_faces_as_the_keras_models(tmp_path):
    path = tmp_path / "catalog.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE photos (key TEXT PRIMARY KEY, person TEXT NOT NULL, sha256 TEXT NOT "
            "NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', face_count INTEGER "
            "NOT NULL DEFAULT 0, width INTEGER NOT NULL DEFAULT 0, height INTEGER NOT NULL "
            "DEFAULT 0, updated_at TEXT NOT NULL DEFAULT '');"
            "CREATE TABLE faces (face_id TEXT PRIMARY KEY, photo_key TEXT NOT NULL, face_index "
            "INTEGER NOT NULL, person TEXT, box TEXT NOT NULL, confidence REAL NOT NULL, "
            "crop_key TEXT NOT NULL, crop_method TEXT NOT NULL, embedding BLOB NOT NULL);"
        )
        db.execute(
            "INSERT INTO photos (key, person, sha256, status) VALUES ('a/1', 'a', 'x', 'ok')"
        )
        db.execute(
            "INSERT INTO faces VALUES ('f1', 'a/1', 0, 'a', '[0, 0, 9, 9]', 0.99, 'a/1-0.png',"
            " 'aligned', ?)",
            (np.ones(128, np.float32).tobytes(),),
        )
    catalog = SqliteCatalog(path, embedding_model="facenet+int8@0123")
    [face] = catalog.faces()
    assert face.embedding_model == LEGACY_EMBEDDING_MODEL
    catalog.set_embedding(face, np.zeros(128, np.float32))
    [face] = catalog.faces()
    assert face.embedding_model == "facenet+int8@0123" and not face.embedding.any()
    catalog.close()


@pytest.fixture(scope="module")
def fp32_analyser(assets):
    from facerec.vision.analyser import build_analyser

    return build_analyser(assets.models, AnalysisSettings(precision="fp32"))


@pytest.mark.model
def test_switching_precision_refuses_the_old_gallery_until_it_is_reembedded(
    tmp_path, analyser, fp32_analyser, sample_set
):
    assert analyser.embedder.precision == DEFAULT_PRECISION != "fp32"
    photo = sorted((sample_set / "val" / "madonna").glob("*.jpg"))[0].read_bytes()
    before = LocalDeployment(tmp_path, fp32_analyser)
    before.enrol(read_labelled_folder(sample_set / "train", lambda *_: None))
    before.train(TrainOptions(test_size=0.0))
    before.stores.catalog.close()

    after = LocalDeployment(tmp_path, analyser)
    with pytest.raises(NotEnoughData, match=r"facerec reembed"):
        after.labelled_faces()
    with pytest.raises(EngineUnavailable, match="re-embed the gallery"):
        identify_photo(after.analyser, after.engines, ["facenet"], photo)

    catalog = after.stores.catalog
    count = len(catalog.faces(labelled_only=False))
    progress = []
    done = reembed_stale(
        catalog, after.stores.faces, analyser.embedder, lambda *step: progress.append(step)
    )
    assert done == {"reembedded": count, "unchanged": 0}
    assert progress[-1] == (count, count)
    faces = catalog.faces(labelled_only=False)
    assert {face.embedding_model for face in faces} == {analyser.embedder.stamp}
    crop = decode_image(after.stores.faces.get(faces[0].crop_key))
    np.testing.assert_allclose(
        faces[0].embedding, analyser.embedder.embed(crop[None])[0], atol=1e-6
    )
    assert reembed_stale(catalog, after.stores.faces, analyser.embedder) == {
        "reembedded": 0,
        "unchanged": count,
    }

    after.train(TrainOptions(test_size=0.0))
    result = identify_photo(after.analyser, after.engines, ["facenet", "nearest"], photo)
    assert [face["facenet"]["person"] for face in result["faces"]] == ["madonna"]
    assert [face["nearest"]["person"] for face in result["faces"]] == ["madonna"]
