"""Every available engine on the same seeded held-out faces, and what each would cost.

- FaceNet runs the identify path once per held-out photo, timed: decode, detect, crop, embed,
  classify (the photo's enrolled face is found again by its box).
- The nearest-face engine searches each held-out face's stored embedding in the model's
  open-set gallery (``model.open_set``: the training part only, so it sees what FaceNet and
  Rekognition see), timed per face: the nearest enrolled face's person, or "unknown" when the
  open-set score is not above the calibrated threshold. Detection and embedding are FaceNet's.
- Rekognition searches each held-out face crop (SearchFacesByImage), timed, in a collection
  that holds the training crops only. When it cannot run (no credentials, no collection) it is
  recorded as not run with the reason; it is never simulated.
- The cost model puts Rekognition's tiered price per image and its face storage against the
  Lambda cost of the FaceNet path from its measured duration and the configured memory.
- When both ran, the hybrid (FaceNet first, Rekognition for the faces FaceNet is not sure of,
  ``facerec.routing``) is replayed on the same faces for every routing threshold.

``compare`` returns one JSON-ready dict; ``facerec.report`` turns it into the HTML report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from facerec.errors import FaceRecError, NoFaceFound, NotEnoughData
from facerec.evaluation import DEFAULT_THRESHOLDS, evaluate_predictions, score_statistics
from facerec.models import TrainedModel
from facerec.openset import UNKNOWN as OPEN_SET_UNKNOWN
from facerec.rekognition import (
    UNKNOWN,
    FaceCollection,
    FaceNotIndexed,
    RekognitionEngine,
    UnavailableEngine,
    external_image_id,
)
from facerec.routing import COST_MODEL, routing_curve
from facerec.storage.ports import BlobStore, FaceRecord
from facerec.workflow import SIMILARITY_THRESHOLDS, face_ids_of

SCHEMA_VERSION = 1
# Images a month: the thesis's price tiers and one volume past the last boundary.
DEFAULT_VOLUMES = (1_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000)
DEFAULT_LAMBDA_MEMORY_MB = 3008  # the identify_faces function (infra/config.py)
MIN_BOX_OVERLAP = 0.5  # intersection over union that makes a detected face the enrolled one
SECONDS_PER_MONTH = 30 * 24 * 3600
HYBRID_MONTHLY_IMAGES = 1_000_000  # the volume whose average Rekognition price a routed face pays
MEASURED_LOCALLY = "this process on this machine, not in Lambda"


@dataclass(frozen=True)
class Prices:
    """USD, us-east-1, as the thesis lists them (PRODUCT.md).

    ``rekognition_tiers``: (images in the tier per month, None for the rest; USD per image)."""

    region: str = "us-east-1"
    rekognition_tiers: tuple[tuple[int | None, float], ...] = (
        (1_000_000, 0.001),
        (9_000_000, 0.0008),
        (90_000_000, 0.0006),
        (None, 0.0004),
    )
    face_storage_month: float = 0.00001
    lambda_gb_second: float = 0.0000166667
    lambda_request: float = 0.20 / 1_000_000


PRICES = Prices()


def rekognition_image_cost(images: int, prices: Prices = PRICES) -> float:
    """USD for ``images`` Rekognition images in one month, each tier at its own price."""
    if images < 0:
        raise ValueError(f"images must be >= 0; got {images}")
    cost, left = 0.0, images
    for size, price in prices.rekognition_tiers:
        taken = left if size is None else min(left, size)
        cost += taken * price
        left -= taken
    return cost


def lambda_cost(invocations: int, seconds: float, memory_mb: int, prices: Prices = PRICES) -> dict:
    """USD for ``invocations`` Lambda calls of ``seconds`` each at ``memory_mb`` (GB = MB/1024):
    ``{"compute", "requests", "total"}``."""
    compute = invocations * seconds * memory_mb / 1024 * prices.lambda_gb_second
    requests = invocations * prices.lambda_request
    return {"compute": compute, "requests": requests, "total": compute + requests}


def _plain(value: float) -> str:
    """A price without scientific notation: 1e-05 -> "0.00001"."""
    return f"{value:.10f}".rstrip("0").rstrip(".")


def cost_model(
    volumes: Sequence[int],
    seconds_per_photo: float,
    p95_seconds: float,
    memory_mb: int,
    stored_faces: int,
    prices: Prices = PRICES,
    measured_in: str = MEASURED_LOCALLY,
) -> dict:
    """Monthly USD per volume (images a month) for both paths, with every assumption in words.

    ``seconds_per_photo``: the FaceNet path's measured mean duration per photo;
    ``stored_faces``: faces kept in the Rekognition collection all month; ``measured_in``:
    where that duration was measured, in words."""
    if not volumes or any(volume <= 0 for volume in volumes):
        raise ValueError(f"volumes must be positive image counts; got {list(volumes)}")
    if memory_mb <= 0 or seconds_per_photo < 0:
        raise ValueError("memory_mb must be positive and seconds_per_photo not negative")
    storage = stored_faces * prices.face_storage_month
    rows = []
    for volume in sorted(volumes):
        search = rekognition_image_cost(volume, prices)
        facenet = lambda_cost(volume, seconds_per_photo, memory_mb, prices)
        rows.append(
            {
                "images": volume,
                "rekognition_images": search,
                "rekognition_storage": storage,
                "rekognition_total": search + storage,
                "facenet_compute": facenet["compute"],
                "facenet_requests": facenet["requests"],
                "facenet_total": facenet["total"],
                "rekognition_per_1000": (search + storage) / volume * 1000,
                "facenet_per_1000": facenet["total"] / volume * 1000,
                "photos_per_second": volume / SECONDS_PER_MONTH,
                "lambda_concurrency": volume / SECONDS_PER_MONTH * seconds_per_photo,
            }
        )
    tiers = ", ".join(
        f"{price * 1000:.2f} USD per 1,000 images "
        + ("beyond" if size is None else f"for the {'next' if i else 'first'} {size / 1e6:g} M")
        for i, (size, price) in enumerate(prices.rekognition_tiers)
    )
    assumptions = [
        f"Prices of {prices.region} as the thesis lists them; check the current AWS price "
        "list before deciding.",
        f"Rekognition: one SearchFacesByImage call per photo, billed as one image: {tiers} "
        "a month (the tiers count the month's images cumulatively).",
        f"Rekognition face storage: {stored_faces:,} faces (this comparison's gallery) at "
        f"{_plain(prices.face_storage_month)} USD per face per month, whatever the volume.",
        "Rekognition searches the largest face of an image only: a photo with several faces "
        "costs one call per face (one face per photo is assumed here).",
        f"FaceNet path: one Lambda invocation per photo at {memory_mb} MB lasting the measured "
        f"mean of {seconds_per_photo:.3f} s (p95 {p95_seconds:.3f} s): decode, detect, crop, "
        f"embed, classify. Measured in {measured_in}, after one untimed warm-up call; cold "
        "starts (loading TensorFlow and the models) not included.",
        f"Lambda (x86): {_plain(prices.lambda_gb_second)} USD per GB-second with "
        "GB = MB / 1024, and "
        f"{prices.lambda_request * 1e6:.2f} USD per 1 M requests; no free tier.",
        "Not included for either path: API Gateway, S3, DynamoDB, data transfer, logs and the "
        "training workflow.",
    ]
    return {
        "prices": asdict(prices),
        "seconds_per_photo": seconds_per_photo,
        "p95_seconds": p95_seconds,
        "memory_mb": memory_mb,
        "stored_faces": stored_faces,
        "indexing_once": rekognition_image_cost(stored_faces, prices),
        "assumptions": assumptions,
        "rows": rows,
    }


@dataclass(frozen=True)
class EngineRun:
    """One engine over the held-out faces.

    ``answers``: face id -> ``{"person": str | None, "score": float | None, "seconds": float}``
    plus ``"reason"`` when there is no person (score None: the engine refused the face);
    FaceNet's also hold ``"open_set_score"`` (float, None when refused or not finite) and
    ``"accepted"`` (False: answered "unknown" or refused); the nearest engine's hold
    ``"accepted"`` (its ``score`` is the open-set score; person "unknown" when not accepted);
    ``gallery_refusals``: training crops the engine could not take (``crop_key``, ``reason``);
    ``reason``: why the engine did not run at all (then ``answers`` is empty)."""

    name: str
    score: str
    thresholds: tuple[float, ...]
    answers: dict[str, dict] = field(default_factory=dict)
    gallery_refusals: tuple[dict, ...] = ()
    describe: dict = field(default_factory=dict)
    reason: str = ""


FACENET_SCORE = "probability (0-1)"
REKOGNITION_SCORE = "similarity (0-100)"
NEAREST_SCORE = "open-set score (cohort-normalised cosine)"
# The open-set score lies within about -0.1..0.8 on real faces; calibrated thresholds ~0.35.
NEAREST_THRESHOLDS = tuple(round(value, 2) for value in np.arange(0.0, 0.601, 0.05))


def split_faces(faces: Sequence[FaceRecord], model: TrainedModel) -> tuple[list, list]:
    """(training faces, held-out faces) of ``model``'s seeded split, in catalog order."""
    held_out = set(model.metadata["split"]["test_face_ids"])
    if not held_out:
        raise NotEnoughData(
            f"model {model.model_id} was trained without a held-out part; run "
            "`facerec train` (25 % held out by default) first"
        )
    test = [face for face in faces if face.face_id in held_out]
    if len(test) != len(held_out):
        raise NotEnoughData(
            f"{len(held_out) - len(test)} held-out faces of model {model.model_id} are no longer "
            "enrolled; retrain (`facerec train`) before comparing"
        )
    return [face for face in faces if face.face_id not in held_out], test


