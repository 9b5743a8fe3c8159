"""Crash windows of enrolment, training and forget, by fault injection: the real local stores
(folders, SQLite) are wrapped in a proxy that counts the write calls and stops the run with
SimulatedCrash at write number k. For every k up to the number of writes a clean run makes,
the run is stopped at k and run again without the fault: the final state (catalog rows,
faces, crop keys and bytes, quarantine, model pointer and the published model's files) must
be a clean run's. Enrolment runs the session's real MTCNN + FaceNet, each photo analysed once
(RememberedAnalyser); training runs on synthetic embeddings."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerec.core.records import PhotoRecord
from facerec.core.settings import TrainOptions
from facerec.engines.facenet import TrainedModel
from facerec.flows.enrol import Enrolment, PhotoInput
from facerec.flows.forget import RETRAINING, forget
from facerec.flows.train import (
    CurrentModel,
    evaluate,
    fit,
    gather,
    load_model,
    model_keys,
    publish,
    save_model,
    train,
)
from facerec.storage.local import local_stores
from facerec.storage.ports import Stores
from tests.factories import GROUP_PEOPLE, enrol_group, face_record, unit_vector

WRITES = frozenset(
    {"put", "delete", "purge", "put_photo", "put_model", "delete_model", "delete_faces"}
    | {"forget_person"}
)


class SimulatedCrash(BaseException):
    """The process dies here: nothing catches it, as nothing catches a kill."""


class Faults:
    """Counts the write calls made through the proxies; the ``crash_at``-th one (1-based; 0:
    none) raises SimulatedCrash instead of writing. ``log`` names each write made or tried."""

    def __init__(self, crash_at: int = 0):
        self.crash_at, self.log = crash_at, []

    def write(self, name: str) -> None:
        self.log.append(name)
        if len(self.log) == self.crash_at:
            raise SimulatedCrash(f"stopped before write {self.crash_at}: {name}")


class FaultyPort:
    """A store's port as it is, except that every write (WRITES) goes through ``faults``."""

    def __init__(self, target, name: str, faults: Faults):
        self._target, self._name, self._faults = target, name, faults

    def __getattr__(self, attribute: str):
        value = getattr(self._target, attribute)
        if attribute not in WRITES:
            return value

        def write(*args, **kwargs):
            self._faults.write(f"{self._name}.{attribute}")
            return value(*args, **kwargs)

        return write


def faulty(stores: Stores, faults: Faults) -> Stores:
    """``stores`` with its catalog and blob stores behind FaultyPort."""
    ports = ("catalog", "ingest", "faces", "quarantine", "models", "reports")
    return dataclasses.replace(
        stores, **{name: FaultyPort(getattr(stores, name), name, faults) for name in ports}
    )


def crash_then_finish(run: Callable[[Stores], object], stores: Stores, crash_at: int) -> str:
    """Run with the crash at write ``crash_at``, then again without faults; returns the write
    the first run was stopped at."""
    faults = Faults(crash_at)
    with pytest.raises(SimulatedCrash):
        run(faulty(stores, faults))
    run(stores)
    return faults.log[-1]


def blobs(stores: Stores, bucket: str) -> dict[str, str]:
    """Key -> sha256 of every object in one bucket."""
    store = getattr(stores, bucket)
    return {key: hashlib.sha256(store.get(key)).hexdigest() for key in store.keys("")}


# ---- enrolment -----------------------------------------------------------------------------


class RememberedAnalyser:
    """The session's real analyser, remembering each photo's faces by its pixels, so that the
    many runs below analyse each photo once (a photo's faces never depend on its batch)."""

    def __init__(self, analyser):
        self.analyser, self.settings, self.known = analyser, analyser.settings, {}

    def analyse(self, images):
        names = [hashlib.sha256(image.tobytes()).hexdigest() + str(image.shape) for image in images]
        missing = {
            name: image for name, image in zip(names, images, strict=True) if name not in self.known
        }
        found = self.analyser.analyse(list(missing.values())) if missing else []
        self.known.update(zip(missing, found, strict=True))
        return [self.known[name] for name in names]


