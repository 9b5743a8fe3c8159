"""Enrol labelled photos: decode, find every face, choose the labelled one, store crops and
embeddings, record the photo; a photo that cannot be used is quarantined with its reason.

The user's upload (the ingest store's object) is only read: enrolment never rewrites or
deletes it. When new bytes replace an enrolled photo, the old photo's surplus crops are
deleted from the faces store (in the cloud their FaceIds and vectors follow through the
crops' "Object Deleted" events) and its catalog faces are replaced.

Commit order of one photo, so that a run stopped between any two writes leaves a state the
next run completes (tests/unit/flows/test_crash_windows.py stops it at each write):

1. its crops ``<Person>/<stem>-N.png`` (an enrolled photo), or its quarantined bytes
   ``<Person>/<sha256>.bin`` then their reason ``<Person>/<sha256>.json`` (a refused one;
   ``quarantine_key``);
2. its catalog record, photo and faces in one transaction: the commit point. Until it is
   written the catalog still holds no record (or the replaced version's, with another
   sha256), so the next run enrols the photo again. Only a catalog record owns crops: a crop
   that no other photo's record holds (one left by a run stopped before step 2) is this
   photo's own name, overwritten, never a name collision;
3. the replaced version's surplus crops, highest index first. A photo whose record has its
   bytes' sha256 is only ``unchanged`` once these are gone: the next run deletes any it finds
   from the record's face count up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.core.errors import (
    FaceRecError,
    ImageError,
    NameCollision,
    NoFaceFound,
    TooManyFaces,
)
from facerec.core.naming import (
    crop_key,
    ingest_key,
    parse_ingest_key,
    split_ingest_key,
    validate_person_name,
)
from facerec.core.records import FaceRecord, PhotoRecord
from facerec.core.settings import DEFAULT_LIMITS, ImageLimits
from facerec.storage.ports import Catalog, Stores
from facerec.vision.analyser import AnalysedFace, FaceAnalyser
from facerec.vision.detection import select_labelled_face
from facerec.vision.images import decode_image, encode_png, read_photo


@dataclass(frozen=True)
class PhotoInput:
    """A labelled photo to enrol: the person, the photo's file name and its bytes."""

    person: str
    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class PhotoOutcome:
    """What happened to one photo. ``status``: enrolled | no_face | rejected | unchanged |
    duplicate. ``code`` is the error code for no_face/rejected; ``rule`` how the labelled face
    was chosen (single | reference | central)."""

    key: str
    person: str
    status: str
    faces: int = 0
    code: str = ""
    reason: str = ""
    labelled_face: int | None = None
    rule: str = ""


@dataclass
class _Pending:
    item: PhotoInput
    key: str
    sha256: str
    image_shape: tuple[int, ...]
    faces: list[AnalysedFace]


def labelled_face(
    catalog: Catalog,
    analyser: FaceAnalyser,
    person: str,
    faces: list[AnalysedFace],
    image_shape: tuple[int, ...],
) -> tuple[int, str]:
    """Which face of a photo labelled ``person`` is that person (select_labelled_face); the
    person's enrolled faces are read only when the photo has several faces."""
    if len(faces) == 1:
        return 0, "single"
    settings = analyser.settings
    references = [
        face.embedding for face in catalog.faces(person) if face.crop_method == settings.crop_method
    ]
    return select_labelled_face(
        [analysed.face for analysed in faces],
        np.array([analysed.embedding for analysed in faces]),
        np.array(references).reshape(-1, faces[0].embedding.shape[0]),
        image_shape,
        settings.min_reference_similarity,
    )