def box_overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def run_facenet(pipeline, model: TrainedModel, faces: Sequence[FaceRecord]) -> EngineRun:
    """The identify path per held-out photo (one labelled face each), timed from the photo's
    bytes to the model's answer (``TrainedModel.identify``: the SVC's label, or "unknown" when
    the open-set score is not above the model's threshold). ``score`` is the SVC's
    probability, ``open_set_score`` the open-set score. The first photo also runs once
    untimed (TensorFlow builds its graphs on first use)."""
    thresholds = []

    def identify(face: FaceRecord) -> tuple[dict, float]:
        data = pipeline.ingest.get(face.photo_key)
        started = time.perf_counter()
        _, analysed = pipeline.analyse_photo(data)
        answers = model.identify(np.stack([item.embedding for item in analysed]))
        seconds = time.perf_counter() - started
        thresholds.append(float(answers.threshold))
        overlaps = [box_overlap(face.box, item.face.box) for item in analysed]
        best = int(np.argmax(overlaps))
        if overlaps[best] < MIN_BOX_OVERLAP:
            raise NoFaceFound(
                f"the enrolled face was not found again (best box overlap {overlaps[best]:.2f})"
            )
        label, open_set = str(answers.labels[best]), float(answers.scores[best])
        return {
            "person": label,
            "score": float(answers.probabilities[best]),
            "open_set_score": open_set if np.isfinite(open_set) else None,
            "accepted": label != OPEN_SET_UNKNOWN,
        }, seconds

    if faces:
        identify(faces[0])
    answers = {}
    for face in faces:
        started = time.perf_counter()
        try:
            answer, seconds = identify(face)
        except FaceRecError as error:
            answer = {
                "person": None,
                "score": None,
                "open_set_score": None,
                "accepted": False,
                "reason": str(error),
            }
            seconds = time.perf_counter() - started
        answers[face.face_id] = {**answer, "seconds": seconds}
    meta = model.metadata
    return EngineRun(
        "facenet",
        FACENET_SCORE,
        DEFAULT_THRESHOLDS,
        answers,
        describe={
            "model_id": model.model_id,
            "classifier": f"{meta['classifier']['kind']} {meta['classifier']['kernel']}, "
            f"C = {meta['classifier']['C']}",
            "embedding": meta["embedding"]["model_id"],
            "crop": meta["crop"]["method"],
            "timed": "per photo: decode, detect, crop, embed, classify, open-set score",
            "open_set_threshold": thresholds[0] if thresholds else None,
            "open_set_score": (meta.get("open_set") or {}).get(
                "score", "none: a model without an open-set part (its probability is used)"
            ),
        },
    )