@pytest.fixture(scope="module")
def remembered(analyser) -> RememberedAnalyser:
    return RememberedAnalyser(analyser)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def side_by_side(paths: list[Path], height: int = 250) -> bytes:
    """Photos side by side at one height, as a JPEG: one face each."""
    images = [Image.open(path).convert("RGB") for path in paths]
    images = [im.resize((round(im.width * height / im.height), height)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in images), height))
    for index, image in enumerate(images):
        canvas.paste(image, (sum(im.width for im in images[:index]), 0))
    return jpeg(canvas)


def no_face() -> bytes:
    """A smooth colour gradient, nothing like a face."""
    y, x = np.mgrid[0:200, 0:200]
    return jpeg(Image.fromarray(np.stack([x, y, x // 2 + y // 2], -1).astype(np.uint8)))


def photo(sample_set: Path, split: str, person: str, index: int) -> Path:
    return sorted((sample_set / split / person).iterdir())[index]


@pytest.fixture(scope="module")
def photos(sample_set) -> dict[str, list[PhotoInput]]:
    """``before``: a two-face photo of ben_afflek, enrolled before the run. ``run``: two
    one-face photos, a two-face photo (resolved last), a photo without a face (quarantined)
    and new bytes with one face for the photo enrolled before (its crop 1 must go)."""

    def read(split: str, person: str, index: int) -> bytes:
        return photo(sample_set, split, person, index).read_bytes()

    two = side_by_side(
        [photo(sample_set, "val", "ben_afflek", 0), photo(sample_set, "val", "elton_john", 1)]
    )
    group = side_by_side(
        [photo(sample_set, "val", "madonna", 0), photo(sample_set, "val", "ben_afflek", 1)]
    )
    return {
        "before": [PhotoInput("ben_afflek", "swap.jpg", two)],
        "run": [
            PhotoInput("madonna", "a.jpg", read("train", "madonna", 0)),
            PhotoInput("elton_john", "b.jpg", read("train", "elton_john", 0)),
            PhotoInput("madonna", "group.jpg", group),
            PhotoInput("ben_afflek", "blank.jpg", no_face()),
            PhotoInput("ben_afflek", "swap.jpg", read("train", "ben_afflek", 0)),
        ],
    }


PEOPLE = ("ben_afflek", "elton_john", "madonna")


def enrolment_state(stores: Stores) -> dict:
    """Everything enrolment writes: photo records, faces (embeddings by hash), crops and
    quarantined objects by hash, and the uploads (which it must never change)."""
    faces = [
        {
            **dataclasses.asdict(face),
            "confidence": round(face.confidence, 6),
            "embedding": hashlib.sha256(face.embedding.tobytes()).hexdigest(),
        }
        for face in stores.catalog.faces(labelled_only=False)
    ]
    return {
        "photos": [
            dataclasses.asdict(p) for person in PEOPLE for p in stores.catalog.photos(person)
        ],
        "faces": faces,
        "counts": stores.catalog.counts(),
        **{bucket: blobs(stores, bucket) for bucket in ("faces", "quarantine", "ingest")},
    }


def enrolled_workspace(root: Path, analyser, photos) -> Stores:
    """A workspace with every photo uploaded and the ``before`` photo enrolled."""
    stores = local_stores(root)
    for item in photos["before"]:
        stores.ingest.put(f"{item.person}/{item.name}", item.data)
    Enrolment(analyser, stores).enrol(photos["before"])
    for item in photos["run"]:
        stores.ingest.put(f"{item.person}/{item.name}", item.data)
    return stores


def test_enrolment_stopped_at_any_write_is_completed_by_the_next_run(tmp_path, remembered, photos):
    clean = enrolled_workspace(tmp_path / "clean", remembered, photos)
    before = {face.crop_key for face in clean.catalog.faces(labelled_only=False)}
    faults = Faults()
    outcomes = Enrolment(remembered, faulty(clean, faults)).enrol(photos["run"])
    expected = enrolment_state(clean)
    # The scenario holds every kind of write: crops, records, a quarantine, a surplus crop.
    status = {outcome.key: (outcome.status, outcome.faces) for outcome in outcomes}
    assert status == {
        "madonna/a.jpg": ("enrolled", 1),
        "elton_john/b.jpg": ("enrolled", 1),
        "madonna/group.jpg": ("enrolled", 2),
        "ben_afflek/blank.jpg": ("no_face", 0),
        "ben_afflek/swap.jpg": ("enrolled", 1),
    }
    assert before == {"ben_afflek/swap-0.png", "ben_afflek/swap-1.png"}
    assert "ben_afflek/swap-1.png" not in expected["faces"]
    assert {"faces.put", "catalog.put_photo", "quarantine.put", "faces.delete"} == set(faults.log)
    again = Enrolment(remembered, clean).enrol(photos["run"])
    assert {outcome.status for outcome in again} == {"unchanged"}
    assert enrolment_state(clean) == expected

    for crash_at in range(1, len(faults.log) + 1):
        stores = enrolled_workspace(tmp_path / f"crash-{crash_at}", remembered, photos)
        stopped = crash_then_finish(
            lambda stores: Enrolment(remembered, stores).enrol(photos["run"]), stores, crash_at
        )
        assert enrolment_state(stores) == expected, f"stopped before write {crash_at}: {stopped}"


def test_a_crop_no_record_holds_is_the_photos_own_but_a_recorded_ones_is_a_collision(
    tmp_path, remembered, photos, sample_set
):
    """A crop left by a run stopped before its photo's record is the photo's own, overwritten
    (the old code refused the photo as a name collision with itself, then called it
    unchanged for ever); a crop that another photo's record holds is that photo's, and the
    newcomer with the same stem is refused naming it."""
    stores = local_stores(tmp_path / "workspace")
    enrolment = Enrolment(remembered, stores)
    first, other = photos["run"][0], PhotoInput("madonna", "a.png", photos["run"][2].data)
    stores.faces.put("madonna/a-0.png", b"left by a stopped run")
    assert enrolment.enrol([first])[0].status == "enrolled"
    assert stores.faces.get("madonna/a-0.png") != b"left by a stopped run"
    refused = enrolment.enrol([other])[0]
    assert (refused.status, refused.code) == ("rejected", "name_collision")
    assert "madonna/a.jpg" in refused.reason
    assert [face.photo_key for face in stores.catalog.faces(labelled_only=False)] == [
        first.person + "/a.jpg"
    ]


def test_an_unchanged_photo_is_only_unchanged_once_its_surplus_crops_are_gone(
    tmp_path, remembered, photos
):
    """A record of the new bytes with the replaced version's crops still there (a run stopped
    after the record, before deleting them) is completed by the next run, never reported
    unchanged as it is; crops that another photo's record holds are left alone."""
    stores = enrolled_workspace(tmp_path / "workspace", remembered, photos)
    enrolment = Enrolment(remembered, stores)
    replaced = photos["run"][-1]
    stores.faces.put("ben_afflek/swap-2.png", b"a crop of an older version")
    assert enrolment.enrol([replaced])[0].status == "enrolled"
    assert sorted(stores.faces.keys("ben_afflek/swap")) == ["ben_afflek/swap-0.png"]
    stores.faces.put("ben_afflek/swap-1.png", b"left by a stopped run")
    assert enrolment.enrol([replaced])[0].status == "unchanged"
    assert sorted(stores.faces.keys("ben_afflek/swap")) == ["ben_afflek/swap-0.png"]
    # A photo with no face under the stem of an enrolled one keeps the other's crop.
    blank = PhotoInput("ben_afflek", "swap.png", no_face())
    for _ in range(2):
        assert enrolment.enrol([blank])[0].status in ("no_face", "unchanged")
        assert sorted(stores.faces.keys("ben_afflek/swap")) == ["ben_afflek/swap-0.png"]


# ---- training ------------------------------------------------------------------------------

ANALYSIS = {"embedding": {"model_id": "facenet-test"}, "crop": {"method": "aligned"}}
VOLATILE = {"created_at", "calibrated_at", "training_seconds", "seconds", "seconds_per_face"}


def enrol_synthetic(stores: Stores, person: str, seed: int, count: int = 12) -> None:
    """``count`` one-face photos of ``person``: unit vectors close to the person's own
    random direction (no crops: training reads embeddings only)."""
    rng = np.random.default_rng(seed)
    centre = unit_vector(rng.standard_normal(128))
    for number in range(count):
        key = f"{person}/{number:02d}.jpg"
        embedding = unit_vector(centre + 0.03 * rng.standard_normal(128))
        face = dataclasses.replace(face_record(key, 0, person), embedding=embedding)
        record = PhotoRecord(key, person, f"sha-{key}", "enrolled", "", 1, 160, 160)
        stores.catalog.put_photo(record, [face])


def trained_workspace(root: Path) -> tuple[Stores, str]:
    """Three people with a current model trained on them, then a fourth enrolled: the next
    training is compared with that model (its id is returned)."""
    stores = local_stores(root)
    for seed, person in enumerate(("Ada", "Bob", "Cy")):
        enrol_synthetic(stores, person, seed)
    first, _ = train(stores, "aligned", ANALYSIS)
    enrol_synthetic(stores, "Dee", 3)
    return stores, first.model_id


def normalised(value, names: dict[str, str]):
    """``value`` with the model ids renamed by ``names`` and timings and times dropped."""
    text = json.dumps(value, sort_keys=True)
    for model_id, name in names.items():
        text = text.replace(model_id, name)

    def drop(item):
        if isinstance(item, dict):
            return {key: drop(inner) for key, inner in item.items() if key not in VOLATILE}
        if isinstance(item, list):
            return [drop(inner) for inner in item]
        return item

    return drop(json.loads(text))


def training_state(stores: Stores, first: str) -> dict:
    """The catalog's models and pointer, and every file of the models it registers: the
    current artifact checked against its record and named by its metadata."""
    current = stores.catalog.current_model()
    names = {first: "first"} | ({current.model_id: "current"} if current.model_id != first else {})
    registered = [model.model_id for model in stores.catalog.models()]
    metadata = json.loads(stores.models.get(model_keys(current.model_id)["metadata"]))
    assert (metadata["artifact_key"], metadata["artifact_sha256"]) == (
        current.artifact_key,
        current.sha256,
    )
    assert current.artifact_key == model_keys(current.model_id, current.sha256)["artifact"]
    model = load_model(stores.models, current.artifact_key, current.sha256)
    reports = {
        key: json.loads(stores.reports.get(key))
        for model_id in registered
        for key in stores.reports.keys(f"{model_id}/")
        if key.endswith(".json")
    }
    state = normalised(
        {
            "current": {**dataclasses.asdict(current), "sha256": "", "artifact_key": ""},
            "registered": registered,
            "metadata": {**metadata, "artifact_key": "", "artifact_sha256": ""},
            "labels": model.metadata["labels"],
            "reports": reports,
            "report_keys": [
                key for model_id in registered for key in stores.reports.keys(f"{model_id}/")
            ],
        },
        names,
    )
    return {
        **state,
        "registered": sorted(state["registered"]),
        "report_keys": sorted(state["report_keys"]),
    }


def test_training_stopped_at_any_write_is_completed_by_the_next_run(tmp_path):
    clean, first = trained_workspace(tmp_path / "clean")
    faults = Faults()
    train(faulty(clean, faults), "aligned", ANALYSIS)
    expected = training_state(clean, first)
    assert expected["registered"] == ["current", "first"]
    assert expected["reports"]["current/evaluation.json"]["promoted"] is True
    assert faults.log[-1] == "catalog.put_model"  # the pointer is the commit point
    assert {"models.put", "reports.put"} == set(faults.log[:-1])

    for crash_at in range(1, len(faults.log) + 1):
        stores, first = trained_workspace(tmp_path / f"crash-{crash_at}")
        stopped = crash_then_finish(
            lambda stores: train(stores, "aligned", ANALYSIS), stores, crash_at
        )
        assert training_state(stores, first) == expected, (
            f"stopped before write {crash_at}: {stopped}"
        )
        # A stopped run's files are never what the catalog points at.
        current = stores.catalog.current_model()
        left = {key.split("/")[0] for key in stores.models.keys("")} - {first, current.model_id}
        assert left.isdisjoint(record.model_id for record in stores.catalog.models())


def test_a_model_saved_again_never_overwrites_the_artifact_an_older_record_hashed(tmp_path):
    """The training steps save a model after fitting, then publish saves it again with its
    evaluation under the same model id: the fit step's record (key and sha256, kept for a
    retry) must still load, and a process holding the published model reloads it when the
    same id is published again with other bytes."""
    stores = local_stores(tmp_path / "workspace")
    for seed, person in enumerate(("Ada", "Bob", "Cy")):
        enrol_synthetic(stores, person, seed)
    training_set = gather(stores.catalog, "aligned")
    model, _ = fit(training_set, TrainOptions(), ANALYSIS)
    fitted = save_model(stores.models, model)
    current = CurrentModel(stores.catalog, stores.models)
    published, result = publish(
        stores, model, training_set, evaluate(model, training_set, stores.faces.get)
    )
    assert result["model_sha256"] != fitted["sha256"]
    assert (
        load_model(stores.models, fitted["artifact"], fitted["sha256"]).model_id == model.model_id
    )
    assert re.fullmatch(rf"{model.model_id}/model-[0-9a-f]{{16}}\.npz", fitted["artifact"])
    assert current().metadata["evaluation"] == published.metadata["evaluation"]
    again = TrainedModel(
        published.classifier, {**published.metadata, "note": "again"}, published.open_set
    )
    publish(stores, again, training_set, evaluate(again, training_set, stores.faces.get))
    assert current().metadata["note"] == "again"
    record = stores.catalog.current_model()
    assert record.artifact_key != model_keys(model.model_id, result["model_sha256"])["artifact"]
    assert load_model(stores.models, record.artifact_key, record.sha256).metadata["note"] == "again"


# ---- forget --------------------------------------------------------------------------------


def forgotten_workspace(root: Path) -> Stores:
    """Five people (synthetic embeddings) with group photos, a quarantined photo of Ada and
    a current model that knows her."""
    stores = local_stores(root)
    enrol_group(stores, np.random.default_rng(21))
    stores.quarantine.put("Ada/bad.bin", b"not a photo")
    stores.quarantine.put("Ada/bad.json", b'{"key": "Ada/bad.jpg"}')
    train(stores, "aligned", ANALYSIS, TrainOptions(test_size=0))
    return stores


def forget_ada(stores: Stores) -> dict:
    """flows.forget.forget of Ada, retraining in process on the same (maybe faulty) stores."""

    def retrain(options: TrainOptions) -> dict:
        return {"retrained": train(stores, "aligned", ANALYSIS, options)[0].model_id}

    return forget(stores, "Ada", retrain)


def forget_state(stores: Stores) -> dict:
    """What forgetting Ada leaves: records, crops, uploads and quarantine, whether a
    retraining is still owed, and the current model's people (model ids are times)."""
    current = stores.catalog.current_model()

    def people(model_id: str) -> list[str]:
        return json.loads(stores.models.get(model_keys(model_id)["metadata"]))["labels"]

    return {
        "photos": [
            dataclasses.asdict(p) for person in GROUP_PEOPLE for p in stores.catalog.photos(person)
        ],
        "faces": [face.face_id for face in stores.catalog.faces(labelled_only=False)],
        **{bucket: blobs(stores, bucket) for bucket in ("faces", "quarantine", "ingest")},
        "retraining_owed": stores.models.exists(RETRAINING),
        "current_people": current and people(current.model_id),
        "any_model_knows_ada": any("Ada" in people(m.model_id) for m in stores.catalog.models()),
        "stored_models_know_ada": any(
            "Ada" in json.loads(stores.models.get(key)).get("labels", [])
            for key in stores.models.keys("")
            if key.endswith("/metadata.json")
        ),
    }


def test_forget_stopped_at_any_write_is_completed_by_the_next_run(tmp_path):
    clean = forgotten_workspace(tmp_path / "clean")
    faults = Faults()
    deleted = forget_ada(faulty(clean, faults))
    expected = forget_state(clean)
    assert deleted["group_photo_faces"] == 2 and "retrained" in deleted
    assert expected["current_people"] == ["Bob", "Cy", "Dee", "Eli"]
    assert not expected["retraining_owed"] and not expected["any_model_knows_ada"]
    assert not expected["stored_models_know_ada"]
    assert "faces.delete" in faults.log and "catalog.forget_person" in faults.log

    for crash_at in range(1, len(faults.log) + 1):
        stores = forgotten_workspace(tmp_path / f"crash-{crash_at}")
        stopped = crash_then_finish(forget_ada, stores, crash_at)
        assert forget_state(stores) == expected, f"stopped before write {crash_at}: {stopped}"
