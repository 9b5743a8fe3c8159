"""The embedded default: buckets as folders and the catalog in SQLite, under one workspace."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from types import EllipsisType

import numpy as np

from facerec.core.errors import InvalidLabel
from facerec.core.records import FaceRecord, ModelRecord, PhotoRecord
from facerec.storage.ports import Stores

BUCKETS = ("ingest", "faces", "models", "reports", "quarantine")


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
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # keys never start with a dot
        partial.write_bytes(data)
        partial.replace(path)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith("."):
                yield key

    def purge(self, prefix: str) -> int:
        """Delete every key under ``prefix`` and the folders that leaves empty."""
        keys = list(self.keys(prefix))
        for key in keys:
            path = self._path(key)
            path.unlink()
            for folder in path.parents:
                if folder == self.root or any(folder.iterdir()):
                    break
                folder.rmdir()
        return len(keys)


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
    crop_key TEXT NOT NULL, crop_method TEXT NOT NULL, embedding BLOB NOT NULL
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
    """The Catalog port in one SQLite file (WAL, foreign keys on)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: never corrupt; a power cut may lose the last commits, not the file.
        self._db.execute("PRAGMA synchronous = NORMAL")
        # Deleted rows are overwritten, not left in free pages: forgetting a person is real.
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.executescript(SCHEMA)
        self._add_model_sha256()
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
                "INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    )
                    for face in faces
                ],
            )

    def faces(self, person: str | None = None, labelled_only: bool = True) -> list[FaceRecord]:
        """Faces ordered by face_id; ``person`` filters on the label."""
        query = (
            "SELECT face_id, photo_key, face_index, person, box, confidence, crop_key,"
            " crop_method, embedding FROM faces"
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
                ) in cursor
            ]

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
        with self._db:
            yield
        self._writes += 1

    def _scrub(self) -> None:
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


def local_stores(root: Path) -> Stores:
    """The embedded default: ``root/<bucket>/`` folders and ``root/catalog.sqlite``."""
    ingest, faces, models, reports, quarantine = (
        FolderBlobStore(root / bucket) for bucket in BUCKETS
    )
    return Stores(
        SqliteCatalog(root / "catalog.sqlite"), ingest, faces, quarantine, models, reports
    )