def run_nearest(model: TrainedModel, faces: Sequence[FaceRecord]) -> EngineRun:
    """The nearest-face engine per held-out face: its stored embedding searched in
    ``model.open_set`` (the training part's faces and their calibrated threshold), timed per
    face. ``person`` is the nearest enrolled face's person, or "unknown" (``accepted`` False)
    when the open-set score (``score``) is not above the threshold: a miss here, since every
    held-out face is of an enrolled person. Not run for a model without an open-set part."""
    if model.open_set is None:
        return EngineRun(
            "nearest",
            NEAREST_SCORE,
            NEAREST_THRESHOLDS,
            reason=f"model {model.model_id} has no open-set gallery (it was trained before the "
            "nearest-face engine); retrain it (`facerec train`) to compare this engine",
        )
    identifier = model.open_set
    calibration = identifier.calibration_

    def search(face: FaceRecord) -> tuple[str, float]:
        labels, scores = identifier.predict_with_score(
            np.asarray(face.embedding, dtype=np.float32)[None, :]
        )
        return str(labels[0]), float(scores[0])

    if faces:
        search(faces[0])  # untimed warm-up, as FaceNet's
    answers = {}
    for face in faces:
        started = time.perf_counter()
        label, score = search(face)
        seconds = time.perf_counter() - started
        if np.isfinite(score):
            answers[face.face_id] = {
                "person": label,
                "score": score,
                "accepted": label != OPEN_SET_UNKNOWN,
                "seconds": seconds,
            }
        else:  # nobody to compare with: no score to threshold
            answers[face.face_id] = {
                "person": None,
                "score": None,
                "accepted": False,
                "reason": "the gallery has no enrolled face to compare with",
                "seconds": seconds,
            }
    gallery = identifier.gallery_
    return EngineRun(
        "nearest",
        NEAREST_SCORE,
        NEAREST_THRESHOLDS,
        answers,
        describe={
            "model_id": model.model_id,
            "gallery": f"the training part: {len(gallery)} faces of {len(gallery.people)} "
            "people (model.open_set)",
            "gallery_faces": len(gallery),
            "people": len(gallery.people),
            "timed": "per face: gallery search of the stored embedding; detection and "
            "embedding as FaceNet's",
            "open_set_threshold": float(calibration.threshold),
            "open_set_score": calibration.score,
            "calibration": calibration.method,
            "far_target": calibration.far_target,
        },
    )


