"""Benchmark of the FaceNet engine: stage timings, ingest throughput, identify latency, start-up,
peak RSS, accuracy on the sample set and, when present, on LFW dev-train (both crop methods).

Prints every figure beside its target and writes ``results.json`` and ``RESULTS.md``. Not a test:
it never fails on slowness. Run ``.venv/bin/python bench/run.py [--quick] [--lfw PATH]``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

from facerec.core.settings import CROP_METHODS, EMBEDDING_SIZE, AnalysisSettings, TrainOptions
from facerec.engines.classifier import FaceClassifier, cross_validate, holdout_split
from facerec.engines.facenet import library_versions
from facerec.flows.enrol import read_labelled_folder as _read_labelled_folder
from facerec.flows.identify import identify_photo
from facerec.interfaces.local import LocalDeployment
from facerec.vision.alignment import crop
from facerec.vision.analyser import FaceAnalyser, build_analyser
from facerec.vision.assets import AssetPaths
from facerec.vision.detection import select_labelled_face
from facerec.vision.images import decode_image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw-devtrain"
PHOTO_SIDE = 250  # LFW's original photo size: the detection target is stated for it
LFW_INGEST_PHOTOS = 1000
LFW_MIN_PHOTOS = 5
FAR_TARGET = 1e-3
SPEED, MEMORY, SAMPLE, LFW = "Speed", "Memory", "Accuracy: sample set", "LFW dev-train"
MISSED_SAME, MISSED_DIFFERENT = -2.0, 2.0  # cosine scores that make a pair with no face a miss


@dataclass(frozen=True)
class Figure:
    """One measured figure; ``target`` like "<= 80", ``met`` None when there is no target."""

    group: str
    name: str
    value: float | int | str
    unit: str = ""
    target: str = ""
    met: bool | None = None


class Report:
    """Collects figures (printed as they come), details and skipped parts."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.details: dict = {}
        self.skipped: list[str] = []

    def add(
        self,
        group: str,
        name: str,
        value: float | int | str,
        unit: str = "",
        target: tuple[str, float] | None = None,
    ) -> None:
        """Record a figure; ``target`` is (">=" or "<=", bound)."""
        if isinstance(value, float | np.floating):
            value = rounded(float(value), unit)
        met, bound = None, ""
        if target is not None:
            op, limit = target
            met = bool(value <= limit) if op == "<=" else bool(value >= limit)
            bound = f"{op} {limit:g}"
        figure = Figure(group, name, value, unit, bound, met)
        self.figures.append(figure)
        verdict = {None: "", True: "met", False: "MISSED"}[met]
        print(f"  {name:<66} {shown(value):>8} {unit:<8} {bound:<9} {verdict}", flush=True)

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)
        print(f"skipped: {reason}", flush=True)


def rounded(value: float, unit: str) -> float:
    """Ratios (no unit) to 4 decimals; measurements to 3 significant digits (integers from 1000)."""
    if not unit:
        return round(value, 4)
    return float(round(value)) if abs(value) >= 1000 else float(f"{value:.3g}")


def shown(value: float | int | str) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def timed(function: Callable[[], object], repeats: int, warmup: int = 2) -> np.ndarray:
    """Call ``function`` ``warmup`` times untimed, then ``repeats`` times -> seconds (repeats,)."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return np.array(seconds)


def add_latency(
    report: Report,
    name: str,
    seconds: np.ndarray,
    per: int = 1,
    median_target: float | None = None,
) -> None:
    """Speed figures: median and p95 in ms (divided by ``per`` items per call); the target
    applies to the median."""
    median, p95 = np.median(seconds) * 1000 / per, np.percentile(seconds, 95) * 1000 / per
    target = ("<=", median_target) if median_target is not None else None
    report.add(SPEED, f"{name}: median", median, "ms", target)
    report.add(SPEED, f"{name}: p95 ({len(seconds)} runs)", p95, "ms")


def read_labelled_folder(root: Path):
    """The package's LFW-layout reader; anything outside a person folder is reported."""
    return _read_labelled_folder(root, lambda path, reason: print(f"  skipped {path}: {reason}"))


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- speed ----------------------------------------------------------------------------------


def load_analyser(report: Report, weights: Path, settings: AnalysisSettings) -> FaceAnalyser:
    section("models")
    started = time.perf_counter()
    analyser = build_analyser(weights, settings)
    report.add(
        SPEED,
        "load MTCNN + FaceNet (incl. TensorFlow import)",
        time.perf_counter() - started,
        "s",
    )
    return analyser