class Enrolment:
    """Enrols photos with one analyser into one set of stores."""

    def __init__(self, analyser: FaceAnalyser, stores: Stores):
        self.analyser, self.stores = analyser, stores
        self.settings = analyser.settings

    def enrol(
        self,
        items: Iterable[PhotoInput],
        on_outcome: Callable[[PhotoOutcome], None] = lambda outcome: None,
    ) -> list[PhotoOutcome]:
        """Enrol labelled photos in chunks; photos with several faces are resolved last, once
        every single-face photo of the run can serve as a reference. Never raises for a bad
        photo: each gets an outcome (also passed to ``on_outcome`` as it is decided)."""
        outcomes: list[PhotoOutcome] = []

        def record(outcome: PhotoOutcome) -> None:
            outcomes.append(outcome)
            on_outcome(outcome)

        deferred: list[_Pending] = []
        chunk: list[PhotoInput] = []
        # The first key of this run to claim some bytes (by sha256) or a crop name (by key).
        claimed: dict[str, str] = {}
        for item in items:
            chunk.append(item)
            if len(chunk) == self.settings.chunk_photos:
                deferred += self._enrol_chunk(chunk, record, claimed)
                chunk = []
        deferred += self._enrol_chunk(chunk, record, claimed)
        for pending in deferred:
            record(self._commit(pending))
        return outcomes

    def _enrol_chunk(
        self, chunk: list[PhotoInput], record, claimed: dict[str, str]
    ) -> list[_Pending]:
        decoded: list[tuple[PhotoInput, str, str, np.ndarray]] = []
        for item in chunk:
            sha256 = hashlib.sha256(item.data).hexdigest()
            try:
                key = ingest_key(item.person, item.name)
            except FaceRecError as error:
                record(self._reject(item, None, sha256, error))
                continue
            known = self.stores.catalog.get_photo(key)
            if known and known.sha256 == sha256:
                self._delete_surplus(known)  # a run may have stopped before deleting them
                record(
                    PhotoOutcome(
                        key,
                        known.person,
                        "unchanged",
                        known.face_count,
                        reason=f"already ingested ({known.status})",
                    )
                )
                continue
            twin = self.stores.catalog.photo_with_sha256(sha256)
            if twin and twin.key != key:
                record(
                    PhotoOutcome(
                        key,
                        item.person,
                        "duplicate",
                        twin.face_count,
                        reason=f"same bytes as {twin.key}",
                    )
                )
                continue
            first = claimed.setdefault(sha256, key)
            if first != key:
                record(PhotoOutcome(key, item.person, "duplicate", reason=f"same bytes as {first}"))
                continue
            try:
                decoded.append(
                    (item, key, sha256, decode_image(item.data, self.settings.image_limits))
                )
            except ImageError as error:
                record(self._reject(item, key, sha256, error))
        if not decoded:
            return []
        analysed = self.analyser.analyse([image for *_, image in decoded])
        deferred = []
        for (item, key, sha256, image), faces in zip(decoded, analysed, strict=True):
            if isinstance(faces, TooManyFaces):  # detected, never embedded
                record(self._reject(item, key, sha256, faces, image.shape))
                continue
            pending = _Pending(item, key, sha256, image.shape, faces)
            if faces and (other := self._crop_owner(key, claimed)):
                error = NameCollision(
                    f"{other} has the same name without its extension, so this photo's face "
                    f"crops ({crop_key(key, 0).removesuffix('-0.png')}-N.png) would overwrite "
                    "its crops; rename one of them"
                )
                record(self._reject(item, key, sha256, error, image.shape))
                continue
            if not faces:
                record(
                    self._reject(
                        item, key, sha256, NoFaceFound("no face found in the photo"), image.shape
                    )
                )
            elif len(faces) == 1:
                record(self._commit(pending))
            else:
                deferred.append(pending)
        return deferred

    def _crop_owner(self, key: str, claimed: dict[str, str]) -> str | None:
        """The other photo whose crops ``<Person>/<stem>-N.png`` this photo's would overwrite
        (same person and stem, other extension): one claimed earlier in this run, or one whose
        catalog record holds faces; else None. Claims the crop names for ``key``."""
        first_crop = crop_key(key, 0)
        owner = claimed.setdefault(first_crop, key)
        if owner != key:
            return owner
        if not self.stores.faces.exists(first_crop):
            return None
        own = self.stores.catalog.get_photo(key)
        return None if own is not None and own.face_count else self._catalogued_owner(key)

    def _catalogued_owner(self, key: str) -> str | None:
        """The other photo of the same person and stem whose catalog record holds faces (so
        the crops named like ``key``'s are its own), or None: a crop no record holds is free."""
        first_crop = crop_key(key, 0)
        person = key.partition("/")[0]
        return next(
            (
                photo.key
                for photo in self.stores.catalog.photos(person)
                if photo.key != key and photo.face_count and crop_key(photo.key, 0) == first_crop
            ),
            None,
        )

    def _delete_surplus(self, photo: PhotoRecord, previous_count: int = 0) -> None:
        """Delete the crops named like ``photo``'s beyond its ``face_count``: a replaced
        version's (``previous_count`` faces) and any left by a run stopped before deleting
        them (found from ``face_count`` up), unless another photo's record holds them.
        Highest index first, so that what a stop leaves is contiguous from ``face_count``."""
        crops = self.stores.faces
        end = max(previous_count, photo.face_count)
        while crops.exists(crop_key(photo.key, end)):
            end += 1
        if end == photo.face_count or (
            not photo.face_count and self._catalogued_owner(photo.key) is not None
        ):
            return
        for index in reversed(range(photo.face_count, end)):
            crops.delete(crop_key(photo.key, index))

    def _reject(
        self,
        item: PhotoInput,
        key: str | None,
        sha256: str,
        error: FaceRecError,
        shape: tuple[int, ...] = (0, 0),
    ) -> PhotoOutcome:
        """Quarantine the bytes with their reason, stored under their hash (the names may be
        hostile) in the person's folder (``quarantine_key``), and record the photo's status
        when its key is valid."""
        status = "no_face" if isinstance(error, NoFaceFound) else "rejected"
        shown = key or f"{item.person}/{item.name}"
        stored = quarantine_key(key, sha256)
        self.stores.quarantine.put(f"{stored}.bin", item.data)
        self.stores.quarantine.put(
            f"{stored}.json",
            json.dumps(
                {"key": shown, "code": error.code, "reason": str(error)}, ensure_ascii=False
            ).encode(),
        )
        if key is not None:
            person = validate_person_name(item.person)
            record = PhotoRecord(key, person, sha256, status, str(error), 0, shape[1], shape[0])
            self._replace_photo(record, [])
        return PhotoOutcome(shown, item.person, status, code=error.code, reason=str(error))

    def refuse_unread(self, key: str, error: FaceRecError) -> PhotoOutcome:
        """Refuse the ingest object ``key`` without reading it (over the size limit): only
        its reason is quarantined, under a marker named by the key's hash, and its record is
        replaced as for any bad photo."""
        person, _ = split_ingest_key(key)
        marker = "size-" + hashlib.sha256(key.encode()).hexdigest()
        reason = {"key": key, "code": error.code, "reason": str(error), "bytes_copied": False}
        try:
            person, _ = parse_ingest_key(key)
            valid = True
        except FaceRecError:
            valid = False
        self.stores.quarantine.put(
            f"{quarantine_key(key if valid else None, marker)}.json",
            json.dumps(reason, ensure_ascii=False).encode(),
        )
        if valid:
            self._replace_photo(PhotoRecord(key, person, marker, "rejected", str(error)), [])
        return PhotoOutcome(key, person, "rejected", code=error.code, reason=str(error))

    def _replace_photo(self, photo: PhotoRecord, faces: list[FaceRecord]) -> None:
        """Record a photo's new state (the commit point), then delete the crops it no longer
        has when it replaces other bytes under the same key (never the upload itself)."""
        previous = self.stores.catalog.get_photo(photo.key)
        self.stores.catalog.put_photo(photo, faces)
        self._delete_surplus(photo, previous.face_count if previous else 0)

    def _commit(self, pending: _Pending) -> PhotoOutcome:
        person = validate_person_name(pending.item.person)
        chosen, rule = labelled_face(
            self.stores.catalog, self.analyser, person, pending.faces, pending.image_shape
        )
        records = []
        for index, analysed in enumerate(pending.faces):
            key = crop_key(pending.key, index)
            self.stores.faces.put(key, encode_png(analysed.crop))
            records.append(
                FaceRecord(
                    f"{pending.key}#{index}",
                    pending.key,
                    index,
                    person if index == chosen else None,
                    analysed.face.box,
                    analysed.face.confidence,
                    key,
                    self.settings.crop_method,
                    analysed.embedding,
                )
            )
        height, width = pending.image_shape[:2]
        self._replace_photo(
            PhotoRecord(
                pending.key, person, pending.sha256, "enrolled", "", len(records), width, height
            ),
            records,
        )
        return PhotoOutcome(
            pending.key, person, "enrolled", len(records), labelled_face=chosen, rule=rule
        )