@dataclass(frozen=True)
class RekognitionGallery:
    """The training crops this comparison indexed: FaceId -> person (``people``, the lookup
    RekognitionEngine needs from its table), the crops Rekognition refused (crop key ->
    reason), FaceIds that must never match, and whether the collection was created here."""

    collection_id: str
    face_people: dict[str, str]
    refused: dict[str, str] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()
    created_collection: bool = False

    def people(self, face_ids) -> dict[str, str]:
        return {
            face_id: self.face_people[face_id]
            for face_id in face_ids
            if face_id in self.face_people
        }


def run_rekognition(
    engine: RekognitionEngine,
    read_crop: Callable[[str], bytes],
    faces: Sequence[FaceRecord],
    gallery: RekognitionGallery,
) -> EngineRun:
    """SearchFacesByImage with each held-out crop (``read_crop(crop_key) -> PNG bytes``),
    timed per call. A crop in which Rekognition finds no face is a refusal; a best match that
    is not one of the gallery's FaceIds is an answer with no person."""
    answers = {}
    for face in faces:
        crop = read_crop(face.crop_key)
        started = time.perf_counter()
        answer = engine.identify([crop], gallery.exclude)[0]
        seconds = time.perf_counter() - started
        record = {
            "person": None if answer["person"] == UNKNOWN else answer["person"],
            "score": answer["similarity"],
            "seconds": seconds,
        }
        if "reason" in answer:
            record["reason"] = answer["reason"]
        answers[face.face_id] = record
    return EngineRun(
        "rekognition",
        REKOGNITION_SCORE,
        SIMILARITY_THRESHOLDS,
        answers,
        tuple(
            {"crop_key": key, "reason": reason} for key, reason in sorted(gallery.refused.items())
        ),
        describe={**engine.describe(), "timed": "per face crop: one SearchFacesByImage call"},
    )


