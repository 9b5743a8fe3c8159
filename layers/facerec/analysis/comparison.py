"""The comparison report's numbers: every engine's run on the same seeded held-out faces
(flows.evaluate, as the training workflow stored them), what each would cost, and the hybrid
routing replayed on them.

- The runs come from the one evaluation: FaceNet and the nearest face on the held-out faces'
  stored embeddings (the model's training part as the gallery), Rekognition on their crops
  in a collection whose held-out FaceIds never match. When Rekognition could not run (no
  credentials, no collection) its run says why; it is never simulated.
  The training workflow searches Rekognition for a seeded sample of the held-out faces
  only (its run's ``describe["sample"]``); its figures and the hybrid's are over that sample.
- FaceNet's identify path (decode, detect, crop, embed, classify) is timed per held-out
  photo (``time_identify``; at most ``max_photos``, a seeded sample) for the cost model,
  which puts Rekognition's tiered price per image and its face storage against the Lambda
  cost of that path.
- When both ran, the hybrid (FaceNet first, Rekognition for the faces FaceNet is not sure
  of) is replayed on the faces both were asked about for every routing threshold.

``compare`` returns one JSON-ready dict; ``facerec.analysis.report`` turns it into HTML.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from facerec.core.costs import (
    DEFAULT_LAMBDA_MEMORY_MB,
    HYBRID_MONTHLY_IMAGES,
    PRICES,
    Prices,
    hybrid_costs,
    lambda_cost,
    plain_usd,
    rekognition_image_cost,
)
from facerec.core.errors import FaceRecError, NotEnoughData
from facerec.core.records import FaceRecord
from facerec.engines.base import Engine
from facerec.engines.facenet import TrainedModel
from facerec.engines.hybrid import COST_MODEL, stored_threshold
from facerec.engines.rekognition import RekognitionEngine
from facerec.flows.evaluate import (
    EngineRun,
    HeldOutFace,
    hybrid_curve,
    run_engine,
    sample_faces,
    seconds_statistics,
    summarise,
)
from facerec.flows.train import gather, held_out
from facerec.storage.ports import BlobStore, Stores
from facerec.storage.rekognition import RekognitionGallery, index_gallery, open_collection
from facerec.vision.analyser import FaceAnalyser

SCHEMA_VERSION = 1
# Images a month: the thesis's price tiers and one volume past the last boundary.
DEFAULT_VOLUMES = (1_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000)
SECONDS_PER_MONTH = 30 * 24 * 3600
MEASURED_LOCALLY = "this process on this machine, not in Lambda"


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
        f"{plain_usd(prices.face_storage_month)} USD per face per month, whatever the volume.",
        "Rekognition searches the largest face of an image only: a photo with several faces "
        "costs one call per face (one face per photo is assumed here).",
        f"FaceNet path: one Lambda invocation per photo at {memory_mb} MB lasting the measured "
        f"mean of {seconds_per_photo:.3f} s (p95 {p95_seconds:.3f} s): decode, detect, crop, "
        f"embed, classify. Measured in {measured_in}, after one untimed warm-up call; cold "
        "starts (loading TensorFlow and the models) not included.",
        f"Lambda (x86): {plain_usd(prices.lambda_gb_second)} USD per GB-second with "
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


def run_rekognition(
    client,
    collection_id: str,
    training_faces: Sequence[FaceRecord],
    faces: Sequence[HeldOutFace],
    read_crop: Callable[[str], bytes],
) -> tuple[EngineRun, RekognitionGallery | None]:
    """Open (or create) the collection, index the training crops into it and run Rekognition
    on the held-out crops (closed set, as FaceNet: min similarity 0). Any AWS error makes the
    run "not run" with the error as the reason (faces indexed before it stay indexed; the
    gallery, when there is one, says what to clean up)."""
    gallery = None
    try:
        collection, created = open_collection(client, collection_id)
        gallery = index_gallery(collection, training_faces, read_crop, created)
        engine = RekognitionEngine(collection, gallery, 0.0, gallery.exclude)
        refused = [{"crop_key": key, "reason": why} for key, why in sorted(gallery.refused.items())]
        return run_engine(engine, faces, refused), gallery
    except (ClientError, BotoCoreError) as error:
        return EngineRun("rekognition", reason=f"AWS call failed: {error}"), gallery


def enrolment_refusals(catalog, quarantine: BlobStore) -> list[dict]:
    """Photos enrolment refused (before the split, so for every engine) and
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


