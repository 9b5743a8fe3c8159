"""The embedded default storage: buckets as folders, the catalog in a real SQLite file."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np
import pytest

from facerec.core.errors import InvalidLabel
from facerec.core.records import FaceRecord, ModelRecord, PhotoRecord
from facerec.storage.local import BUCKETS, FolderBlobStore, SqliteCatalog, local_stores
from tests.factories import face_record as face


def files_under(root) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def face_ids(faces: list[FaceRecord]) -> list[str]:
    return [record.face_id for record in faces]


def photo(key: str, person: str = "Ben", sha256: str | None = None, **fields) -> PhotoRecord:
    fields.setdefault("status", "enrolled")
    return PhotoRecord(key, person, sha256 or f"sha-{key}", **fields)


def model(model_id: str) -> ModelRecord:
    return ModelRecord(
        model_id,
        f"{model_id}/model.joblib",
        "2024-01-01T00:00:00+00:00",
        {"labels": ["Ben", "Iñaki Diaz"], "C": 10.0, "nested": {"cv": [0.9, 1.0]}},
    )


# ---- FolderBlobStore --------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> FolderBlobStore:
    return FolderBlobStore(tmp_path / "bucket")


def test_put_get_exists_delete(store, tmp_path):
    assert not store.exists("Ben/a.jpg")
    store.put("Ben/a.jpg", b"\xff\xd8 first")
    assert store.exists("Ben/a.jpg")
    assert store.get("Ben/a.jpg") == b"\xff\xd8 first"
    assert (tmp_path / "bucket" / "Ben" / "a.jpg").read_bytes() == b"\xff\xd8 first"
    store.put("Ben/a.jpg", b"second")
    assert store.get("Ben/a.jpg") == b"second"
    store.delete("Ben/a.jpg")
    assert not store.exists("Ben/a.jpg")
    store.delete("Ben/a.jpg")  # deleting a missing key is not an error (like S3)
    assert files_under(tmp_path) == set()


def test_put_leaves_no_partial_file(store, tmp_path):
    store.put("Ben/a.jpg", b"x" * 10_000)
    assert files_under(tmp_path) == {"bucket/Ben/a.jpg"}


def test_empty_bytes_are_stored_as_an_empty_object(store):
    store.put("empty.bin", b"")
    assert store.exists("empty.bin")
    assert store.get("empty.bin") == b""


def test_keys_lists_files_sorted_by_string_prefix(store):
    assert list(store.keys()) == []  # the bucket folder does not exist yet
    for key in ["ben_afflek/2.jpg", "ben/1.jpg", "ben_afflek/1.jpg", "Iñaki Diaz/1.jpg", "x.bin"]:
        store.put(key, key.encode())
    assert list(store.keys()) == sorted(
        ["Iñaki Diaz/1.jpg", "ben/1.jpg", "ben_afflek/1.jpg", "ben_afflek/2.jpg", "x.bin"]
    )
    assert list(store.keys("ben_afflek/")) == ["ben_afflek/1.jpg", "ben_afflek/2.jpg"]
    assert list(store.keys("ben")) == ["ben/1.jpg", "ben_afflek/1.jpg", "ben_afflek/2.jpg"]
    assert list(store.keys("Iñaki")) == ["Iñaki Diaz/1.jpg"]
    assert list(store.keys("nobody/")) == []


@pytest.mark.parametrize(
    "key",
    ["../x", "../../x", "/etc/passwd", "a/../../b", "Ben/../../outside.jpg", "", ".", "a/.."],
)
def test_keys_outside_the_bucket_are_refused_and_nothing_is_written(tmp_path, key):
    store = FolderBlobStore(tmp_path / "root" / "bucket")
    store.put("inside.bin", b"ok")
    before = files_under(tmp_path)
    for operation in (
        lambda: store.put(key, b"evil"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(InvalidLabel, match="outside its bucket") as caught:
            operation()
        assert caught.value.code == "invalid_label"
    assert files_under(tmp_path) == before


def test_a_symlink_out_of_the_bucket_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = FolderBlobStore(tmp_path / "bucket")
    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidLabel):
        store.put("link/x.bin", b"evil")
    assert list(outside.iterdir()) == []


def test_a_dotted_key_that_stays_inside_is_allowed(store):
    store.put("a/../b.bin", b"ok")
    assert store.get("b.bin") == b"ok"
    assert list(store.keys()) == ["b.bin"]


# ---- SqliteCatalog ----------------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite")
    yield catalog
    catalog.close()


def test_an_empty_catalog(catalog):
    assert catalog.get_photo("Ben/a.jpg") is None
    assert catalog.photo_with_sha256("nothing") is None
    assert catalog.faces() == []
    assert catalog.current_model() is None
    assert catalog.counts() == {
        "people": 0,
        "photos": 0,
        "photos_enrolled": 0,
        "photos_no_face": 0,
        "photos_rejected": 0,
        "faces": 0,
        "faces_labelled": 0,
        "models": 0,
    }


def test_a_photo_round_trips(catalog):
    record = photo("Iñaki Diaz/1.jpg", "Iñaki Diaz", "abc", status="enrolled", face_count=1)
    catalog.put_photo(record, [face("Iñaki Diaz/1.jpg", 0, "Iñaki Diaz")])
    assert catalog.get_photo("Iñaki Diaz/1.jpg") == record


def test_faces_round_trip_with_float32_embeddings_bit_for_bit(catalog):
    stored = face("Ben/a.jpg", 0, "Ben", seed=11)
    catalog.put_photo(photo("Ben/a.jpg", face_count=1), [stored])
    [loaded] = catalog.faces()
    assert loaded.embedding.dtype == np.float32
    assert loaded.embedding.tobytes() == stored.embedding.tobytes()
    assert loaded.box == stored.box
    assert isinstance(loaded.box, tuple)
    assert loaded == FaceRecord(**{**stored.__dict__, "embedding": loaded.embedding})
    loaded.embedding[0] = 5.0  # the returned array is a writable copy, not the row's buffer
    assert catalog.faces()[0].embedding.tobytes() == stored.embedding.tobytes()


def test_float64_embeddings_are_stored_as_float32(catalog):
    embedding = np.linspace(-1, 1, 128)
    record = FaceRecord(
        "Ben/a.jpg#0", "Ben/a.jpg", 0, "Ben", (0, 0, 1, 1), 1.0, "k", "m", embedding
    )
    catalog.put_photo(photo("Ben/a.jpg"), [record])
    [loaded] = catalog.faces()
    assert loaded.embedding.dtype == np.float32
    assert np.array_equal(loaded.embedding, embedding.astype(np.float32))


def test_re_putting_a_photo_replaces_its_faces(catalog):
    catalog.put_photo(
        photo("Ben/a.jpg", face_count=3),
        [face("Ben/a.jpg", i, "Ben" if i == 0 else None) for i in range(3)],
    )
    catalog.put_photo(photo("Ben/b.jpg", face_count=1), [face("Ben/b.jpg", 0, "Ben")])
    catalog.put_photo(
        photo("Ben/a.jpg", face_count=2), [face("Ben/a.jpg", i, "Ben", 5) for i in range(2)]
    )
    catalog.put_photo(
        photo("Ben/a.jpg", face_count=2), [face("Ben/a.jpg", i, "Ben", 5) for i in range(2)]
    )
    assert face_ids(catalog.faces(labelled_only=False)) == [
        "Ben/a.jpg#0",
        "Ben/a.jpg#1",
        "Ben/b.jpg#0",
    ]
    assert catalog.counts()["photos"] == 2
    assert catalog.counts()["faces"] == 3
    catalog.put_photo(photo("Ben/a.jpg", status="no_face", reason="no face found"), [])
    assert face_ids(catalog.faces(labelled_only=False)) == ["Ben/b.jpg#0"]
    assert catalog.get_photo("Ben/a.jpg").status == "no_face"


def test_a_failed_put_photo_changes_nothing(catalog):
    """The photo row and all of its faces are written in one transaction: a face that cannot
    be inserted (a second face with the same id) leaves the previous version intact."""
    original = photo("Ben/a.jpg", face_count=1)
    catalog.put_photo(original, [face("Ben/a.jpg", 0, "Ben", seed=1)])
    before = catalog.faces()
    clash = face("Ben/a.jpg", 0, "Ben", seed=2)
    with pytest.raises(sqlite3.IntegrityError):
        catalog.put_photo(photo("Ben/a.jpg", status="rejected", face_count=2), [clash, clash])
    assert catalog.get_photo("Ben/a.jpg") == original
    after = catalog.faces()
    assert face_ids(after) == face_ids(before)
    assert after[0].embedding.tobytes() == before[0].embedding.tobytes()
    assert catalog.counts()["faces"] == 1


def test_faces_filter_by_person_and_label(catalog):
    catalog.put_photo(
        photo("Ben/group.jpg", face_count=3),
        [
            face("Ben/group.jpg", 0, None),
            face("Ben/group.jpg", 1, "Ben"),
            face("Ben/group.jpg", 2, None),
        ],
    )
    catalog.put_photo(
        photo("Iñaki Diaz/1.jpg", "Iñaki Diaz"), [face("Iñaki Diaz/1.jpg", 0, "Iñaki Diaz")]
    )
    assert face_ids(catalog.faces()) == ["Ben/group.jpg#1", "Iñaki Diaz/1.jpg#0"]
    assert face_ids(catalog.faces(labelled_only=False)) == [
        "Ben/group.jpg#0",
        "Ben/group.jpg#1",
        "Ben/group.jpg#2",
        "Iñaki Diaz/1.jpg#0",
    ]
    assert face_ids(catalog.faces("Ben")) == ["Ben/group.jpg#1"]
    assert face_ids(catalog.faces("Ben", labelled_only=False)) == ["Ben/group.jpg#1"]
    assert face_ids(catalog.faces("Iñaki Diaz")) == ["Iñaki Diaz/1.jpg#0"]
    assert catalog.faces("Nobody") == []
    assert [f.person for f in catalog.faces(labelled_only=False)] == [
        None,
        "Ben",
        None,
        "Iñaki Diaz",
    ]


def test_photo_with_sha256_finds_the_first_key_with_those_bytes(catalog):
    catalog.put_photo(photo("Ben/b.jpg", sha256="same"), [])
    catalog.put_photo(photo("Ann/a.jpg", "Ann", sha256="same"), [])
    catalog.put_photo(photo("Ben/c.jpg", sha256="other"), [])
    assert catalog.photo_with_sha256("same").key == "Ann/a.jpg"
    assert catalog.photo_with_sha256("other").key == "Ben/c.jpg"
    assert catalog.photo_with_sha256("missing") is None


def test_only_the_newest_model_is_current(catalog):
    catalog.put_model(model("m1"))
    assert catalog.current_model() == model("m1")
    catalog.put_model(model("m2"))
    assert catalog.current_model() == model("m2")
    assert catalog.current_model().metadata == {
        "labels": ["Ben", "Iñaki Diaz"],
        "C": 10.0,
        "nested": {"cv": [0.9, 1.0]},
    }
    catalog.put_model(model("m1"))  # republishing an older model makes it current again
    assert catalog.current_model().model_id == "m1"
    assert catalog.counts()["models"] == 2


def test_the_current_model_moves_only_from_the_model_it_was_read_as(tmp_path):
    path = tmp_path / "catalog.sqlite"
    first, second = SqliteCatalog(path), SqliteCatalog(path)  # two trainings, one file
    try:
        assert first.put_model(model("m1"), None)
        assert not second.put_model(model("m2"), None)  # m1 is current now
        assert second.put_model(model("m2"), "m1")
        # the other one had read m1 as current too: nothing of it is written
        assert not first.put_model(model("m3"), "m1")
        assert first.current_model() == second.current_model() == model("m2")
        assert [record.model_id for record in first.models()] == ["m1", "m2"]
    finally:
        first.close()
        second.close()


def test_counts(catalog):
    catalog.put_photo(
        photo("Ben/group.jpg", face_count=2),
        [face("Ben/group.jpg", 0, "Ben"), face("Ben/group.jpg", 1, None)],
    )
    catalog.put_photo(photo("Ben/b.jpg", face_count=1), [face("Ben/b.jpg", 0, "Ben")])
    catalog.put_photo(photo("Ann/a.jpg", "Ann", face_count=1), [face("Ann/a.jpg", 0, "Ann")])
    catalog.put_photo(photo("Ann/none.jpg", "Ann", status="no_face"), [])
    catalog.put_photo(photo("Ann/bad.jpg", "Ann", status="rejected"), [])
    catalog.put_photo(photo("Cy/bad.jpg", "Cy", status="rejected"), [])
    catalog.put_model(model("m1"))
    assert catalog.counts() == {
        "people": 2,
        "photos": 6,
        "photos_enrolled": 3,
        "photos_no_face": 1,
        "photos_rejected": 2,
        "faces": 4,
        "faces_labelled": 3,
        "models": 1,
    }


def test_reopening_the_file_keeps_everything(tmp_path):
    path = tmp_path / "deep" / "catalog.sqlite"
    first = SqliteCatalog(path)
    stored = face("Iñaki Diaz/1.jpg", 0, "Iñaki Diaz", seed=3)
    record = photo("Iñaki Diaz/1.jpg", "Iñaki Diaz", "abc", face_count=1, width=250, height=300)
    first.put_photo(record, [stored])
    first.put_model(model("m1"))
    first.put_model(model("m2"))
    counts = first.counts()
    first.close()

    second = SqliteCatalog(path)
    try:
        assert second.get_photo("Iñaki Diaz/1.jpg") == record
        [loaded] = second.faces("Iñaki Diaz")
        assert loaded.embedding.tobytes() == stored.embedding.tobytes()
        assert second.current_model().model_id == "m2"
        assert second.counts() == counts
    finally:
        second.close()


def test_a_second_connection_sees_committed_writes(tmp_path):
    writer, reader = SqliteCatalog(tmp_path / "c.sqlite"), SqliteCatalog(tmp_path / "c.sqlite")
    try:
        writer.put_photo(photo("Ben/a.jpg", face_count=1), [face("Ben/a.jpg", 0, "Ben")])
        assert reader.get_photo("Ben/a.jpg").face_count == 1
        assert face_ids(reader.faces()) == ["Ben/a.jpg#0"]
    finally:
        writer.close()
        reader.close()


# ---- local_stores ------------------------------------------------------------------------------


def test_workspace_buckets_are_separate_folders_beside_the_catalog(tmp_path):
    workspace = local_stores(tmp_path / "ws")
    for bucket in BUCKETS:
        getattr(workspace, bucket).put("Ben/a.bin", bucket.encode())
    assert {bucket: workspace.ingest.root.parent / bucket for bucket in BUCKETS} == {
        bucket: getattr(workspace, bucket).root for bucket in BUCKETS
    }
    assert workspace.faces.get("Ben/a.bin") == b"faces"
    assert workspace.quarantine.get("Ben/a.bin") == b"quarantine"
    assert (tmp_path / "ws" / "catalog.sqlite").is_file()
    assert {path for path in files_under(tmp_path / "ws") if not path.startswith("catalog")} == {
        f"{bucket}/Ben/a.bin" for bucket in BUCKETS
    }
    with pytest.raises(InvalidLabel):
        workspace.ingest.put("../faces/Ben/a.bin", b"cross-bucket")
    assert workspace.faces.get("Ben/a.bin") == b"faces"
    workspace.catalog.close()


# ---- purge, models, forget_person -------------------------------------------------------------


def test_purge_deletes_exactly_the_prefix_and_the_folders_it_empties(store, tmp_path):
    doomed = ["Ada_Lovelace/a.jpg", "Ada_Lovelace/sub/deeper/b.jpg", "Ada_Lovelace/sub/c.png"]
    kept = ["Ada_Lovelace2/a.jpg", "Ada_Lovelace.jpg", "Ada/a.jpg", "Alan_Turing/sub/a.jpg"]
    for key in doomed + kept:
        store.put(key, key.encode())
    assert store.purge("Ada_Lovelace/") == 3
    assert list(store.keys()) == sorted(kept)
    assert all(store.get(key) == key.encode() for key in kept)
    assert not (tmp_path / "bucket" / "Ada_Lovelace").exists()  # the emptied folders went
    assert (tmp_path / "bucket" / "Alan_Turing" / "sub").is_dir()
    assert store.root.is_dir()  # the bucket itself stays
    assert store.purge("Ada_Lovelace/") == 0


def test_purge_keeps_a_folder_that_still_holds_other_keys(store, tmp_path):
    store.put("Ada_Lovelace/x/a.bin", b"1")
    store.put("Ada_Lovelace/y.bin", b"2")
    assert store.purge("Ada_Lovelace/x/") == 1
    assert list(store.keys()) == ["Ada_Lovelace/y.bin"]
    assert not (tmp_path / "bucket" / "Ada_Lovelace" / "x").exists()
    assert (tmp_path / "bucket" / "Ada_Lovelace").is_dir()


def test_purge_of_a_missing_bucket_or_prefix_is_zero(tmp_path):
    store = FolderBlobStore(tmp_path / "never-created")
    assert store.purge("Ada_Lovelace/") == 0
    store.put("Alan_Turing/a.bin", b"1")
    assert store.purge("Ada_Lovelace/") == 0
    assert list(store.keys()) == ["Alan_Turing/a.bin"]


def test_purge_by_a_file_prefix_deletes_the_pair_stored_under_one_hash(store):
    for key in ("abc123.bin", "abc123.json", "abc1234.bin", "def.json"):
        store.put(key, b"x")
    assert store.purge("abc1234") == 1
    assert store.purge("abc123") == 2
    assert list(store.keys()) == ["def.json"]


def test_models_lists_every_model_and_delete_clears_current_only_for_itself(catalog):
    assert catalog.models() == []
    catalog.put_model(model("m2"))
    catalog.put_model(model("m1"))
    catalog.put_model(model("m3"))
    assert [record.model_id for record in catalog.models()] == ["m1", "m2", "m3"]
    assert catalog.models()[0] == model("m1")

    catalog.delete_model("m1")  # not the current one: m3 stays current
    assert [record.model_id for record in catalog.models()] == ["m2", "m3"]
    assert catalog.current_model() == model("m3")
    catalog.delete_model("m3")  # the current one: no current model afterwards
    assert catalog.current_model() is None
    assert [record.model_id for record in catalog.models()] == ["m2"]
    catalog.delete_model("m3")  # deleting a missing model is not an error
    catalog.delete_model("nothing")
    assert [record.model_id for record in catalog.models()] == ["m2"]
    assert catalog.counts()["models"] == 1
    catalog.put_model(model("m4"))
    assert catalog.current_model().model_id == "m4"


def fill_two_people(catalog) -> None:
    """Zebulon_Quartz: photos of every status, a group photo with unlabelled faces; Ann: one
    enrolled photo with an unlabelled face, one rejected."""
    catalog.put_photo(
        photo("Zebulon_Quartz/group.jpg", "Zebulon_Quartz", face_count=3),
        [
            face("Zebulon_Quartz/group.jpg", 0, None),
            face("Zebulon_Quartz/group.jpg", 1, "Zebulon_Quartz"),
            face("Zebulon_Quartz/group.jpg", 2, None),
        ],
    )
    catalog.put_photo(
        photo("Zebulon_Quartz/b.jpg", "Zebulon_Quartz", face_count=1),
        [face("Zebulon_Quartz/b.jpg", 0, "Zebulon_Quartz")],
    )
    catalog.put_photo(
        photo("Zebulon_Quartz/none.jpg", "Zebulon_Quartz", status="no_face", reason="no face"),
        [],
    )
    catalog.put_photo(
        photo("Zebulon_Quartz/bad.jpg", "Zebulon_Quartz", status="rejected", reason="bad"), []
    )
    catalog.put_photo(
        photo("Ann/a.jpg", "Ann", face_count=2),
        [face("Ann/a.jpg", 0, "Ann"), face("Ann/a.jpg", 1, None)],
    )
    catalog.put_photo(photo("Ann/bad.jpg", "Ann", status="rejected"), [])


def test_forget_person_deletes_every_photo_and_face_of_theirs_and_nothing_else(catalog):
    fill_two_people(catalog)
    catalog.put_model(model("m1"))
    ann_before = catalog.faces("Ann")

    assert catalog.forget_person("Zebulon_Quartz") == {"photo_records": 4, "face_records": 4}

    for name in ("group", "b", "none", "bad"):
        assert catalog.get_photo(f"Zebulon_Quartz/{name}.jpg") is None
    assert catalog.faces("Zebulon_Quartz") == []
    assert face_ids(catalog.faces(labelled_only=False)) == ["Ann/a.jpg#0", "Ann/a.jpg#1"]
    assert catalog.get_photo("Ann/bad.jpg").status == "rejected"
    assert [f.embedding.tobytes() for f in catalog.faces("Ann")] == [
        f.embedding.tobytes() for f in ann_before
    ]
    assert catalog.current_model() == model("m1")  # models are forget.py's business
    assert catalog.counts() == {
        "people": 1,
        "photos": 2,
        "photos_enrolled": 1,
        "photos_no_face": 0,
        "photos_rejected": 1,
        "faces": 2,
        "faces_labelled": 1,
        "models": 1,
    }

    assert catalog.forget_person("Zebulon_Quartz") == {"photo_records": 0, "face_records": 0}
    assert catalog.forget_person("Nobody") == {"photo_records": 0, "face_records": 0}
    assert catalog.counts()["photos"] == 2


def test_forget_person_does_not_touch_a_person_whose_name_starts_with_theirs(catalog):
    catalog.put_photo(photo("Ann/a.jpg", "Ann", face_count=1), [face("Ann/a.jpg", 0, "Ann")])
    catalog.put_photo(
        photo("Ann_Lee/a.jpg", "Ann_Lee", face_count=1), [face("Ann_Lee/a.jpg", 0, "Ann_Lee")]
    )
    assert catalog.forget_person("Ann") == {"photo_records": 1, "face_records": 1}
    assert face_ids(catalog.faces(labelled_only=False)) == ["Ann_Lee/a.jpg#0"]


def test_forget_person_leaves_no_copy_in_the_database_file_or_its_log(tmp_path):
    """Hundreds of rows carry the name (keys, crop keys, labels, reasons, indexes), so pages of
    the file and the log really held it before; afterwards neither holds a byte of it."""
    name = "Zebulon_Quartz"
    path = tmp_path / "catalog.sqlite"
    wal = tmp_path / "catalog.sqlite-wal"
    catalog = SqliteCatalog(path)

    def raw() -> bytes:
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    try:
        for n in range(300):
            key = f"{name}/photo{n:04d}.jpg"
            catalog.put_photo(
                photo(key, name, status="enrolled", reason=f"{name} enrolled", face_count=2),
                [face(key, 0, name, seed=n), face(key, 1, None, seed=n + 1000)],
            )
            other = f"Ann/photo{n:04d}.jpg"
            catalog.put_photo(photo(other, "Ann", face_count=1), [face(other, 0, "Ann", seed=n)])
        for n in range(50):
            key = f"{name}/bad{n}.jpg"
            catalog.put_photo(photo(key, name, status="rejected", reason=f"{name}: blurry"), [])
        assert wal.exists() and name.encode() in wal.read_bytes()  # the log held it
        with closing(sqlite3.connect(path)) as other:  # move the log into the file's pages
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert name.encode() in path.read_bytes()  # and so did the file's pages

        # more writes after the checkpoint, so the log holds the name again
        for n in range(20):
            key = f"{name}/late{n}.jpg"
            catalog.put_photo(photo(key, name, face_count=1), [face(key, 0, name, seed=n)])
        assert name.encode() in wal.read_bytes()

        assert catalog.forget_person(name) == {"photo_records": 370, "face_records": 620}
        assert name.encode() not in raw()
        assert name.encode("utf-16-le") not in raw()
        assert catalog.counts()["photos"] == 300 and catalog.counts()["faces"] == 300
    finally:
        catalog.close()
    assert name.encode() not in raw()
    reopened = SqliteCatalog(path)
    try:
        assert len(reopened.faces("Ann")) == 300 and reopened.faces(name) == []
    finally:
        reopened.close()


def test_version_changes_with_every_write_of_this_or_another_connection(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite")
    start = catalog.version()
    assert catalog.version() == start  # reading changes nothing
    catalog.put_photo(photo("Ben/a.jpg"), [face("Ben/a.jpg", 0, "Ben")])
    own = catalog.version()
    assert own != start
    other = SqliteCatalog(tmp_path / "catalog.sqlite")
    other.put_photo(photo("Ann/a.jpg", "Ann"), [face("Ann/a.jpg", 0, "Ann", seed=1)])
    assert catalog.version() != own
    changed = catalog.version()
    catalog.forget_person("Ann")
    assert catalog.version() != changed


def test_the_catalog_gallery_is_rebuilt_when_the_catalog_changes(tmp_path):
    from types import SimpleNamespace

    from facerec.engines.nearest import CatalogIdentifier, NearestEngine
    from facerec.storage.ports import labelled_faces

    catalog = SqliteCatalog(tmp_path / "catalog.sqlite")
    for n, person in enumerate(("Ann", "Ben", "Cy")):
        key = f"{person}/a.jpg"
        catalog.put_photo(photo(key, person), [face(key, 0, person, seed=n)])
    identifier = CatalogIdentifier(catalog, lambda: labelled_faces(catalog, "aligned"))
    engine = NearestEngine(identifier)
    cy = [SimpleNamespace(embedding=catalog.faces("Cy")[0].embedding)]
    assert [answer.person for answer in engine.identify(cy).answers] == ["Cy"]
    assert identifier() is identifier()  # unchanged catalog: built once

    catalog.forget_person("Cy")
    assert "Cy" not in identifier().classes_
    assert [answer.person for answer in engine.identify(cy).answers] != ["Cy"]


def test_purge_deletes_hidden_leftovers_of_a_stopped_write_too(store):
    """A write stopped between its ``.partial`` file and the rename (a kill, a full disk)
    leaves the bytes in a hidden file: forgetting the folder deletes it with the keys."""
    store.put("Ada/a.png", b"crop")
    (store.root / "Ada" / ".b.png.partial").write_bytes(b"half of a crop")
    store.put("Ada_Lovelace/a.png", b"someone else")
    (store.root / "Ada_Lovelace" / ".c.png.partial").write_bytes(b"someone else's")

    assert list(store.keys("Ada/")) == ["Ada/a.png"]  # hidden files are never keys
    assert store.purge("Ada/") == 1

    assert not (store.root / "Ada").exists()
    assert (store.root / "Ada_Lovelace" / ".c.png.partial").exists()
    assert list(store.keys()) == ["Ada_Lovelace/a.png"]