def rekognition_unavailable(session) -> str | None:
    """Why Rekognition cannot be asked from this boto3 session, or None."""
    if session.get_credentials() is None:
        return (
            "no AWS credentials found (configure a profile or the AWS_* variables; "
            "`aws sts get-caller-identity` must work)"
        )
    if not session.region_name:
        return "no AWS region configured (set AWS_REGION or a profile's region)"
    return None


def open_collection(client, collection_id: str) -> tuple[FaceCollection, bool]:
    """The collection, created when it does not exist; True when it was created here."""
    try:
        client.describe_collection(CollectionId=collection_id)
        return FaceCollection(client, collection_id), False
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    client.create_collection(CollectionId=collection_id)
    return FaceCollection(client, collection_id), True


def index_gallery(
    collection: FaceCollection,
    faces: Sequence[FaceRecord],
    read_crop: Callable[[str], bytes],
    created: bool = False,
) -> RekognitionGallery:
    """IndexFaces with every training crop; crops Rekognition refuses are recorded with why."""
    people, refused = {}, {}
    for face in faces:
        try:
            indexed = collection.index(read_crop(face.crop_key), external_image_id(face.crop_key))
        except FaceNotIndexed as error:
            refused[face.crop_key] = str(error)
            continue
        people[indexed.face_id] = face.person
    return RekognitionGallery(collection.collection_id, people, refused, frozenset(), created)


def collection_gallery(
    collection_id: str,
    indexed: Mapping[str, str],
    training_faces: Sequence[FaceRecord],
    held_out_faces: Sequence[FaceRecord],
    why_missing: Callable[[str], str],
) -> RekognitionGallery:
    """The gallery of a collection that the enrolment chain filled (every labelled crop was
    indexed as it arrived, the held-out ones too), rather than one indexed for this comparison.

    ``indexed`` maps the collection's FaceIds to their crop keys (``chain.indexed_crops``).
    The training crops' FaceIds are named with their people; the held-out crops' FaceIds are
    excluded from matching, as ``workflow.evaluate_rekognition`` excludes them; a training crop
    missing from the collection is refused with ``why_missing(crop_key)``."""
    people = {face.crop_key: face.person for face in training_faces}
    present = set(indexed.values())
    return RekognitionGallery(
        collection_id,
        {face_id: people[crop] for face_id, crop in indexed.items() if crop in people},
        {
            face.crop_key: why_missing(face.crop_key)
            for face in training_faces
            if face.crop_key not in present
        },
        face_ids_of(indexed, (face.crop_key for face in held_out_faces)),
    )


def prepare_rekognition(
    client,
    collection_id: str,
    training_faces: Sequence[FaceRecord],
    read_crop: Callable[[str], bytes],
) -> tuple[RekognitionEngine | UnavailableEngine, RekognitionGallery | None]:
    """Open (or create) the collection and index the training crops into it. Any AWS error
    makes Rekognition "not run" with the error as the reason (faces indexed before the error
    stay in the collection)."""
    try:
        collection, created = open_collection(client, collection_id)
        gallery = index_gallery(collection, training_faces, read_crop, created)
    except (ClientError, BotoCoreError) as error:
        return UnavailableEngine("rekognition", f"AWS call failed: {error}"), None
    return RekognitionEngine(collection, gallery, 0.0), gallery


def cleanup(collection: FaceCollection, gallery: RekognitionGallery) -> dict:
    """Delete the faces this comparison indexed, and the collection when it created it."""
    deleted = collection.delete(sorted(gallery.face_people))
    if gallery.created_collection:
        collection.client.delete_collection(CollectionId=gallery.collection_id)
    return {"faces_deleted": len(deleted), "collection_deleted": gallery.created_collection}


def seconds_statistics(seconds: Sequence[float]) -> dict:
    """count, mean, std, min, max, p50, p95 of durations in seconds (None values when empty)."""
    values = np.asarray(seconds, dtype=np.float64)
    stats = score_statistics(values)
    empty = len(values) == 0
    stats["p50"] = None if empty else float(np.percentile(values, 50))
    stats["p95"] = None if empty else float(np.percentile(values, 95))
    stats["total"] = float(values.sum())
    return stats


