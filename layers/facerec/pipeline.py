"""Enrol, train, evaluate and identify, composed from the steps and the storage ports.

The only module that knows the order of the steps; the CLI, the local server and the
Lambda handlers call it with their own storage adapters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from facerec.alignment import DEFAULT_CROP_METHOD, crop
from facerec.detection import DetectorSettings, Face, FaceDetector, select_labelled_face
from facerec.embedding import FaceNetEmbedder
from facerec.errors import (
    FaceRecError,
    ImageError,
    ModelNotFound,
    NameCollision,
    NoFaceFound,
    NotEnoughData,
    TooManyFaces,
)
from facerec.evaluation import evaluate_predictions
from facerec.forget import forget_person
from facerec.images import DEFAULT_LIMITS, ImageLimits, decode_image, encode_png
from facerec.models import TrainedModel
from facerec.naming import crop_key, ingest_key, validate_person_name
from facerec.storage.ports import BlobStore, Catalog, FaceRecord, PhotoRecord
from facerec.workflow import (
    TrainOptions,
    describe_analysis,
    evaluate_facenet,
    evaluate_nearest,
    fit,
    gather,
    labelled_faces,
    publish,
)


@dataclass(frozen=True)
class PipelineSettings:
    """Defaults are the thesis's figures; ``crop_method`` is the measured better one."""

    crop_method: str = DEFAULT_CROP_METHOD
    margin: int = 32
    crop_size: int = 160
    max_faces: int = 100
    chunk_photos: int = 64
    min_reference_similarity: float = 0.5
    image_limits: ImageLimits = DEFAULT_LIMITS
    detector: DetectorSettings = DetectorSettings()


@dataclass(frozen=True)
class AnalysedFace:
    """A detected face with its crop, uint8 (160, 160, 3), and embedding, float32 (128,)."""

    face: Face
    crop: np.ndarray = field(repr=False)
    embedding: np.ndarray = field(repr=False)


class FaceAnalyser:
    """Detector and embedder, loaded once; photos in, analysed faces out (batched)."""

    def __init__(
        self, detector: FaceDetector, embedder: FaceNetEmbedder, settings: PipelineSettings
    ):
        self.detector, self.embedder, self.settings = detector, embedder, settings

    def analyse(self, images: Sequence[np.ndarray]) -> list[list[AnalysedFace]]:
        """uint8 RGB photos -> per photo, its faces (most confident first)."""
        detections = self.detector.detect_batch(images)
        crops = [
            crop(
                image,
                face,
                self.settings.crop_method,
                self.settings.margin,
                self.settings.crop_size,
            )
            for image, faces in zip(images, detections, strict=True)
            for face in faces
        ]
        size = self.settings.crop_size
        embeddings = self.embedder.embed(
            np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        )
        results, position = [], 0
        for faces in detections:
            results.append(
                [
                    AnalysedFace(face, crops[position + i], embeddings[position + i])
                    for i, face in enumerate(faces)
                ]
            )
            position += len(faces)
        return results

    def describe(self) -> dict:
        """What a model's metadata records about how faces were found, cropped and embedded."""
        return describe_analysis(self.settings, self.embedder.weights_sha256)


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