def square_photos(sample_set: Path) -> list[np.ndarray]:
    """The sample set's val photos, centre-cropped square and resized: uint8 (250, 250, 3) each."""
    return [
        np.asarray(
            ImageOps.fit(
                Image.fromarray(decode_image(path.read_bytes())),
                (PHOTO_SIDE, PHOTO_SIDE),
                Image.Resampling.BILINEAR,
            )
        )
        for path in sorted((sample_set / "val").glob("*/*.jpg"))
    ]


def one_face_jpeg(photos: list[np.ndarray], analyser: FaceAnalyser) -> bytes:
    """JPEG bytes (quality 95) of the first photo in which MTCNN finds exactly one face."""
    for photo in photos:
        if len(analyser.detector.detect(photo)) == 1:
            buffer = io.BytesIO()
            Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
            return buffer.getvalue()
    raise RuntimeError("no photo with exactly one face among the sample set's val photos")


def bench_stages(
    report: Report, analyser: FaceAnalyser, photo: bytes, others: list[np.ndarray]
) -> None:
    """Per-stage time for the one-face 250x250 ``photo``; detection per photo in batches of
    ``others`` (distinct photos of that size); embedding throughput at batch 1 and 32."""
    section(f"stages, one {PHOTO_SIDE}x{PHOTO_SIDE} photo with one face")
    settings, detector, embedder = analyser.settings, analyser.detector, analyser.embedder
    image = decode_image(photo)
    face = detector.detect(image)[0]
    add_latency(report, "decode (JPEG -> RGB)", timed(lambda: decode_image(photo), 100))
    add_latency(
        report,
        "detect, one photo per call",
        timed(lambda: detector.detect(image), 30),
        median_target=80,
    )
    batch = others[: detector.settings.batch_size]
    add_latency(
        report,
        f"detect, per photo in batches of {len(batch)} distinct photos",
        timed(lambda: detector.detect_batch(batch), 8),
        per=len(batch),
    )
    for method in CROP_METHODS:
        add_latency(
            report,
            f"crop '{method}'",
            timed(lambda m=method: crop(image, face, m, settings.margin, settings.crop_size), 200),
        )
    crops = np.stack(
        [crop(image, face, settings.crop_method, settings.margin, settings.crop_size)] * 32
    )
    for size, repeats, target in ((1, 50, None), (32, 12, 100)):
        seconds = timed(lambda n=size: embedder.embed(crops[:n]), repeats)
        add_latency(report, f"embed batch {size}, per face", seconds, per=size)
        report.add(
            SPEED,
            f"embed batch {size}: faces/s (median call)",
            size / np.median(seconds),
            "faces/s",
            (">=", target) if target else None,
        )


# ---- sample set: ingest, train, evaluate, identify ------------------------------------------


def enrol_timed(
    report: Report, local: LocalDeployment, items, label: str, target: float | None
) -> None:
    """Enrol ``items`` (an iterable read lazily, as the CLI does); report photos/s and outcomes."""
    started = time.perf_counter()
    outcomes = local.enrol(items)
    elapsed = time.perf_counter() - started
    statuses = Counter(outcome.status for outcome in outcomes)
    report.add(SPEED, f"ingest {label}: photos", len(outcomes))
    report.add(
        SPEED,
        f"ingest {label}: throughput",
        len(outcomes) / elapsed,
        "photos/s",
        (">=", target) if target else None,
    )
    report.details[f"ingest {label}"] = {"seconds": round(elapsed, 2), "statuses": dict(statuses)}
    print(f"  outcomes: {dict(statuses)}")


def bench_sample_set(
    report: Report, analyser: FaceAnalyser, assets: AssetPaths, workspace: Path
) -> LocalDeployment:
    """Enrol train/, train on all of it, evaluate on val/; returns the trained deployment."""
    section("sample set: ingest train/, train on all, evaluate on val/")
    local = LocalDeployment(workspace, analyser)
    enrol_timed(
        report,
        local,
        read_labelled_folder(assets.sample_set / "train"),
        "sample set train/",
        None,
    )
    started = time.perf_counter()
    model, _ = local.train(TrainOptions(test_size=0.0))
    report.add(
        SPEED, "train SVC (sample set, CV + calibration)", time.perf_counter() - started, "s"
    )
    cv = model.metadata["cv"]
    report.add(SAMPLE, f"sample set: {cv['folds']}-fold CV on train/", cv["mean"])
    evaluation = local.evaluate_photos(read_labelled_folder(assets.sample_set / "val"))
    photos = evaluation["photos"]
    report.add(
        SAMPLE,
        f"sample set: val correct of {photos} photos",
        evaluation["correct"],
        target=(">=", photos),
    )
    misses = [
        f"{error['truth']} taken for {error['predicted']} (p = {error['score']:.3f})"
        for error in evaluation["errors"]
    ]
    misses += [
        f"{item['photo']}: {item['code']}: {item['reason']}" for item in evaluation["refused"]
    ]
    report.details["sample set val misses"] = misses
    for miss in misses:
        print(f"  miss: {miss}")
    return local