def summarise_engine(run: EngineRun, faces: Sequence[FaceRecord], labels: Sequence[str]) -> dict:
    """A run's figures: ``evaluation`` (evaluate_predictions over the faces it answered; an
    answer with no person counts as "unknown"), accuracy over all held-out faces (refusals are
    misses), refusals with reasons, and durations."""
    summary = {
        "name": run.name,
        "ran": not run.reason,
        "reason": run.reason,
        "score": run.score,
        "describe": run.describe,
        "held_out_faces": len(faces),
    }
    if run.reason:
        return summary
    answered = [face for face in faces if run.answers[face.face_id]["score"] is not None]
    evaluation = evaluate_predictions(
        [face.person for face in answered],
        [run.answers[face.face_id]["person"] or UNKNOWN for face in answered],
        [run.answers[face.face_id]["score"] for face in answered],
        labels,
        run.thresholds,
    )
    refusals = [
        {"stage": "identify", "key": face.crop_key, "reason": run.answers[face.face_id]["reason"]}
        for face in faces
        if run.answers[face.face_id]["score"] is None
    ] + [
        {"stage": "gallery", "key": item["crop_key"], "reason": item["reason"]}
        for item in run.gallery_refusals
    ]
    open_set = {}
    if any("accepted" in run.answers[face.face_id] for face in faces):
        open_set["open_set"] = {
            "unknown": sum(
                run.answers[face.face_id]["person"] == OPEN_SET_UNKNOWN for face in faces
            ),
            "threshold": run.describe.get("open_set_threshold"),
        }
    return {
        **summary,
        **open_set,
        "answered": len(answered),
        "correct": evaluation["correct"],
        "accuracy_all": evaluation["correct"] / len(faces) if faces else None,
        "evaluation": evaluation,
        "refusals": refusals,
        "seconds": seconds_statistics([answer["seconds"] for answer in run.answers.values()]),
    }


def enrolment_refusals(catalog, quarantine: BlobStore) -> list[dict]:
    """Photos the pipeline refused at enrolment (before the split, so for every engine) and
    still not enrolled: ``{"photo_key", "code", "reason"}``."""
    refused = []
    for key in quarantine.keys(""):
        if not key.endswith(".json"):
            continue
        record = json.loads(quarantine.get(key))
        photo = catalog.get_photo(record["key"])
        if photo is None or photo.status != "enrolled":
            refused.append(
                {"photo_key": record["key"], "code": record["code"], "reason": record["reason"]}
            )
    return sorted(refused, key=lambda item: item["photo_key"])


def training_history(models: BlobStore) -> list[dict]:
    """Every model's gallery size and training time, from the metadata in the models store:
    ``{"model_id", "people", "train_faces", "training_seconds"}``, oldest first."""
    history = []
    for key in models.keys(""):
        if key.endswith("/metadata.json"):
            meta = json.loads(models.get(key))
            history.append(
                {
                    "model_id": meta["model_id"],
                    "people": len(meta["labels"]),
                    "train_faces": meta["split"]["train_faces"],
                    "training_seconds": meta["training_seconds"],
                }
            )
    return sorted(history, key=lambda item: item["model_id"])


def stored_routing_threshold(metadata: dict) -> float | None:
    """The routing threshold the training workflow stored in the model's metadata
    (``metadata["routing"]``: a number, or a dict with ``"threshold"``; "-inf" / "inf"
    allowed), or None."""
    routing = metadata.get("routing")
    value = routing.get("threshold") if isinstance(routing, Mapping) else routing
    return None if value is None else float(value)