def quarantine_key(key: str | None, name: str) -> str:
    """Where a refused photo's bytes (``.bin``) and reason (``.json``) go: ``<Person>/<name>``
    for a valid ingest key (so forgetting the person finds them by folder), ``<name>`` at
    the top for a key no person could own."""
    return f"{key.partition('/')[0]}/{name}" if key is not None else name


def read_labelled_folder(
    root: Path,
    on_skip: Callable[[str, str], None],
    on_refused: Callable[[str, str, ImageError], None] | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Iterator[PhotoInput]:
    """Yield the photos of an LFW-layout folder ``root/<Person>/<file>``, each read by
    read_photo: only regular files inside ``root``, at most ``limits.max_bytes``. A file refused
    unread (a FIFO, a device, a link leading out of ``root``, too large) goes to
    ``on_refused(person, file name, error)`` (default: ``on_skip``); anything else that is not
    such a photo (files directly in root, folders or links to folders where a photo or a
    person folder should be, an unreadable file) to ``on_skip(path, reason)``."""
    root = Path(root)
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() and folder.is_dir():
            on_skip(folder.name, "a symbolic link to a folder: person folders are not followed")
            continue
        if not folder.is_dir():
            on_skip(folder.name, "not inside a person folder: expected DIR/<Person>/<photo>")
            continue
        for path in sorted(folder.iterdir()):
            relative = f"{folder.name}/{path.name}"
            if path.is_dir():
                on_skip(relative, "a folder (or a link to one), not a photo: not read")
                continue
            try:
                data = read_photo(path, limits, within=root)
            except ImageError as error:
                if on_refused is None:
                    on_skip(relative, str(error))
                else:
                    on_refused(folder.name, path.name, error)
                continue
            except OSError as error:
                on_skip(relative, f"cannot be read: {error.strerror or error}")
                continue
            yield PhotoInput(folder.name, path.name, data)