def bench_identify(report: Report, local: LocalDeployment, photo: bytes) -> None:
    section("warm identify, one-face photo")

    def identify() -> dict:
        return identify_photo(local.analyser, local.engines, ("facenet",), photo)

    answer = identify()
    seconds = timed(identify, 40, warmup=3)
    add_latency(report, "identify (warm, in process)", seconds, median_target=150)
    report.details["identify answer"] = answer["faces"]
    print(f"  answer: {[face['facenet'] for face in answer['faces']]}")


def bench_lfw_ingest(report: Report, analyser: FaceAnalyser, workspace: Path, lfw: Path) -> None:
    section(f"ingest the first {LFW_INGEST_PHOTOS} LFW photos (sorted paths) into a new workspace")
    local = LocalDeployment(workspace, analyser)
    items = itertools.islice(read_labelled_folder(lfw / "images"), LFW_INGEST_PHOTOS)
    enrol_timed(report, local, items, f"{LFW_INGEST_PHOTOS} LFW", 40)


def vm_hwm_mib(pid: int) -> float:
    """A live process's peak RSS (VmHWM), MiB; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0")
    return int(line.split()[1]) / 1024


def run_watched(command: list[str]) -> tuple[float, float, str]:
    """Run ``command`` -> (wall seconds, peak RSS MiB, stdout). The peak is VmHWM polled every
    20 ms: getrusage's RUSAGE_CHILDREN is useless here, as a child spawned by this large
    process inherits its peak RSS through fork and exec."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        peak = 0.0
        while True:
            peak = max(peak, vm_hwm_mib(process.pid))
            try:
                process.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                continue
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{err.read()}")
        return seconds, peak, out.read()


def bench_startup(
    report: Report, workspace: Path, cache_dir: Path, photo: Path, crop_method: str
) -> None:
    """A fresh ``facerec identify PHOTO`` process: wall time to its answer and its peak RSS."""
    section("process start to first answer: `facerec identify PHOTO` in a new process")
    command = [str(Path(sys.executable).with_name("facerec")), "--workspace", str(workspace)]
    command += ["--cache-dir", str(cache_dir), "--crop", crop_method, "identify", str(photo)]
    runs = [run_watched(command) for _ in range(3)]
    print(f"  answer: {runs[-1][2].strip()}")
    seconds = [run[0] for run in runs]
    report.add(SPEED, "start to first answer: median of 3 runs", float(np.median(seconds)), "s")
    report.details["start to first answer runs (s)"] = [round(value, 2) for value in seconds]
    peak = max(run[1] for run in runs)
    report.add(MEMORY, "peak RSS, `facerec identify` process", peak, "MiB", ("<=", 2048))


# ---- LFW dev-train --------------------------------------------------------------------------


def lfw_photo(lfw: Path, name: str, number: str) -> Path:
    return lfw / "images" / name / f"{name}_{int(number):04d}.jpg"


def read_pairs(lfw: Path) -> tuple[list[tuple[Path, Path]], np.ndarray]:
    """pairsDevTrain.txt -> (pairs of photo paths, same-person flags bool (P,))."""
    lines = (lfw / "pairsDevTrain.txt").read_text().split("\n")
    count = int(lines[0].split()[0])
    pairs, same = [], []
    for line in filter(None, (line.split() for line in lines[1:])):
        if len(line) == 3:
            pairs.append((lfw_photo(lfw, line[0], line[1]), lfw_photo(lfw, line[0], line[2])))
        else:
            pairs.append((lfw_photo(lfw, line[0], line[1]), lfw_photo(lfw, line[2], line[3])))
        same.append(len(line) == 3)
    if sum(same) != count or len(same) != 2 * count:
        raise ValueError(f"pairsDevTrain.txt announces {count} + {count} pairs, holds {len(same)}")
    return pairs, np.array(same)