def hybrid_routing(
    model: TrainedModel,
    faces: Sequence[FaceRecord],
    facenet: EngineRun,
    rekognition: EngineRun | None,
    facenet_seconds: float,
    memory_mb: int = DEFAULT_LAMBDA_MEMORY_MB,
    prices: Prices = PRICES,
    monthly_images: int = HYBRID_MONTHLY_IMAGES,
) -> dict:
    """The hybrid (FaceNet first, Rekognition for the faces ``facerec.routing.route`` sends
    it) replayed on the held-out faces both engines answered, as a JSON-ready dict.

    Ran: ``ran`` True, ``rule``, ``score`` (the open-set score in words), the keys of
    ``routing_curve`` (``faces``, ``always_routed``, ``costs``, ``facenet_alone``,
    ``rekognition_alone``, ``target``, ``best``, ``points``, ``candidates``), ``stored``
    (None, or the model's stored routing threshold as a curve point plus ``metadata``),
    ``monthly_images`` and ``assumptions``. Not run: ``ran`` False and ``reason`` only.

    Costs: FaceNet's per face is one Lambda invocation of ``facenet_seconds`` (the measured
    mean per photo) at ``memory_mb``; a Rekognition call is the average price per image at
    ``monthly_images`` images a month. A FaceNet refusal is routed at every threshold."""
    if rekognition is None:
        return {"ran": False, "reason": "Rekognition was not part of this comparison."}
    if rekognition.reason:
        return {
            "ran": False,
            "reason": f"Rekognition did not run ({rekognition.reason}), so there is nothing to "
            "route to: no hybrid figures.",
        }
    facenet_usd = lambda_cost(1, facenet_seconds, memory_mb, prices)["total"]
    call_usd = rekognition_image_cost(monthly_images, prices) / monthly_images
    facenet_answers = [facenet.answers[face.face_id] for face in faces]
    arguments = (
        [face.person for face in faces],
        [answer["person"] for answer in facenet_answers],
        # The probability stands in when a run has no open-set score (as identify does for a
        # model without an open-set part).
        [answer.get("open_set_score", answer["score"]) for answer in facenet_answers],
        [rekognition.answers[face.face_id]["person"] for face in faces],
        facenet_usd,
        call_usd,
    )
    curve = routing_curve(*arguments)
    stored_threshold = stored_routing_threshold(model.metadata)
    stored = None
    if stored_threshold is not None:
        stored = {
            **routing_curve(*arguments, thresholds=[stored_threshold])["points"][0],
            "metadata": model.metadata["routing"],
        }
    open_set = model.metadata.get("open_set") or {}
    recognition_seconds = np.median(
        [answer["seconds"] for answer in rekognition.answers.values()] or [0.0]
    )
    assumptions = [
        'Rule: a face goes to Rekognition when FaceNet answers "unknown" or its open-set score '
        "is below the routing threshold (facerec.routing.route); otherwise FaceNet's answer is "
        "kept and Rekognition is not called. A FaceNet refusal (the face was not found again) "
        "is always routed.",
        f"Cost model: {COST_MODEL}.",
        f"FaceNet per face: one Lambda invocation of the measured mean {facenet_seconds:.3f} s "
        f"at {memory_mb} MB, {_plain(facenet_usd)} USD.",
        "Rekognition per routed face: one SearchFacesByImage call at the average price per "
        f"image at {monthly_images:,} images a month, {_plain(call_usd)} USD.",
        "Not included: face storage (the hybrid keeps the collection just as Rekognition alone "
        "does), the Lambda time spent waiting for Rekognition's answer (median "
        f"{recognition_seconds:.3f} s measured here), cold starts.",
        "A Rekognition refusal or a match outside the gallery is a miss; accuracy is over all "
        f"{len(faces)} held-out faces.",
        "The best threshold is chosen on these same held-out faces: its accuracy is an "
        "optimistic estimate; judge it on faces it was not chosen on.",
    ]
    return {
        "ran": True,
        "reason": "",
        "rule": "route when FaceNet answers unknown or its open-set score < threshold",
        "score": open_set.get("score", "the SVC's probability (no open-set part)"),
        **curve,
        "stored": stored,
        "monthly_images": monthly_images,
        "assumptions": assumptions,
    }


def _calibration(calibration: Mapping | None) -> dict | None:
    """A calibration from the metadata, JSON-ready (a non-finite threshold as a string)."""
    if calibration is None:
        return None
    result = dict(calibration)
    threshold = result.get("threshold")
    if isinstance(threshold, float) and not np.isfinite(threshold):
        result["threshold"] = str(threshold)
    return result


