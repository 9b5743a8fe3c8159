"""The embedded default: buckets as folders and the catalog in SQLite, under one workspace."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from types import EllipsisType
from urllib.parse import quote

import numpy as np

from facerec.core.errors import InvalidLabel, WorkspaceError, WorkspaceFull
from facerec.core.records import LEGACY_EMBEDDING_MODEL, FaceRecord, ModelRecord, PhotoRecord
from facerec.storage.ports import Stores

BUCKETS = ("ingest", "faces", "models", "reports", "quarantine")
_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
_SQLITE_UNWRITABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")


def refusal(error: Exception, where: Path | str | None = None) -> WorkspaceError | None:
    """A full disk or a place that cannot be written (an OSError's errno, a SQLite error's
    name) -> WorkspaceFull or WorkspaceError naming ``where`` (default: the OSError's file);
    any other error -> None."""
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "")
        full, unwritable = name.startswith("SQLITE_FULL"), name.startswith(_SQLITE_UNWRITABLE)
        reason = str(error)
    elif isinstance(error, OSError):
        full, unwritable = error.errno in _FULL, error.errno in _UNWRITABLE
        reason = os.strerror(error.errno) if error.errno else str(error)
        where = where or error.filename
    else:
        return None
    if full:
        return WorkspaceFull(
            f"the disk is full: {where} could not be written ({reason}); "
            "free some space and run the command again"
        )
    if unwritable:
        return WorkspaceError(
            f"{where} cannot be written ({reason}): the workspace is read-only or not yours"
        )
    return None


@contextmanager
def _refusing(where: Path) -> Iterator[None]:
    """Raise ``refusal``'s WorkspaceError for a full disk or an unwritable ``where``."""
    try:
        yield
    except (OSError, sqlite3.Error) as error:
        refused = refusal(error, where)
        if refused is None:
            raise
        raise refused from error


def _write_new(path: Path, data: bytes) -> None:
    """Create or truncate ``path`` and write all of ``data``, unbuffered (os.write)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


class FolderBlobStore:
    """A bucket as a folder; keys are relative POSIX paths that must stay inside it."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not key or not path.is_relative_to(self.root) or path == self.root:
            raise InvalidLabel(f"the key {key!r} points outside its bucket")
        return path

    def put(self, key: str, data: bytes) -> None:
        """Write a hidden ``.partial`` file, then rename it over the key: readers see the old
        bytes or the new. A failed write removes the ``.partial`` file; a full disk or an
        unwritable folder raises WorkspaceFull or WorkspaceError naming the key's path."""
        path = self._path(key)
        partial = path.with_name(f".{path.name}.partial")  # keys never start with a dot
        with _refusing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                _write_new(partial, data)
                partial.replace(path)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _refusing(path):
            path.unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith("."):
                yield key

    def purge(self, prefix: str) -> int:
        """Delete every file under ``prefix``, hidden ones too (a ``.partial`` left by a
        stopped write holds the same data), and the folders that leaves empty; returns how
        many keys (visible files) were deleted."""
        if not self.root.is_dir():
            return 0
        files = [
            path
            for path in sorted(self.root.rglob("*"))
            if not path.is_dir() and path.relative_to(self.root).as_posix().startswith(prefix)
        ]
        for path in files:
            with _refusing(path):
                path.unlink()
                for folder in path.parents:
                    if folder == self.root or any(folder.iterdir()):
                        break
                    folder.rmdir()
        return sum(not path.name.startswith(".") for path in files)


SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    key TEXT PRIMARY KEY, person TEXT NOT NULL, sha256 TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', face_count INTEGER NOT NULL DEFAULT 0,
    width INTEGER NOT NULL DEFAULT 0, height INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS photos_sha256 ON photos (sha256);
CREATE TABLE IF NOT EXISTS faces (
    face_id TEXT PRIMARY KEY, photo_key TEXT NOT NULL REFERENCES photos (key) ON DELETE CASCADE,
    face_index INTEGER NOT NULL, person TEXT, box TEXT NOT NULL, confidence REAL NOT NULL,
    crop_key TEXT NOT NULL, crop_method TEXT NOT NULL, embedding BLOB NOT NULL,
    embedding_model TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS faces_person ON faces (person);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY, artifact_key TEXT NOT NULL, created_at TEXT NOT NULL,
    metadata TEXT NOT NULL, is_current INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT ''
);
"""


MODEL_COLUMNS = "model_id, artifact_key, created_at, metadata, sha256"


def _model(row) -> ModelRecord:
    return ModelRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])


class SqliteCatalog:
    """The Catalog port in one SQLite file (WAL, foreign keys on). A full disk or a catalog
    that cannot be written raises WorkspaceFull or WorkspaceError naming the file.

    ``read_only``: open an existing catalog only to read it (``facerec status``), which works
    in a read-only workspace too (there as a snapshot: see ``_open_read_only``).
    ``embedding_model`` is stamped on every face it writes (vision.embedding.embedding_stamp).
    """

    def __init__(self, path: Path, read_only: bool = False, embedding_model: str = ""):
        self.path, self.embedding_model = path, embedding_model
        with _refusing(path):
            if read_only:
                self._db = _open_read_only(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, check_same_thread=False)
                self._db.execute("PRAGMA foreign_keys = ON")
                self._db.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: never corrupt; a power cut may lose the last commits.
                self._db.execute("PRAGMA synchronous = NORMAL")
                # Deleted rows are overwritten, not left in free pages: forgetting is real.
                self._db.execute("PRAGMA secure_delete = ON")
                self._db.executescript(SCHEMA)
                self._add_model_sha256()
                self._add_embedding_model()
        self._writes = 0  # this connection's writes (see version)

    def close(self) -> None:
        self._db.close()

    def version(self) -> tuple[int, int]:
        """Changes since it was opened, for caches of its contents: this connection's writes
        and the commits of other connections (``PRAGMA data_version``)."""
        return self._writes, self._db.execute("PRAGMA data_version").fetchone()[0]

    def get_photo(self, key: str) -> PhotoRecord | None:
        row = self._db.execute(
            "SELECT key, person, sha256, status, reason, face_count, width, height "
            "FROM photos WHERE key = ?",
            (key,),
        ).fetchone()
        return PhotoRecord(*row) if row else None

    def photo_with_sha256(self, sha256: str) -> PhotoRecord | None:
        row = self._db.execute(
            "SELECT key FROM photos WHERE sha256 = ? ORDER BY key LIMIT 1", (sha256,)
        ).fetchone()
        return self.get_photo(row[0]) if row else None

    def put_photo(self, photo: PhotoRecord, faces: list[FaceRecord]) -> None:
        """Insert or replace the photo and all of its faces in one transaction."""
        with self._write():
            self._db.execute("DELETE FROM faces WHERE photo_key = ?", (photo.key,))
            self._db.execute(
                "INSERT OR REPLACE INTO photos (key, person, sha256, status, reason, face_count,"
                " width, height) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    photo.key,
                    photo.person,
                    photo.sha256,
                    photo.status,
                    photo.reason,
                    photo.face_count,
                    photo.width,
                    photo.height,
                ),
            )
            self._db.executemany(
                "INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        face.face_id,
                        face.photo_key,
                        face.index,
                        face.person,
                        json.dumps(face.box),
                        face.confidence,
                        face.crop_key,
                        face.crop_method,
                        np.asarray(face.embedding, dtype=np.float32).tobytes(),
                        self.embedding_model,
                    )
                    for face in faces
                ],
            )

    def faces(self, person: str | None = None, labelled_only: bool = True) -> list[FaceRecord]:
        """Faces ordered by face_id; ``person`` filters on the label."""
        query = (
            "SELECT face_id, photo_key, face_index, person, box, confidence, crop_key,"
            " crop_method, embedding, embedding_model FROM faces"
        )
        clauses, arguments = [], []
        if person is not None:
            clauses.append("person = ?")
            arguments.append(person)
        elif labelled_only:
            clauses.append("person IS NOT NULL")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with closing(self._db.execute(query + " ORDER BY face_id", arguments)) as cursor:
            return [
                FaceRecord(
                    face_id,
                    photo_key,
                    index,
                    label,
                    tuple(json.loads(box)),
                    confidence,
                    crop_key,
                    method,
                    np.frombuffer(blob, dtype=np.float32).copy(),
                    stamp,
                )
                for (
                    face_id,
                    photo_key,
                    index,
                    label,
                    box,
                    confidence,
                    crop_key,
                    method,
                    blob,
                    stamp,
                ) in cursor
            ]

    def photos(self, person: str) -> list[PhotoRecord]:
        """The person's photos, any status, ordered by key."""
        rows = self._db.execute(
            "SELECT key, person, sha256, status, reason, face_count, width, height "
            "FROM photos WHERE person = ? ORDER BY key",
            (person,),
        ).fetchall()
        return [PhotoRecord(*row) for row in rows]

    def unlabelled_faces(self) -> list[FaceRecord]:
        """The faces that are nobody's label (the other faces of group photos), by face_id."""
        return [face for face in self.faces(labelled_only=False) if face.person is None]

    def delete_faces(self, faces: list[FaceRecord]) -> int:
        """Delete these faces' records (their photos stay); the count deleted."""
        with self._write():
            deleted = self._db.executemany(
                "DELETE FROM faces WHERE face_id = ?", [(face.face_id,) for face in faces]
            ).rowcount
        self._scrub()
        return deleted

    def put_model(self, model: ModelRecord, replaces: str | EllipsisType | None = ...) -> bool:
        """Register a model and make it current, if the current model is still ``replaces``
        (the port's contract): one transaction that holds the write lock from its read on."""
        with self._write():
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT model_id FROM models WHERE is_current = 1").fetchone()
            moved = replaces is not ... and (row[0] if row else None) != replaces
            if not moved:
                self._db.execute("UPDATE models SET is_current = 0")
                self._db.execute(
                    "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, 1, ?)",
                    (
                        model.model_id,
                        model.artifact_key,
                        model.created_at,
                        json.dumps(model.metadata),
                        model.sha256,
                    ),
                )
        return not moved

    def current_model(self) -> ModelRecord | None:
        row = self._db.execute(
            f"SELECT {MODEL_COLUMNS} FROM models WHERE is_current = 1"
        ).fetchone()
        return _model(row) if row else None

    def models(self) -> list[ModelRecord]:
        rows = self._db.execute(f"SELECT {MODEL_COLUMNS} FROM models ORDER BY model_id")
        return [_model(row) for row in rows.fetchall()]

    def _add_model_sha256(self) -> None:
        """Give a catalog made before model hashes their column (its models then have none:
        they are refused until retrained)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(models)")}
        if "sha256" not in columns:
            with self._db:
                self._db.execute("ALTER TABLE models ADD COLUMN sha256 TEXT NOT NULL DEFAULT ''")

    def _add_embedding_model(self) -> None:
        """Give a catalog made before embedding stamps their column: its faces were embedded
        by the Keras FaceNet, whose numbers the fp32 network has (LEGACY_EMBEDDING_MODEL)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(faces)")}
        if "embedding_model" not in columns:
            with self._db:
                self._db.execute(
                    "ALTER TABLE faces ADD COLUMN embedding_model TEXT NOT NULL DEFAULT ''"
                )
                self._db.execute("UPDATE faces SET embedding_model = ?", (LEGACY_EMBEDDING_MODEL,))

    def set_embedding(self, face: FaceRecord, embedding: np.ndarray) -> None:
        """Replace one face's embedding, stamped with this catalog's embedding model."""
        with self._write():
            self._db.execute(
                "UPDATE faces SET embedding = ?, embedding_model = ? WHERE face_id = ?",
                (
                    np.asarray(embedding, dtype=np.float32).tobytes(),
                    self.embedding_model,
                    face.face_id,
                ),
            )

    def delete_model(self, model_id: str) -> None:
        with self._write():
            self._db.execute("DELETE FROM models WHERE model_id = ?", (model_id,))
        self._scrub()

    def forget_person(self, person: str) -> dict[str, int]:
        """Delete the person's photos (any status) and every face of them; the database file
        and its write-ahead log keep no copy afterwards (secure_delete, WAL truncated)."""
        keys = [
            row[0] for row in self._db.execute("SELECT key FROM photos WHERE person = ?", (person,))
        ]
        with self._write():
            faces = self._db.execute(
                "DELETE FROM faces WHERE photo_key IN (SELECT key FROM photos WHERE person = ?)",
                (person,),
            ).rowcount
            self._db.execute("DELETE FROM photos WHERE person = ?", (person,))
        self._scrub()
        return {"photo_records": len(keys), "face_records": faces}

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction, counted in ``version``."""
        with _refusing(self.path), self._db:
            yield
        self._writes += 1

    def _scrub(self) -> None:
        with _refusing(self.path):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def counts(self) -> dict[str, int]:
        """people (labelled), photos by status, faces, labelled faces, models."""
        query = {
            "people": "SELECT COUNT(DISTINCT person) FROM faces WHERE person IS NOT NULL",
            "photos": "SELECT COUNT(*) FROM photos",
            "photos_enrolled": "SELECT COUNT(*) FROM photos WHERE status = 'enrolled'",
            "photos_no_face": "SELECT COUNT(*) FROM photos WHERE status = 'no_face'",
            "photos_rejected": "SELECT COUNT(*) FROM photos WHERE status = 'rejected'",
            "faces": "SELECT COUNT(*) FROM faces",
            "faces_labelled": "SELECT COUNT(*) FROM faces WHERE person IS NOT NULL",
            "models": "SELECT COUNT(*) FROM models",
        }
        return {name: self._db.execute(sql).fetchone()[0] for name, sql in query.items()}


def _open_read_only(path: Path) -> sqlite3.Connection:
    """An existing catalog opened to read only. Reading a WAL database needs its shared-memory
    index beside it; where that cannot be created (a folder we cannot write to) the file is
    read as immutable: a snapshot that ignores writes by others meanwhile."""
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no catalog here", str(path))
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as error:
        db.close()
        if not getattr(error, "sqlite_errorname", "").startswith(_SQLITE_UNWRITABLE):
            raise
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, check_same_thread=False)


def local_stores(root: Path, embedding_model: str = "") -> Stores:
    """The embedded default: ``root/<bucket>/`` folders and ``root/catalog.sqlite`` (its
    faces stamped with ``embedding_model``)."""
    ingest, faces, models, reports, quarantine = (
        FolderBlobStore(root / bucket) for bucket in BUCKETS
    )
    return Stores(
        SqliteCatalog(root / "catalog.sqlite", embedding_model=embedding_model),
        ingest,
        faces,
        quarantine,
        models,
        reports,
    )