class Pipeline:
    """The product's flows over one set of storage ports."""

    def __init__(
        self,
        analyser: FaceAnalyser,
        catalog: Catalog,
        ingest: BlobStore,
        faces: BlobStore,
        quarantine: BlobStore,
        models: BlobStore,
        reports: BlobStore,
    ):
        self.analyser, self.catalog = analyser, catalog
        self.ingest, self.faces, self.quarantine = ingest, faces, quarantine
        self.models, self.reports = models, reports
        self.settings = analyser.settings
        self._model: TrainedModel | None = None

    # ---- enrolment -------------------------------------------------------------------------

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
            known = self.catalog.get_photo(key)
            if known and known.sha256 == sha256:
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
            twin = self.catalog.photo_with_sha256(sha256)
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
            elif len(faces) > self.settings.max_faces:
                error = TooManyFaces(f"{len(faces)} faces; at most {self.settings.max_faces}")
                record(self._reject(item, key, sha256, error, image.shape))
            elif len(faces) == 1:
                record(self._commit(pending))
            else:
                deferred.append(pending)
        return deferred

    def _crop_owner(self, key: str, claimed: dict[str, str]) -> str | None:
        """The other photo whose crops ``<Person>/<stem>-N.png`` this photo's would overwrite
        (same person and stem, other extension), or None. Claims the crop names for ``key``."""
        first_crop = crop_key(key, 0)
        owner = claimed.setdefault(first_crop, key)
        if owner != key:
            return owner
        if self.catalog.get_photo(key) is not None or not self.faces.exists(first_crop):
            return None
        stem = PurePosixPath(key).stem
        prefix = str(PurePosixPath(key).with_name(stem))
        return next(
            (other for other in self.ingest.keys(prefix) if PurePosixPath(other).stem == stem),
            f"another photo named {stem}.*",
        )

    def _reject(
        self,
        item: PhotoInput,
        key: str | None,
        sha256: str,
        error: FaceRecError,
        shape: tuple[int, ...] = (0, 0),
    ) -> PhotoOutcome:
        """Quarantine the bytes with their reason, stored under their hash (the names may be
        hostile), and record the photo's status when its key is valid."""
        status = "no_face" if isinstance(error, NoFaceFound) else "rejected"
        shown = key or f"{item.person}/{item.name}"
        self.quarantine.put(f"{sha256}.bin", item.data)
        self.quarantine.put(
            f"{sha256}.json",
            json.dumps(
                {"key": shown, "code": error.code, "reason": str(error)}, ensure_ascii=False
            ).encode(),
        )
        if key is not None:
            person = validate_person_name(item.person)
            record = PhotoRecord(key, person, sha256, status, str(error), 0, shape[1], shape[0])
            self._replace_photo(record, [])
        return PhotoOutcome(shown, item.person, status, code=error.code, reason=str(error))

    def _replace_photo(self, photo: PhotoRecord, faces: list[FaceRecord]) -> None:
        """Record a photo's new state; when it replaces other bytes under the same key, remove
        the crops the new version no longer has (and the stored photo if it is not enrolled)."""
        previous = self.catalog.get_photo(photo.key)
        self.catalog.put_photo(photo, faces)
        if previous is None:
            return
        for index in range(len(faces), previous.face_count):
            self.faces.delete(crop_key(photo.key, index))
        if photo.status != "enrolled":
            self.ingest.delete(photo.key)

    def _labelled_face(
        self, person: str, faces: list[AnalysedFace], image_shape: tuple[int, ...]
    ) -> tuple[int, str]:
        """Which face of a photo labelled ``person`` is that person (select_labelled_face);
        the person's enrolled faces are read only when the photo has several faces."""
        if len(faces) == 1:
            return 0, "single"
        references = [
            face.embedding
            for face in self.catalog.faces(person)
            if face.crop_method == self.settings.crop_method
        ]
        return select_labelled_face(
            [analysed.face for analysed in faces],
            np.array([analysed.embedding for analysed in faces]),
            np.array(references).reshape(-1, faces[0].embedding.shape[0]),
            image_shape,
            self.settings.min_reference_similarity,
        )

    def _commit(self, pending: _Pending) -> PhotoOutcome:
        person = validate_person_name(pending.item.person)
        chosen, rule = self._labelled_face(person, pending.faces, pending.image_shape)
        records = []
        for index, analysed in enumerate(pending.faces):
            key = crop_key(pending.key, index)
            self.faces.put(key, encode_png(analysed.crop))
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
        self.ingest.put(pending.key, pending.item.data)
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

    # ---- training and evaluation --------------------------------------------------------------

    def labelled_faces(self) -> list[FaceRecord]:
        return labelled_faces(self.catalog, self.settings.crop_method)

    def train(self, options: TrainOptions = TrainOptions()) -> tuple[TrainedModel, dict | None]:
        """The training workflow's steps in-process: gather, split, (select C,) cross-validate,
        fit, evaluate the held-out part, publish (promoted unless worse than the current one).
        Returns the model and its held-out evaluation (None when test_size is 0)."""
        training_set = gather(self.catalog, self.settings.crop_method)
        model, test_index = fit(training_set, options, self.analyser.describe())
        evaluations = (
            {
                "facenet": evaluate_facenet(model, training_set),
                "nearest": evaluate_nearest(model, training_set),
            }
            if len(test_index)
            else {}
        )
        model, _ = publish(self.models, self.reports, self.catalog, model, evaluations)
        return model, evaluations.get("facenet")

    def forget(self, person: str) -> dict:
        """Delete ``person`` from every store (facerec.forget); when the current model knew
        them, train a new one on the people who remain, with the deleted model's options
        (``retrained``: its id, or ``not_retrained``: why not, e.g. fewer than 2 people)."""
        current = self.catalog.current_model()
        deleted = forget_person(
            person,
            self.catalog,
            self.ingest,
            self.faces,
            self.quarantine,
            self.models,
            self.reports,
        )
        self._model = None
        if deleted["current_model"]:
            try:
                deleted["retrained"] = self.train(TrainOptions.of(current.metadata))[0].model_id
            except NotEnoughData as error:
                deleted["not_retrained"] = str(error)
        return deleted

    def current_model(self) -> TrainedModel:
        """The published model, loaded once per process (reloaded when a newer one appears)."""
        record = self.catalog.current_model()
        if record is None:
            raise ModelNotFound("no trained model yet; run `facerec train` first")
        if self._model is None or self._model.model_id != record.model_id:
            self._model = TrainedModel.from_bytes(self.models.get(record.artifact_key))
        return self._model

    def evaluate_holdout(self) -> dict:
        """Re-evaluate the current model on the faces it held out when it was trained."""
        return evaluate_facenet(
            self.current_model(), gather(self.catalog, self.settings.crop_method)
        )

    def evaluate_photos(self, items: Iterable[PhotoInput]) -> dict:
        """Evaluate the current model on labelled photos that are not enrolled. In photos with
        several faces the labelled one is chosen as at enrolment; photos that cannot be used
        count as misses and are listed with their reason."""
        model = self.current_model()
        truth, predicted, scores, refused = [], [], [], []
        items = list(items)
        decoded = []
        for item in items:
            try:
                decoded.append((item, decode_image(item.data, self.settings.image_limits)))
            except ImageError as error:
                refused.append(
                    {
                        "photo": f"{item.person}/{item.name}",
                        "code": error.code,
                        "reason": str(error),
                    }
                )
        analysed = self.analyser.analyse([image for _, image in decoded]) if decoded else []
        for (item, image), faces in zip(decoded, analysed, strict=True):
            if not faces:
                refused.append(
                    {
                        "photo": f"{item.person}/{item.name}",
                        "code": NoFaceFound.code,
                        "reason": "no face found in the photo",
                    }
                )
                continue
            person = validate_person_name(item.person)
            chosen, _ = self._labelled_face(person, faces, image.shape)
            label, score = model.classifier.predict_with_probability(faces[chosen].embedding[None])
            truth.append(person)
            predicted.append(str(label[0]))
            scores.append(float(score[0]))
        evaluation = evaluate_predictions(truth, predicted, scores, model.classifier.classes_)
        evaluation["photos"] = len(items)
        evaluation["refused"] = refused
        evaluation["photo_accuracy"] = evaluation["correct"] / len(items) if items else None
        evaluation["model_id"] = model.model_id
        return evaluation

    # ---- identification -------------------------------------------------------------------

    def analyse_photo(self, data: bytes) -> tuple[np.ndarray, list[AnalysedFace]]:
        """Photo bytes -> (uint8 RGB image, its faces). Raises ImageError (bad photo),
        NoFaceFound or TooManyFaces."""
        image = decode_image(data, self.settings.image_limits)
        faces = self.analyser.analyse([image])[0]
        if not faces:
            raise NoFaceFound("no face found in the photo")
        if len(faces) > self.settings.max_faces:
            raise TooManyFaces(f"{len(faces)} faces; at most {self.settings.max_faces}")
        return image, faces


def read_labelled_folder(root, on_skip: Callable[[str, str], None]) -> Iterator[PhotoInput]:
    """Yield every file of an LFW-layout folder ``root/<Person>/<file>``. Anything else (files
    directly in root, deeper folders) is reported through ``on_skip(path, reason)``."""
    from pathlib import Path

    root = Path(root)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_dir():
            continue
        if len(relative.parts) != 2:
            on_skip(str(relative), "not inside a person folder: expected DIR/<Person>/<photo>")
            continue
        yield PhotoInput(relative.parts[0], relative.parts[1], path.read_bytes())