def assemble(
    model: TrainedModel,
    faces: Sequence[FaceRecord],
    runs: Sequence[EngineRun],
    training_faces: int,
    enrolment: list[dict],
    history: list[dict],
    memory_mb: int = DEFAULT_LAMBDA_MEMORY_MB,
    volumes: Sequence[int] = DEFAULT_VOLUMES,
    prices: Prices = PRICES,
    measured_in: str = MEASURED_LOCALLY,
) -> dict:
    """The comparison as one JSON-ready dict: per face every engine's answer, per engine its
    summary, the model (with its unknown thresholds' calibrations, ``open_set`` and
    ``nearest``, from its metadata), the enrolment refusals, the training history, the cost
    model and the hybrid routing (``hybrid_routing``)."""
    labels = model.metadata["labels"]
    engines = {run.name: summarise_engine(run, faces, labels) for run in runs}
    if not engines.get("facenet", {}).get("ran"):
        raise NotEnoughData("the FaceNet run is missing: it is the reference of every comparison")
    facenet_seconds = engines["facenet"]["seconds"]
    rekognition = engines.get("rekognition", {})
    stored = (
        training_faces
        - len([item for item in rekognition["refusals"] if item["stage"] == "gallery"])
        if rekognition.get("ran")
        else training_faces
    )
    meta = model.metadata
    by_name = {run.name: run for run in runs}
    hybrid = hybrid_routing(
        model,
        faces,
        by_name["facenet"],
        by_name.get("rekognition"),
        facenet_seconds["mean"],
        memory_mb,
        prices,
    )
    return {
        "schema": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "model_id": model.model_id,
            "created_at": meta["created_at"],
            "labels": labels,
            "people": len(labels),
            "train_faces": meta["split"]["train_faces"],
            "test_faces": meta["split"]["test_faces"],
            "test_size": meta["split"]["test_size"],
            "seed": meta["split"]["seed"],
            "training_seconds": meta["training_seconds"],
            "cv": {key: meta["cv"][key] for key in ("folds", "mean", "std")},
            # The unknown thresholds' calibrations (None for a model without an open-set part).
            "open_set": _calibration(meta.get("open_set")),
            "nearest": _calibration(meta.get("nearest")),
        },
        "faces": [
            {
                "photo_key": face.photo_key,
                "face_id": face.face_id,
                "crop_key": face.crop_key,
                "truth": face.person,
                "answers": {run.name: run.answers[face.face_id] for run in runs if not run.reason},
            }
            for face in faces
        ],
        "engines": engines,
        "enrolment_refusals": enrolment,
        "training_history": history,
        "cost": cost_model(
            volumes,
            facenet_seconds["mean"],
            facenet_seconds["p95"],
            memory_mb,
            stored,
            prices,
            measured_in,
        ),
        "hybrid": hybrid,
    }


def compare(
    pipeline,
    model: TrainedModel,
    rekognition: RekognitionEngine | UnavailableEngine,
    gallery: RekognitionGallery | None = None,
    memory_mb: int = DEFAULT_LAMBDA_MEMORY_MB,
    volumes: Sequence[int] = DEFAULT_VOLUMES,
    prices: Prices = PRICES,
    measured_in: str = MEASURED_LOCALLY,
) -> dict:
    """FaceNet, the nearest-face engine (its gallery the model's training part) and
    Rekognition (when available: ``gallery`` is then what its collection holds) on
    ``model``'s held-out faces; see ``assemble`` for the result (``measured_in``: where this
    runs, for the cost model's assumptions)."""
    training, held_out = split_faces(pipeline.labelled_faces(), model)
    runs = [run_facenet(pipeline, model, held_out), run_nearest(model, held_out)]
    if not rekognition.available:
        reason = rekognition.reason
    elif gallery is None:
        reason = "no gallery was indexed for this comparison"
    else:
        try:
            runs.append(run_rekognition(rekognition, pipeline.faces.get, held_out, gallery))
            reason = ""
        except (ClientError, BotoCoreError) as error:
            reason = f"AWS call failed during the search: {error}"
    if reason:
        runs.append(EngineRun("rekognition", REKOGNITION_SCORE, (), reason=reason))
    return assemble(
        model,
        held_out,
        runs,
        len(training),
        enrolment_refusals(pipeline.catalog, pipeline.quarantine),
        training_history(pipeline.models),
        memory_mb,
        volumes,
        prices,
        measured_in,
    )