def people_with(lfw: Path, minimum: int) -> list[tuple[str, Path]]:
    """(person, photo) for every photo of the people with at least ``minimum`` photos."""
    rows = []
    for folder in sorted((lfw / "images").iterdir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= minimum:
            rows += [(folder.name, photo) for photo in photos]
    return rows


def labelled_face_embeddings(
    analyser: FaceAnalyser, paths: Sequence[Path], flipped: bool = False, chunk: int = 512
) -> tuple[dict[str, np.ndarray], np.ndarray, Counter]:
    """Detect once, then crop the labelled (most central) face both ways and embed it (and,
    when ``flipped``, its mirror image too, as ``"<method>_flip"``).

    Returns {variant: float32 (N, 128)} (zero rows where no face), a found mask (N,) and
    the seconds spent per stage."""
    settings, detector, embedder = analyser.settings, analyser.detector, analyser.embedder
    variants = [f"{m}{suffix}" for m in CROP_METHODS for suffix in ("", "_flip")[: 1 + flipped]]
    embeddings = {name: np.zeros((len(paths), EMBEDDING_SIZE), np.float32) for name in variants}
    found = np.zeros(len(paths), bool)
    spent = Counter()
    no_references = np.zeros((0, EMBEDDING_SIZE), np.float32)
    for start in range(0, len(paths), chunk):
        images = [decode_image(path.read_bytes()) for path in paths[start : start + chunk]]
        began = time.perf_counter()
        detections = detector.detect_batch(images)
        spent["detect"] += time.perf_counter() - began
        labelled = {}
        for offset, (image, faces) in enumerate(zip(images, detections, strict=True)):
            if faces:
                # No references: the choice is the most central, confident, large face; the
                # embeddings argument is then unused, so a placeholder of the right shape is passed.
                index, _ = select_labelled_face(
                    faces, np.zeros((len(faces), EMBEDDING_SIZE)), no_references, image.shape
                )
                labelled[offset] = faces[index]
        if not labelled:
            continue
        rows = np.array(sorted(labelled), dtype=int)
        found[start + rows] = True
        for method in CROP_METHODS:
            crops = np.stack(
                [
                    crop(images[i], labelled[i], method, settings.margin, settings.crop_size)
                    for i in rows
                ]
            )
            began = time.perf_counter()
            embeddings[method][start + rows] = embedder.embed(crops)
            spent[f"embed {method}"] += time.perf_counter() - began
            if flipped:
                embeddings[f"{method}_flip"][start + rows] = embedder.embed(crops[:, :, ::-1])
        print(f"  {min(start + chunk, len(paths))}/{len(paths)} photos", flush=True)
    return embeddings, found, spent


def embed_labelled_faces(
    report: Report, analyser: FaceAnalyser, paths: Sequence[Path]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """labelled_face_embeddings, with its counts and speeds recorded in ``report``."""
    embeddings, found, spent = labelled_face_embeddings(analyser, paths)
    report.add(LFW, "photos embedded (pairs + identification set)", len(paths))
    report.add(LFW, "photos with no face found", int((~found).sum()))
    report.add(
        SPEED,
        "LFW 150x150 detect, per photo (batches of 16)",
        spent["detect"] * 1000 / len(paths),
        "ms",
    )
    for method in CROP_METHODS:
        report.add(
            SPEED,
            f"LFW embed '{method}' (batches of 32)",
            found.sum() / spent[f"embed {method}"],
            "faces/s",
        )
    report.details["lfw photos with no face"] = [
        str(path.relative_to(path.parents[2]))
        for path, ok in zip(paths, found, strict=True)
        if not ok
    ]
    return embeddings, found


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The cosine threshold (same when score >= t) with the best accuracy on these pairs."""
    candidates = np.unique(scores)
    accuracy = ((scores[None, :] >= candidates[:, None]) == same[None, :]).mean(axis=1)
    return float(candidates[np.argmax(accuracy)])


def verification(scores: np.ndarray, same: np.ndarray, seed: int) -> dict:
    """10-fold accuracy (threshold chosen on 9 folds, tested on the 10th), ROC AUC, TAR@FAR."""
    folds = StratifiedKFold(10, shuffle=True, random_state=seed)
    accuracies, thresholds = [], []
    for train, test in folds.split(scores, same):
        threshold = best_threshold(scores[train], same[train])
        thresholds.append(threshold)
        accuracies.append(float(((scores[test] >= threshold) == same[test]).mean()))
    false_accepts, true_accepts, _ = roc_curve(same, scores)
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "threshold_mean": float(np.mean(thresholds)),
        "auc": float(roc_auc_score(same, scores)),
        "tar_at_far": float(true_accepts[false_accepts <= FAR_TARGET].max()),
    }


def identification(X: np.ndarray, found: np.ndarray, people: np.ndarray, seed: int) -> dict:
    """Seeded stratified 75/25 split of all photos; SVC (C=10) top-1 on the 25 %, where photos
    with no face count as misses; cross-validation on the 75 % photos with a face."""
    train, test = holdout_split(people, 0.25, seed)
    train, tested = train[found[train]], test[found[test]]
    classifier = FaceClassifier(C=10.0, random_state=seed).fit(X[train], people[train])
    correct = int((classifier.predict(X[tested]) == people[tested]).sum())
    cv = cross_validate(X[train], people[train], 10.0, seed)
    return {"test_photos": len(test), "correct": correct, "top1": correct / len(test), "cv": cv}


def bench_lfw_accuracy(report: Report, analyser: FaceAnalyser, lfw: Path, seed: int) -> None:
    section(f"LFW dev-train accuracy ({lfw}), crop methods {CROP_METHODS}")
    pairs, same = read_pairs(lfw)
    gallery = people_with(lfw, LFW_MIN_PHOTOS)
    paths = sorted({path for pair in pairs for path in pair} | {path for _, path in gallery})
    index = {path: i for i, path in enumerate(paths)}
    embeddings, found = embed_labelled_faces(report, analyser, paths)
    left, right = (np.array([index[pair[k]] for pair in pairs]) for k in (0, 1))
    pair_found = found[left] & found[right]
    people = np.array([person for person, _ in gallery])
    rows = np.array([index[path] for _, path in gallery])
    report.add(
        LFW,
        f"pairs with a photo with no face (counted as misses) of {len(pairs)}",
        int((~pair_found).sum()),
    )
    report.add(LFW, f"identification set: people with >= {LFW_MIN_PHOTOS} photos", len(set(people)))
    report.add(LFW, "identification set: photos", len(people))
    results = {}
    for method in CROP_METHODS:
        vectors = embeddings[method]
        scores = np.einsum("ij,ij->i", vectors[left], vectors[right])
        scores = np.where(pair_found, scores, np.where(same, MISSED_SAME, MISSED_DIFFERENT))
        verified = verification(scores, same, seed)
        identified = identification(vectors[rows], found[rows], people, seed)
        results[method] = {"verification": verified, "identification": identified}
        group = f"{LFW}, crop '{method}'"
        section(group)
        report.add(
            group,
            "verification accuracy (10-fold threshold)",
            verified["accuracy"],
            target=(">=", 0.985),
        )
        report.add(group, "verification accuracy std over folds", verified["accuracy_std"])
        report.add(group, "verification ROC AUC", verified["auc"])
        report.add(group, f"verification TAR at FAR = {FAR_TARGET:g}", verified["tar_at_far"])
        report.add(
            group,
            f"identification top-1 on 25 % ({identified['test_photos']} photos)",
            identified["top1"],
            target=(">=", 0.99),
        )
        cv = identified["cv"]
        folds = f"{cv['folds']}-fold" + (" (smallest class)" if cv["folds"] < 10 else "")
        report.add(group, f"identification {folds} CV on 75 %", cv["mean"])
    report.details["lfw"] = results
    better = max(
        CROP_METHODS,
        key=lambda m: (
            results[m]["verification"]["accuracy"],
            results[m]["identification"]["top1"],
        ),
    )
    report.add(LFW, "better crop method (by verification accuracy, then top-1)", better)


# ---- results --------------------------------------------------------------------------------


def machine() -> dict:
    """Date, cores, CPU model, memory, load average and library versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory, 1),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "libraries": library_versions(),
    }