def hybrid_routing(
    model: TrainedModel,
    faces: Sequence[HeldOutFace],
    facenet: EngineRun,
    rekognition: EngineRun | None,
    facenet_seconds: float,
    memory_mb: int = DEFAULT_LAMBDA_MEMORY_MB,
    prices: Prices = PRICES,
    monthly_images: int = HYBRID_MONTHLY_IMAGES,
) -> dict:
    """The hybrid (FaceNet first, Rekognition for the faces ``facerec.engines.hybrid.route`` sends
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
    facenet_usd, call_usd = hybrid_costs(facenet_seconds, memory_mb, monthly_images, prices)
    curve = hybrid_curve(facenet, rekognition, faces, facenet_usd, call_usd)
    threshold = stored_threshold(model.metadata)
    stored = None
    if threshold is not None:
        point = hybrid_curve(
            facenet, rekognition, faces, facenet_usd, call_usd, thresholds=[threshold]
        )["points"][0]
        stored = {**point, "metadata": model.metadata["routing"]}
    open_set = model.metadata.get("open_set") or {}
    recognition_seconds = np.median(
        [answer["seconds"] for answer in rekognition.answers.values()] or [0.0]
    )
    assumptions = [
        'Rule: a face goes to Rekognition when FaceNet answers "unknown" or its open-set score '
        "is below the routing threshold (facerec.engines.hybrid.route); otherwise FaceNet's "
        "answer is kept and Rekognition is not called. A FaceNet refusal is always routed.",
        f"Cost model: {COST_MODEL}.",
        f"FaceNet per face: one Lambda invocation of the measured mean {facenet_seconds:.3f} s "
        f"at {memory_mb} MB, {plain_usd(facenet_usd)} USD.",
        "Rekognition per routed face: one SearchFacesByImage call at the average price per "
        f"image at {monthly_images:,} images a month, {plain_usd(call_usd)} USD.",
        "Not included: face storage (the hybrid keeps the collection just as Rekognition alone "
        "does), the Lambda time spent waiting for Rekognition's answer (median "
        f"{recognition_seconds:.3f} s measured here), cold starts.",
        "A Rekognition refusal or a match outside the gallery is a miss; accuracy is over "
        + rekognition.describe.get("sample", {}).get("about", f"all {len(faces)} held-out faces")
        + ", the faces Rekognition was asked about.",
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


def time_identify(analyser: FaceAnalyser, engine: Engine, photos: Sequence[bytes]) -> list[float]:
    """Seconds per photo of the identify path (decode, detect, crop, embed, the engine's
    answer). The first usable photo runs once untimed first (TensorFlow builds its graphs on
    first use); photos that cannot be used are left out."""
    timings, warm = [], False

    def identify(data: bytes) -> None:
        engine.identify(analyser.analyse_photo(data)[1])

    for data in photos:
        try:
            if not warm:
                identify(data)
                warm = True
            started = time.perf_counter()
            identify(data)
        except FaceRecError:
            continue
        timings.append(time.perf_counter() - started)
    return timings


def compare(
    stores: Stores,
    model: TrainedModel,
    faces: Sequence[HeldOutFace],
    training_faces: int,
    runs: Mapping[str, EngineRun],
    identify_seconds: Sequence[float],
    memory_mb: int = DEFAULT_LAMBDA_MEMORY_MB,
    volumes: Sequence[int] = DEFAULT_VOLUMES,
    prices: Prices = PRICES,
    measured_in: str = MEASURED_LOCALLY,
    timed_on: Mapping | None = None,
) -> dict:
    """The comparison as one JSON-ready dict: per held-out face every engine's answer (of
    the engines asked about it), per engine its summary (flows.evaluate.summarise; FaceNet's
    durations are those of its whole identify path, ``identify_seconds``), the model (with
    its unknown thresholds' calibrations), the enrolment refusals, the training history, the
    cost model and the hybrid routing. ``runs`` must hold FaceNet's; ``measured_in``: where
    the identify path was timed, in words; ``timed_on``: the photos of which faces
    (flows.evaluate.sample_faces' description; None: every held-out face's)."""
    if "facenet" not in runs or runs["facenet"].reason:
        raise NotEnoughData("the FaceNet run is missing: it is the reference of every comparison")
    meta = model.metadata
    labels = meta["labels"]
    engines = {name: summarise(run, faces, labels) for name, run in runs.items()}
    seconds = seconds_statistics(identify_seconds)
    engines["facenet"]["seconds"] = seconds
    engines["facenet"]["describe"]["timed"] = (
        "per photo: decode, detect, crop, embed, classify, open-set score"
        + (f"; on the photos of {timed_on['about']}" if timed_on else "")
    )
    engines["facenet"]["describe"]["timed_on"] = dict(timed_on) if timed_on else None
    rekognition = engines.get("rekognition", {})
    refused = [item for item in rekognition.get("refusals", []) if item["stage"] == "gallery"]
    hybrid = hybrid_routing(
        model,
        faces,
        runs["facenet"],
        runs.get("rekognition"),
        seconds["mean"] or 0.0,
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
                "truth": face.truth,
                "answers": {
                    name: run.answers[face.face_id]
                    for name, run in runs.items()
                    if face.face_id in run.answers
                },
            }
            for face in faces
        ],
        "engines": engines,
        "enrolment_refusals": enrolment_refusals(stores.catalog, stores.quarantine),
        "training_history": training_history(stores.models),
        "cost": cost_model(
            volumes,
            seconds["mean"] or 0.0,
            seconds["p95"] or 0.0,
            memory_mb,
            training_faces - len(refused) if rekognition.get("ran") else training_faces,
            prices,
            measured_in,
        ),
        "hybrid": hybrid,
    }


def compare_model(
    stores: Stores,
    analyser: FaceAnalyser,
    facenet: Engine,
    model: TrainedModel,
    runs: Mapping[str, EngineRun],
    memory_mb: int = DEFAULT_LAMBDA_MEMORY_MB,
    volumes: Sequence[int] = DEFAULT_VOLUMES,
    measured_in: str = MEASURED_LOCALLY,
    max_photos: int | None = None,
) -> dict:
    """``compare`` for the model's held-out faces in ``stores``: FaceNet's identify path is
    timed here (``facenet``, the engine identify answers with) on the photos of at most
    ``max_photos`` held-out faces (None: all), a sample seeded by the model's split seed."""
    training_set = gather(stores.catalog, analyser.settings.crop_method)
    training, faces = held_out(model, training_set, stores.faces.get)
    timed, sample = sample_faces(faces, max_photos, model.metadata["split"]["seed"])
    photos = []
    for face in timed:
        try:
            photos.append(stores.ingest.get(face.photo_key))
        except FileNotFoundError:
            continue
    seconds = time_identify(analyser, facenet, photos)
    return compare(
        stores,
        model,
        faces,
        len(training),
        runs,
        seconds,
        memory_mb,
        volumes,
        PRICES,
        measured_in,
        sample,
    )
