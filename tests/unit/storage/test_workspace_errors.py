"""A full disk and a read-only workspace under the embedded default (issue 11, item 9): one
clear WorkspaceError naming the path, no ``.partial`` file left, the old bytes kept, and a
read-only catalog still readable."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from facerec.core.errors import FaceRecError, WorkspaceError, WorkspaceFull
from facerec.core.records import PhotoRecord
from facerec.storage.local import FolderBlobStore, SqliteCatalog, refusal
from tests.factories import face_record
from tests.readonly import fill_disk, shared_folder, unwritable


def files_under(root) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_a_full_disk_refuses_the_put_names_the_path_and_keeps_the_old_bytes(tmp_path, monkeypatch):
    store = FolderBlobStore(tmp_path / "bucket")
    store.put("Ben/a.png", b"old bytes")
    fill_disk(monkeypatch, tmp_path)

    with pytest.raises(WorkspaceFull) as caught:
        store.put("Ben/a.png", b"new bytes")

    assert isinstance(caught.value, WorkspaceError)
    assert isinstance(caught.value, FaceRecError)
    assert caught.value.code == "disk_full"
    assert str(caught.value) == (
        f"the disk is full: {tmp_path / 'bucket' / 'Ben' / 'a.png'} could not be written "
        "(No space left on device); free some space and run the command again"
    )
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert files_under(tmp_path) == {"bucket/Ben/a.png"}
    assert store.get("Ben/a.png") == b"old bytes"


def test_a_disk_that_fills_halfway_through_a_file_leaves_no_partial_file(tmp_path, monkeypatch):
    store = FolderBlobStore(tmp_path / "bucket")
    written = fill_disk(monkeypatch, tmp_path, after_bytes=1000)

    with pytest.raises(WorkspaceFull):
        store.put("models/m1/model.npz", b"x" * 5000)

    assert written == [1000]  # the first 1000 bytes were really written, then the disk filled
    assert files_under(tmp_path) == set()
    assert not store.exists("models/m1/model.npz")


def test_writes_to_a_read_only_bucket_are_refused_naming_the_path():
    with shared_folder() as root:
        store = FolderBlobStore(root / "bucket")
        store.put("Ben/a.png", b"kept")
        with unwritable(root):
            for write in (
                lambda: store.put("Ben/b.png", b"new"),
                lambda: store.put("Ann/a.png", b"new"),  # its folder cannot be made either
                lambda: store.delete("Ben/a.png"),
                lambda: store.purge("Ben/"),
            ):
                with pytest.raises(WorkspaceError) as caught:
                    write()
                assert caught.value.code == "workspace_unwritable"
                assert "cannot be written (Permission denied): the workspace is read-only" in (
                    str(caught.value)
                )
                assert str(root / "bucket") in str(caught.value)
            assert store.get("Ben/a.png") == b"kept"  # reads still work
        assert files_under(root) == {"bucket/Ben/a.png"}


def test_a_full_database_refuses_the_write_and_keeps_what_it_held(tmp_path):
    """SQLite's own limit on the file's pages: the disk-full error SQLite raises for real."""
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite")
    catalog.put_photo(PhotoRecord("Ben/a.jpg", "Ben", "sha-a", "enrolled"), [])
    pages = catalog._db.execute("PRAGMA page_count").fetchone()[0]
    catalog._db.execute(f"PRAGMA max_page_count = {pages}")
    faces = [face_record("Ben/b.jpg", index, "Ben", seed=index) for index in range(200)]

    with pytest.raises(WorkspaceFull) as caught:
        catalog.put_photo(PhotoRecord("Ben/b.jpg", "Ben", "sha-b", "enrolled"), faces)

    assert caught.value.code == "disk_full"
    assert str(caught.value).startswith(
        f"the disk is full: {tmp_path / 'catalog.sqlite'} could not be written "
        "(database or disk is full)"
    )
    assert catalog.get_photo("Ben/b.jpg") is None  # the transaction was rolled back whole
    assert catalog.counts()["photos"] == 1


def test_a_read_only_workspace_opens_its_catalog_read_only_and_refuses_writes():
    with shared_folder() as root:
        path = root / "catalog.sqlite"
        writer = SqliteCatalog(path)
        writer.put_photo(PhotoRecord("Ben/a.jpg", "Ben", "sha-a", "enrolled"), [])
        writer.close()
        with unwritable(root):
            with pytest.raises(WorkspaceError) as caught:
                SqliteCatalog(path)  # the usual open sets up its write-ahead log: refused
            assert caught.value.code == "workspace_unwritable"
            assert str(caught.value).startswith(f"{path} cannot be written (")

            reader = SqliteCatalog(path, read_only=True)
            assert reader.counts()["photos"] == 1
            assert reader.get_photo("Ben/a.jpg").sha256 == "sha-a"
            assert reader.current_model() is None
            with pytest.raises(WorkspaceError):
                reader.put_photo(PhotoRecord("Ben/b.jpg", "Ben", "sha-b", "enrolled"), [])
            reader.close()


def test_a_read_only_open_of_a_writable_workspace_sees_later_commits(tmp_path):
    path = tmp_path / "catalog.sqlite"
    writer = SqliteCatalog(path)
    reader = SqliteCatalog(path, read_only=True)
    writer.put_photo(PhotoRecord("Ben/a.jpg", "Ben", "sha-a", "enrolled"), [])
    assert reader.counts()["photos"] == 1
    with pytest.raises(WorkspaceError):
        reader.put_photo(PhotoRecord("Ben/b.jpg", "Ben", "sha-b", "enrolled"), [])
    assert writer.counts()["photos"] == 1


def test_a_read_only_open_of_a_missing_catalog_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no catalog here"):
        SqliteCatalog(tmp_path / "workspace" / "catalog.sqlite", read_only=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/ws/a"), WorkspaceFull),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/ws/a"), WorkspaceFull),
        (OSError(errno.EROFS, "Read-only file system", "/ws/a"), WorkspaceError),
        (PermissionError(errno.EACCES, "Permission denied", "/ws/a"), WorkspaceError),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/ws/a"), None),
        (OSError(errno.EIO, "Input/output error", "/ws/a"), None),
        (ValueError("not an OSError"), None),
    ],
)
def test_which_errors_are_refusals(error, expected):
    refused = refusal(error)
    if expected is None:
        assert refused is None
    else:
        assert type(refused) is expected
        assert "/ws/a" in str(refused)
        assert os.strerror(error.errno) in str(refused)


def test_sqlite_errors_are_refusals_by_their_name(tmp_path):
    database = sqlite3.connect(tmp_path / "x.sqlite")
    database.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.OperationalError) as caught:
        database.execute("SELECT missing FROM t")
    assert refusal(caught.value, tmp_path / "x.sqlite") is None  # a plain error stays itself