METHOD_NOTES = [
    "",
    "## How the figures are measured",
    "",
    f"- Stages: one sample-set val photo centre-cropped and resized to {PHOTO_SIDE}x{PHOTO_SIDE} "
    "(JPEG, one face), after warm-up calls; batched detection on 16 such distinct photos; "
    "embedding of 1 and 32 crops.",
    "- Ingest: `LocalDeployment.enrol` into a fresh workspace, photos read lazily as the CLI does "
    "(detection batches only photos of identical shape: sample-set sizes vary, LFW's do not).",
    "- Identify: the FaceNet engine of `facerec.flows.identify.identify_photo` on that photo "
    "with a model trained on the sample set's train part; start-up: `facerec identify PHOTO` "
    "as a new process, peak RSS its VmHWM.",
    "- LFW: each photo detected once; the labelled face is the most central one "
    "(`select_labelled_face` without references), cropped both ways and embedded. Verification: "
    "cosine similarity, 10 stratified folds, threshold chosen on 9 and tested on the 10th; a pair "
    "with a photo where no face was found always counts as wrong. Identification: seeded "
    "stratified 75/25 split (`holdout_split`), `FaceClassifier` C = 10, photos with no face count "
    "as misses; cross-validation by `classifier.cross_validate`.",
]


def render_markdown(results: dict) -> str:
    """results.json as RESULTS.md: the context, then one table per figure group."""
    meta = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"`{results['command']}`, {meta['date']}. "
        f"Default crop method: **{results['crop_method']}**.",
        "",
        f"- Machine: {meta['cores']} cores, {meta['cpu']}, {meta['memory_gib']} GiB, "
        f"{meta['platform']}",
        f"- Load average (1, 5, 15 min) at start: {meta['load_average_1_5_15']}; "
        f"at end: {results['load_average_at_end']} (other work on the machine makes timings noisy)",
        "- Versions: "
        + ", ".join(f"{name} {version}" for name, version in meta["libraries"].items()),
        f"- Total benchmark time: {results['seconds']:.0f} s",
    ]
    for reason in results["skipped"]:
        lines.append(f"- Skipped: {reason}")
    groups: dict[str, list[dict]] = {}
    for figure in results["figures"]:
        groups.setdefault(figure["group"], []).append(figure)
    for group, figures in groups.items():
        lines += ["", f"## {group}", "", "| figure | value | target | met? |", "|---|---|---|---|"]
        for figure in figures:
            met = {None: "", True: "yes", False: "**no**"}[figure["met"]]
            value = f"{shown(figure['value'])} {figure['unit']}".strip()
            lines.append(f"| {figure['name']} | {value} | {figure['target']} | {met} |")
    misses = results["details"].get("sample set val misses", [])
    lines += ["", "## Sample set val misses", ""] + ([f"- {miss}" for miss in misses] or ["None."])
    no_face = results["details"].get("lfw photos with no face")
    if no_face is not None:
        lines += ["", "## LFW photos where MTCNN found no face", ""] + (
            [f"- {path}" for path in no_face] or ["None."]
        )
    return "\n".join(lines + METHOD_NOTES) + "\n"


def write_results(
    report: Report, out: Path, command: str, crop_method: str, meta: dict, started: float
) -> None:
    results = {
        "command": command,
        "crop_method": crop_method,
        "machine": meta,
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
        "figures": [asdict(figure) for figure in report.figures],
        "details": report.details,
        "skipped": report.skipped,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / "RESULTS.md").write_text(render_markdown(results))
    print(f"\nwritten: {out / 'results.json'}, {out / 'RESULTS.md'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sample set only, skip LFW")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW dev-train folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench", help="results folder")
    parser.add_argument(
        "--cache-dir", type=Path, default=REPO_ROOT / ".cache", help="`make setup` cache"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started, meta = time.perf_counter(), machine()
    report, settings, assets = Report(), AnalysisSettings(), AssetPaths(args.cache_dir)
    lfw = None
    if args.quick:
        report.skip("LFW (--quick)")
    elif not (args.lfw / "pairsDevTrain.txt").is_file():
        report.skip(f"LFW: {args.lfw / 'pairsDevTrain.txt'} not found")
    else:
        lfw = args.lfw.resolve()
    with tempfile.TemporaryDirectory(prefix="facerec-bench-") as tmp:
        work = Path(tmp)
        analyser = load_analyser(report, assets.weights, settings)
        photos = square_photos(assets.sample_set)
        photo = one_face_jpeg(photos, analyser)
        (work / "photo.jpg").write_bytes(photo)
        bench_stages(report, analyser, photo, photos)
        local = bench_sample_set(report, analyser, assets, work / "sample")
        bench_identify(report, local, photo)
        if lfw:
            bench_lfw_ingest(report, analyser, work / "lfw", lfw)
        section("memory")
        report.add(
            MEMORY,
            "peak RSS, this process (ingest + train + identify)",
            peak_rss_mib(),
            "MiB",
            ("<=", 2048),
        )
        bench_startup(
            report, work / "sample", assets.cache_dir, work / "photo.jpg", settings.crop_method
        )
        if lfw:
            bench_lfw_accuracy(report, analyser, lfw, TrainOptions().seed)
    command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    write_results(report, args.out, command, settings.crop_method, meta, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
