"""Benchmark of face analysis on TensorFlow (the ``mtcnn`` package and the Keras FaceNet) beside
ONNX Runtime (the converted networks, FaceNet fp32 and int8), measured in one run: stage
timings, identify latency, ingest throughput, start-up and peak RSS of a fresh ``facerec
identify`` process, accuracy on the sample set and, when present, on LFW dev-train
(verification, closed-set and open-set identification) with int8's differences from fp32.

Prints every figure per runtime beside its target and writes ``results.json`` and
``RESULTS.md``. Not a test: it never fails on slowness. Run
``.venv/bin/python bench/run.py [--quick] [--lfw PATH] [--tf-checkout PATH]``; the
TensorFlow start-up is measured with the command line of ``--tf-checkout``, a checkout of the
last TensorFlow commit (``git worktree add /tmp/tf-checkout d294862``).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

from facerec.core.settings import (
    CROP_METHODS,
    DEFAULT_PRECISION,
    EMBEDDING_SIZE,
    PRECISIONS,
    AnalysisSettings,
    TrainOptions,
)
from facerec.engines.classifier import FaceClassifier, cross_validate, holdout_split
from facerec.engines.facenet import library_versions
from facerec.flows.enrol import read_labelled_folder as _read_labelled_folder
from facerec.flows.identify import identify_photo
from facerec.interfaces.local import LocalDeployment
from facerec.vision.alignment import crop
from facerec.vision.analyser import FaceAnalyser, build_analyser
from facerec.vision.assets import AssetPaths
from facerec.vision.detection import Face, select_labelled_face
from facerec.vision.embedding import describe_embedding, embedding_stamp
from facerec.vision.images import decode_image
from facerec.vision.runtime import ModelFiles

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw-devtrain"
DEFAULT_TF_CHECKOUT = Path("/tmp/tf-checkout")
PHOTO_SIDE = 250  # LFW's photo size: the detection target is stated for it
LFW_INGEST_PHOTOS = 1000
LFW_MIN_PHOTOS = 5
FAR_TARGET = 1e-3
OPEN_SET_SEEDS = (42, 43, 44, 45, 46)
SPEED, MEMORY, SAMPLE = "Speed", "Memory", "Accuracy: sample set"
LFW, INT8 = "Accuracy: LFW dev-train", "int8 against fp32 (LFW dev-train)"
MISSED_SAME, MISSED_DIFFERENT = -2.0, 2.0  # cosine scores that make a pair with no face a miss
# int8 stays the default precision while it loses at most this much against fp32.
INT8_TOLERANCE = {"verification accuracy": 0.003, "open-set DIR at 1 % FAR": 0.005}
TENSORFLOW = "tensorflow"
ONNX = {precision: f"onnx {precision}" for precision in PRECISIONS}
RUNTIMES = (TENSORFLOW, *ONNX.values())
SHARED = "all"  # a figure that does not depend on the runtime, measured once
TF_MODULES = ("tensorflow", "keras", "mtcnn")


@dataclass(frozen=True)
class Figure:
    """One figure, its value per runtime (or SHARED); ``target`` like "<= 40", ``met`` per
    runtime (empty when there is no target)."""

    group: str
    name: str
    values: dict[str, float | int | str]
    unit: str = ""
    target: str = ""
    met: dict[str, bool] | None = None


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
        values: Mapping[str, float | int | str],
        unit: str = "",
        target: tuple[str, float] | None = None,
    ) -> None:
        """Record a figure; ``values`` by runtime, ``target`` (">=" or "<=", bound)."""
        values = {
            runtime: rounded(float(value), unit)
            if isinstance(value, float | np.floating)
            else value
            for runtime, value in values.items()
        }
        met, bound = {}, ""
        if target is not None:
            op, limit = target
            met = {
                runtime: bool(value <= limit) if op == "<=" else bool(value >= limit)
                for runtime, value in values.items()
            }
            bound = f"{op} {limit:g}"
        self.figures.append(Figure(group, name, values, unit, bound, met))
        cells = " ".join(f"{shown(cell(values, runtime)):>10}" for runtime in RUNTIMES)
        verdict = "/".join(VERDICTS[cell(met, runtime)] for runtime in RUNTIMES) if met else ""
        print(f"  {name:<58} {cells} {unit:<8} {bound:<9} {verdict}", flush=True)

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)
        print(f"skipped: {reason}", flush=True)


VERDICTS = {None: "-", True: "met", False: "MISSED"}


def cell(values: Mapping[str, object], runtime: str) -> object:
    """A figure's value (or verdict) for ``runtime``: its own, the shared one, else None."""
    return values.get(runtime, values.get(SHARED))


def rounded(value: float, unit: str) -> float:
    """Ratios (no unit) to 4 decimals; measurements to 3 significant digits (integers from 1000)."""
    if not unit:
        return round(value, 4)
    return float(round(value)) if abs(value) >= 1000 else float(f"{value:.3g}")


def shown(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


LOAD_BY_SECTION: dict[str, list[float]] = {}


def section(title: str) -> None:
    """Print a section's title and column heads; note the load average as it starts."""
    LOAD_BY_SECTION[title] = [round(value, 2) for value in os.getloadavg()]
    print(f"\n== {title} (load average {LOAD_BY_SECTION[title]})", flush=True)
    print(f"  {'':<58} " + " ".join(f"{runtime:>10}" for runtime in RUNTIMES), flush=True)


def timed_each(
    functions: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, np.ndarray]:
    """Call each function ``warmup`` times untimed, then each in turn ``repeats`` times (so
    that load on the machine falls on all alike) -> seconds per key, (repeats,)."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    seconds: dict[str, list[float]] = {key: [] for key in functions}
    for _ in range(repeats):
        for key, function in functions.items():
            started = time.perf_counter()
            function()
            seconds[key].append(time.perf_counter() - started)
    return {key: np.array(values) for key, values in seconds.items()}


def add_latency(
    report: Report,
    name: str,
    seconds: Mapping[str, np.ndarray],
    per: int = 1,
    median_target: float | None = None,
) -> None:
    """Speed figures per runtime: median and p95 in ms (divided by ``per`` items per call);
    the target applies to the median."""
    target = ("<=", median_target) if median_target is not None else None
    medians = {key: np.median(values) * 1000 / per for key, values in seconds.items()}
    p95s = {key: np.percentile(values, 95) * 1000 / per for key, values in seconds.items()}
    runs = len(next(iter(seconds.values())))
    report.add(SPEED, f"{name}: median", medians, "ms", target)
    report.add(SPEED, f"{name}: p95 ({runs} runs)", p95s, "ms")


def read_labelled_folder(root: Path):
    """The package's LFW-layout reader; anything outside a person folder is reported."""
    return _read_labelled_folder(root, lambda path, reason: print(f"  skipped {path}: {reason}"))


# ---- the analysers --------------------------------------------------------------------------


def keras_embedder(assets: AssetPaths):
    """The Keras FaceNet (``KerasFaceNet``) stamped as the fp32 network converted from the same
    weights (equal to 1e-6), so a workspace takes its embeddings."""
    from facerec.vision.facenet_tf import KerasFaceNet

    embedder = KerasFaceNet(assets.weights)
    embedder.models, embedder.precision = ModelFiles(assets.models), "fp32"
    embedder.description = describe_embedding(embedder.models, "fp32")
    embedder.stamp = embedding_stamp(embedder.description)
    return embedder


def load_analysers(
    report: Report, assets: AssetPaths, settings: AnalysisSettings
) -> dict[str, FaceAnalyser]:
    """Per runtime its analyser (TensorFlow only when its packages are installed); loading
    times include each runtime's first import."""
    section("models")
    analysers, seconds = {}, {}
    for precision, runtime in ONNX.items():
        started = time.perf_counter()
        analysers[runtime] = build_analyser(assets.models, replace(settings, precision=precision))
        seconds[runtime] = time.perf_counter() - started
    missing = [name for name in TF_MODULES if find_spec(name) is None]
    if missing:
        report.skip(f"TensorFlow: {', '.join(missing)} not installed (requirements-convert.txt)")
    else:
        from facerec.vision.mtcnn_tf import PackageDetector

        started = time.perf_counter()
        analysers[TENSORFLOW] = FaceAnalyser(
            PackageDetector(settings.detector),
            keras_embedder(assets),
            replace(settings, precision="fp32"),
        )
        seconds[TENSORFLOW] = time.perf_counter() - started
    report.add(SPEED, "load detector + FaceNet (incl. the runtime's import)", seconds, "s")
    return analysers


# ---- speed ----------------------------------------------------------------------------------


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
    report: Report,
    analysers: Mapping[str, FaceAnalyser],
    photo: bytes,
    others: list[np.ndarray],
    repeats: int,
) -> None:
    """Per-stage time for the one-face 250x250 ``photo``; detection per photo in batches of 16
    ``others`` (distinct photos of that size); FaceNet throughput at batch 1 and 32.
    ``repeats`` scales the number of timed calls."""
    section(f"stages, one {PHOTO_SIDE}x{PHOTO_SIDE} photo with one face")
    served = analysers[ONNX[DEFAULT_PRECISION]]
    settings = served.settings
    image = decode_image(photo)
    face = served.detector.detect(image)[0]
    decode = timed_each({SHARED: lambda: decode_image(photo)}, 10 * repeats)
    add_latency(report, "decode JPEG -> RGB (any runtime)", decode)
    for method in CROP_METHODS:
        seconds = timed_each(
            {SHARED: lambda m=method: crop(image, face, m, settings.margin, settings.crop_size)},
            20 * repeats,
        )
        add_latency(report, f"crop '{method}' (any runtime)", seconds)
    single = {key: (lambda a=a: a.detector.detect(image)) for key, a in analysers.items()}
    add_latency(report, "detect, one photo per call", timed_each(single, 3 * repeats))
    batch = others[: settings.detector.batch_size]
    batched = {key: (lambda a=a: a.detector.detect_batch(batch)) for key, a in analysers.items()}
    add_latency(
        report,
        f"detect, per photo in batches of {len(batch)} distinct photos",
        timed_each(batched, repeats),
        per=len(batch),
        median_target=20,
    )
    crops = np.stack(
        [crop(image, face, settings.crop_method, settings.margin, settings.crop_size)] * 32
    )
    for size, calls, target in ((1, 5 * repeats, None), (32, repeats, 200)):
        seconds = timed_each(
            {
                key: (lambda a=a, n=size: a.embedder.embed(crops[:n]))
                for key, a in analysers.items()
            },
            calls,
        )
        add_latency(report, f"embed batch {size}, per face", seconds, per=size)
        report.add(
            SPEED,
            f"embed batch {size}: faces/s (median call)",
            {key: size / np.median(values) for key, values in seconds.items()},
            "faces/s",
            (">=", target) if target else None,
        )


# ---- sample set: ingest, train, evaluate, identify ------------------------------------------


def enrol_timed(local: LocalDeployment, items) -> tuple[int, float, dict[str, int]]:
    """Enrol ``items`` (an iterable read lazily, as the CLI does) -> (photos, seconds,
    outcomes by status)."""
    started = time.perf_counter()
    outcomes = local.enrol(items)
    elapsed = time.perf_counter() - started
    return len(outcomes), elapsed, dict(Counter(outcome.status for outcome in outcomes))


def add_ingest(report: Report, label: str, runs: Mapping[str, tuple], target: float | None):
    """Figures of ``enrol_timed`` runs, by runtime."""
    report.add(SPEED, f"ingest {label}: photos", {key: run[0] for key, run in runs.items()})
    report.add(
        SPEED,
        f"ingest {label}: throughput",
        {key: run[0] / run[1] for key, run in runs.items()},
        "photos/s",
        (">=", target) if target else None,
    )
    report.details[f"ingest {label}"] = {
        key: {"seconds": round(run[1], 2), "statuses": run[2]} for key, run in runs.items()
    }
    for key, run in runs.items():
        print(f"  {key} outcomes: {run[2]}")


def bench_sample_set(
    report: Report, analysers: Mapping[str, FaceAnalyser], assets: AssetPaths, work: Path
) -> dict[str, LocalDeployment]:
    """Per runtime: enrol train/ into a new workspace (``work / <runtime>``), train on all of
    it, evaluate on val/; returns the trained deployments."""
    section("sample set: ingest train/, train on all, evaluate on val/")
    deployments, ingests, training, cvs, correct, evaluations = {}, {}, {}, {}, {}, {}
    for key, analyser in analysers.items():
        local = LocalDeployment(work / key.replace(" ", "-"), analyser)
        ingests[key] = enrol_timed(local, read_labelled_folder(assets.sample_set / "train"))
        started = time.perf_counter()
        model, _ = local.train(TrainOptions(test_size=0.0))
        training[key] = time.perf_counter() - started
        cvs[key] = model.metadata["cv"]
        evaluations[key] = local.evaluate_photos(read_labelled_folder(assets.sample_set / "val"))
        correct[key] = evaluations[key]["correct"]
        deployments[key] = local
    add_ingest(report, "sample set train/", ingests, None)
    report.add(SPEED, "train SVC (sample set, CV + calibration)", training, "s")
    folds = next(iter(cvs.values()))["folds"]
    report.add(SAMPLE, f"{folds}-fold CV on train/", {key: cv["mean"] for key, cv in cvs.items()})
    photos = next(iter(evaluations.values()))["photos"]
    report.add(SAMPLE, f"val correct of {photos} photos", correct, target=(">=", photos))
    misses = {}
    for key, evaluation in evaluations.items():
        misses[key] = [
            f"{error['truth']} taken for {error['predicted']} (p = {error['score']:.3f})"
            for error in evaluation["errors"]
        ] + [f"{item['photo']}: {item['code']}: {item['reason']}" for item in evaluation["refused"]]
        for miss in misses[key]:
            print(f"  {key} miss: {miss}")
    report.details["sample set val misses"] = misses
    return deployments


def bench_identify(
    report: Report, deployments: Mapping[str, LocalDeployment], photo: bytes, repeats: int
) -> None:
    section("warm identify, one-face photo (in process)")
    calls = {
        key: (
            lambda local=local: identify_photo(local.analyser, local.engines, ("facenet",), photo)
        )
        for key, local in deployments.items()
    }
    answers = {key: call()["faces"] for key, call in calls.items()}
    seconds = timed_each(calls, 4 * repeats, warmup=3)
    add_latency(report, "identify (warm, in process)", seconds, median_target=40)
    report.details["identify answer"] = answers
    for key, faces in answers.items():
        print(f"  {key} answer: {[face['facenet'] for face in faces]}")


def bench_lfw_ingest(
    report: Report, analysers: Mapping[str, FaceAnalyser], work: Path, lfw: Path, photos: int
) -> None:
    section(f"ingest the first {photos} LFW photos (sorted paths) into a new workspace")
    runs = {}
    for key, analyser in analysers.items():
        local = LocalDeployment(work / f"lfw-{key.replace(' ', '-')}", analyser)
        runs[key] = enrol_timed(
            local, itertools.islice(read_labelled_folder(lfw / "images"), photos)
        )
        print(f"  {key}: {runs[key][0] / runs[key][1]:.1f} photos/s", flush=True)
    add_ingest(report, f"{photos} LFW", runs, 60)


# ---- a fresh identify process ---------------------------------------------------------------


def vm_hwm_mib(pid: int) -> float:
    """A live process's peak RSS (VmHWM), MiB; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0")
    return int(line.split()[1]) / 1024


def run_watched(
    command: list[str], env: Mapping[str, str] | None = None
) -> tuple[float, float, str]:
    """Run ``command`` -> (wall seconds, peak RSS MiB, stdout). The peak is VmHWM polled every
    20 ms: getrusage's RUSAGE_CHILDREN is useless here, as a child spawned by this large
    process inherits its peak RSS through fork and exec."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
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


def tensorflow_command_line(
    checkout: Path, workspace: Path, cache_dir: Path, sample_set: Path
) -> tuple[list[str], dict[str, str]]:
    """The command line of the TensorFlow version in ``checkout`` over ``workspace``, after
    enrolling the sample set's train/ and training there with that same version -> (command
    prefix, environment)."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "layers")}
    prefix = [sys.executable, "-m", "facerec", "--workspace", str(workspace)]
    prefix += ["--cache-dir", str(cache_dir)]
    print(f"  training a workspace with the TensorFlow version in {checkout}", flush=True)
    for arguments, accepted in (
        (["ingest", "--quiet", str(sample_set / "train")], (0, 3)),
        (["train", "--test-size", "0"], (0,)),
    ):
        done = subprocess.run(prefix + arguments, env=env, capture_output=True, text=True)
        if done.returncode not in accepted:
            raise RuntimeError(f"{' '.join(prefix + arguments)} failed:\n{done.stderr}")
    return prefix, env


def bench_startup(
    report: Report,
    deployments: Mapping[str, LocalDeployment],
    assets: AssetPaths,
    work: Path,
    photo: Path,
    tf_checkout: Path,
    runs: int,
) -> None:
    """Fresh ``facerec identify PHOTO`` processes, the runtimes in turn, ``runs`` each: wall
    time to the answer (median) and peak RSS (largest). ONNX Runtime: this version's command
    line over the workspace ``bench_sample_set`` trained at that precision; TensorFlow: the
    command line of ``tf_checkout`` over a workspace that version trained."""
    section("process start to first answer: `facerec identify PHOTO` in a new process")
    facerec = str(Path(sys.executable).with_name("facerec"))
    commands: dict[str, tuple[list[str], dict | None]] = {}
    for precision, key in ONNX.items():
        prefix = [facerec, "--workspace", str(deployments[key].workspace)]
        prefix += ["--cache-dir", str(assets.cache_dir), "--precision", precision]
        commands[key] = (prefix, None)
    has_checkout = (tf_checkout / "layers" / "facerec").is_dir()
    if TENSORFLOW in deployments and has_checkout:
        commands[TENSORFLOW] = tensorflow_command_line(
            tf_checkout, work / "tensorflow-cli", assets.cache_dir, assets.sample_set
        )
        revision = subprocess.run(
            ["git", "-C", str(tf_checkout), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        report.details["tensorflow command line commit"] = revision.stdout.strip()
    elif TENSORFLOW in deployments:
        report.skip(f"TensorFlow start-up: no checkout of the TensorFlow version at {tf_checkout}")
    measured: dict[str, list[tuple[float, float, str]]] = {key: [] for key in commands}
    for _ in range(runs):
        for key, (prefix, env) in commands.items():
            measured[key].append(run_watched([*prefix, "identify", str(photo)], env))
    for key, results in measured.items():
        print(f"  {key} answer: {results[-1][2].strip()}")
    report.add(
        SPEED,
        f"start to first answer: median of {runs} runs",
        {key: float(np.median([run[0] for run in results])) for key, results in measured.items()},
        "s",
        ("<=", 1.5),
    )
    report.details["start to first answer runs (s)"] = {
        key: [round(run[0], 2) for run in results] for key, results in measured.items()
    }
    report.add(
        MEMORY,
        f"peak RSS (VmHWM), `facerec identify` process, largest of {runs}",
        {key: max(run[1] for run in results) for key, results in measured.items()},
        "MiB",
        ("<=", 400),
    )


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


def labelled_faces(
    detector, paths: Sequence[Path], chunk: int = 512
) -> tuple[list[Face | None], float]:
    """Detect every photo (in ``detector.detect_batch`` calls of ``chunk`` photos) -> the
    labelled face of each, the most central, confident and large one (``select_labelled_face``
    without references), None where no face; and the seconds spent detecting."""
    faces: list[Face | None] = []
    spent = 0.0
    no_references = np.zeros((0, EMBEDDING_SIZE), np.float32)
    for start in range(0, len(paths), chunk):
        images = [decode_image(path.read_bytes()) for path in paths[start : start + chunk]]
        began = time.perf_counter()
        detections = detector.detect_batch(images)
        spent += time.perf_counter() - began
        for image, found in zip(images, detections, strict=True):
            # Without references only position, confidence and size count: the embeddings
            # argument is unused, so a placeholder of the right shape is passed.
            index = (
                select_labelled_face(
                    found, np.zeros((len(found), EMBEDDING_SIZE)), no_references, image.shape
                )[0]
                if found
                else None
            )
            faces.append(None if index is None else found[index])
        print(f"  detected {min(start + chunk, len(paths))}/{len(paths)} photos", flush=True)
    return faces, spent


def embedded_faces(
    analyser: FaceAnalyser,
    paths: Sequence[Path],
    faces: Sequence[Face | None],
    methods: Sequence[str] = CROP_METHODS,
    flipped: bool = False,
    chunk: int = 512,
) -> tuple[dict[str, np.ndarray], Counter]:
    """Crop each photo's face (``labelled_faces``) by each of ``methods`` and embed it (and,
    when ``flipped``, its mirror image too, as ``"<method>_flip"``) -> {variant: float32
    (N, 128)} (zero rows where no face) and the seconds spent per method."""
    settings, embedder = analyser.settings, analyser.embedder
    variants = [f"{m}{suffix}" for m in methods for suffix in ("", "_flip")[: 1 + flipped]]
    embeddings = {name: np.zeros((len(paths), EMBEDDING_SIZE), np.float32) for name in variants}
    spent = Counter()
    for start in range(0, len(paths), chunk):
        rows = [i for i in range(start, min(start + chunk, len(paths))) if faces[i] is not None]
        if not rows:
            continue
        images = {i: decode_image(paths[i].read_bytes()) for i in rows}
        for method in methods:
            crops = np.stack(
                [
                    crop(images[i], faces[i], method, settings.margin, settings.crop_size)
                    for i in rows
                ]
            )
            began = time.perf_counter()
            embeddings[method][rows] = embedder.embed(crops)
            spent[method] += time.perf_counter() - began
            if flipped:
                embeddings[f"{method}_flip"][rows] = embedder.embed(crops[:, :, ::-1])
        print(f"  embedded {min(start + chunk, len(paths))}/{len(paths)} photos", flush=True)
    return embeddings, spent


def labelled_face_embeddings(
    analyser: FaceAnalyser, paths: Sequence[Path], flipped: bool = False, chunk: int = 512
) -> tuple[dict[str, np.ndarray], np.ndarray, Counter]:
    """``labelled_faces`` then ``embedded_faces`` by every crop method -> {variant: float32
    (N, 128)}, a found mask (N,) and the seconds spent per stage ("detect", "embed <method>")."""
    faces, detecting = labelled_faces(analyser.detector, paths, chunk)
    embeddings, embedding = embedded_faces(analyser, paths, faces, CROP_METHODS, flipped, chunk)
    spent = Counter({"detect": detecting})
    spent.update({f"embed {method}": seconds for method, seconds in embedding.items()})
    return embeddings, np.array([face is not None for face in faces]), spent


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


def open_set_identification(X: np.ndarray, people: np.ndarray, found: np.ndarray) -> dict:
    """bench/open_set.py's protocol with the served score (nearest-face label, cohort-normalised
    centroid): the people with >= 5 photos enrolled (75 %), probed with their 25 % and every
    photo of everybody else; mean and std over OPEN_SET_SEEDS of top-1 and DIR at 1 % and
    10 % FAR."""
    import open_set

    runs = []
    for seed in OPEN_SET_SEEDS:
        split = open_set.open_set_split(people, found, seed)
        answers = open_set.METHODS[open_set.OURS](open_set.Probe(X, people, found, split))
        runs.append(open_set.rates(answers, people[split.known]))
    return open_set.summarise(runs)


def lfw_embeddings(
    report: Report, analysers: Mapping[str, FaceAnalyser], paths: Sequence[Path], method: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every photo's labelled face embedded by each runtime with the crop ``method`` ->
    ({runtime: (N, 128)}, {runtime: found (N,)}). Both ONNX precisions share one detection
    pass: they run the same MTCNN networks."""
    found, embeddings, detecting, embedding = {}, {}, {}, {}
    detected: dict[type, tuple[list, float]] = {}
    for key, analyser in analysers.items():
        kind = type(analyser.detector)
        if kind not in detected:
            print(f"  {key}: detecting", flush=True)
            detected[kind] = labelled_faces(analyser.detector, paths)
        faces, detecting[key] = detected[kind]
        print(f"  {key}: embedding", flush=True)
        vectors, spent = embedded_faces(analyser, paths, faces, (method,))
        embeddings[key], found[key] = vectors[method], np.array([f is not None for f in faces])
        embedding[key] = found[key].sum() / spent[method]
    report.add(LFW, "photos embedded", {key: len(paths) for key in analysers})
    report.add(LFW, "photos with no face found", {k: int((~v).sum()) for k, v in found.items()})
    report.add(
        SPEED,
        f"LFW {PHOTO_SIDE}x{PHOTO_SIDE} detect, per photo (batches of 16; all photos)",
        {key: seconds * 1000 / len(paths) for key, seconds in detecting.items()},
        "ms",
        ("<=", 20),
    )
    report.add(SPEED, f"LFW embed '{method}' (batches of 32)", embedding, "faces/s", (">=", 200))
    report.details["lfw photos with no face"] = {
        key: [
            str(path.relative_to(path.parents[2]))
            for path, ok in zip(paths, mask, strict=True)
            if not ok
        ]
        for key, mask in found.items()
    }
    return embeddings, found


def bench_lfw_accuracy(
    report: Report,
    analysers: Mapping[str, FaceAnalyser],
    lfw: Path,
    method: str,
    seed: int,
    people_limit: int | None,
) -> None:
    """Verification on the pairs, closed-set and open-set identification on the people with
    >= 5 photos, per runtime on every photo (of the first ``people_limit`` people when given)
    with the crop ``method``; then int8's differences from fp32 against INT8_TOLERANCE."""
    section(f"LFW dev-train accuracy ({lfw}), crop '{method}'")
    folders = sorted(path for path in (lfw / "images").iterdir() if path.is_dir())
    paths = [photo for folder in folders[:people_limit] for photo in sorted(folder.glob("*.jpg"))]
    people = np.array([path.parent.name for path in paths])
    index = {path: i for i, path in enumerate(paths)}
    pairs, same = read_pairs(lfw)
    kept = [n for n, pair in enumerate(pairs) if pair[0] in index and pair[1] in index]
    left, right = (np.array([index[pairs[n][k]] for n in kept]) for k in (0, 1))
    same = same[kept]
    counts = Counter(people)
    gallery = np.flatnonzero([counts[person] >= LFW_MIN_PHOTOS for person in people])
    embeddings, found = lfw_embeddings(report, analysers, paths, method)
    results = {}
    for key, vectors in embeddings.items():
        pair_found = found[key][left] & found[key][right]
        scores = np.einsum("ij,ij->i", vectors[left], vectors[right])
        scores = np.where(pair_found, scores, np.where(same, MISSED_SAME, MISSED_DIFFERENT))
        print(f"  {key}: verification, closed-set and open-set identification", flush=True)
        results[key] = {
            "pairs_with_no_face": int((~pair_found).sum()),
            "verification": verification(scores, same, seed),
            "identification": identification(
                vectors[gallery], found[key][gallery], people[gallery], seed
            ),
            "open_set": open_set_identification(vectors, people, found[key]),
        }
    report.details["lfw"] = results
    section(f"LFW dev-train, crop '{method}'")
    report.add(
        LFW,
        f"pairs with a photo with no face (counted as misses) of {len(kept)}",
        {key: result["pairs_with_no_face"] for key, result in results.items()},
    )
    report.add(
        LFW,
        f"identification set: people with >= {LFW_MIN_PHOTOS} photos, their photos",
        {SHARED: f"{len(set(people[gallery]))}, {len(gallery)}"},
    )
    verified = {key: result["verification"] for key, result in results.items()}
    identified = {key: result["identification"] for key, result in results.items()}
    opened = {key: result["open_set"] for key, result in results.items()}
    figures = [
        ("verification accuracy (10-fold threshold)", verified, "accuracy", (">=", 0.985)),
        ("verification accuracy std over folds", verified, "accuracy_std", None),
        ("verification ROC AUC", verified, "auc", None),
        (f"verification TAR at FAR = {FAR_TARGET:g}", verified, "tar_at_far", None),
        ("closed-set SVC top-1 on 25 %", identified, "top1", (">=", 0.99)),
        ("open-set DIR at 1 % FAR (mean of 5 splits)", opened, "DIR@1%", (">=", 0.95)),
        ("open-set DIR at 10 % FAR (mean of 5 splits)", opened, "DIR@10%", None),
        ("open-set closed-set top-1 (mean of 5 splits)", opened, "top1", None),
    ]
    for name, source, field, target in figures:
        values = {
            key: value[field]["mean"] if isinstance(value[field], dict) else value[field]
            for key, value in source.items()
        }
        report.add(LFW, name, values, target=target)
    report.add(
        LFW,
        "closed-set SVC CV on 75 %",
        {key: value["cv"]["mean"] for key, value in identified.items()},
    )
    compare_int8(report, verified, opened)


def compare_int8(report: Report, verified: dict, opened: dict) -> None:
    """int8 minus fp32 (target: no lower than -INT8_TOLERANCE) and fp32 minus TensorFlow."""
    fp32, int8 = ONNX["fp32"], ONNX["int8"]
    if fp32 not in verified or int8 not in verified:
        return
    section("int8 against fp32, fp32 against TensorFlow (LFW dev-train)")
    measured = {
        "verification accuracy": {key: value["accuracy"] for key, value in verified.items()},
        "open-set DIR at 1 % FAR": {key: value["DIR@1%"]["mean"] for key, value in opened.items()},
    }
    within = {}
    for name, values in measured.items():
        difference = values[int8] - values[fp32]
        within[name] = difference >= -INT8_TOLERANCE[name]
        report.add(
            INT8, f"{name}: int8 - fp32", {int8: difference}, target=(">=", -INT8_TOLERANCE[name])
        )
        if TENSORFLOW in values:
            report.add(
                INT8, f"{name}: fp32 - tensorflow", {fp32: values[fp32] - values[TENSORFLOW]}
            )
    verdict = "yes" if all(within.values()) else "no"
    report.add(INT8, "int8 within tolerance of fp32 on both", {int8: verdict})
    report.details["int8 within tolerance"] = {
        "differences": {
            name: round(values[int8] - values[fp32], 4) for name, values in measured.items()
        },
        "tolerance": INT8_TOLERANCE,
        "within": within,
        "default_precision": DEFAULT_PRECISION,
    }


# ---- results --------------------------------------------------------------------------------


def machine() -> dict:
    """Date, cores, CPU model and flags, memory, load average and library versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = cpuinfo.splitlines()
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor(),
    )
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = library_versions()
    for name in ("tensorflow-cpu", "tensorflow", "keras", "mtcnn"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": model,
        "cpu_flags": {flag: flag in flags for flag in ("avx2", "avx512f", "avx512_vnni")},
        "memory_gib": round(memory, 1),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "libraries": versions,
    }


METHOD_NOTES = [
    "",
    "## How the figures are measured",
    "",
    "- Runtimes: `tensorflow` is the `mtcnn` package (`facerec.vision.mtcnn_tf.PackageDetector`) "
    "and the Keras FaceNet (`facerec.vision.facenet_tf.KerasFaceNet`); `onnx fp32` and "
    "`onnx int8` are `build_analyser` on the converted networks (ONNX Runtime), FaceNet at "
    "that precision. All three are loaded in one process and timed in turn, call by call, so "
    "that load from other work falls on all alike.",
    f"- Stages: one sample-set val photo centre-cropped and resized to {PHOTO_SIDE}x{PHOTO_SIDE} "
    "(JPEG, one face), after warm-up calls; batched detection on 16 such distinct photos; "
    "embedding of 1 and 32 crops.",
    "- Ingest: `LocalDeployment.enrol` into a fresh workspace, photos read lazily as the CLI does "
    "(detection batches only photos of identical shape: sample-set sizes vary, LFW's do not).",
    "- Identify: the FaceNet engine of `facerec.flows.identify.identify_photo` on that photo "
    "with a model trained on the sample set's train part (one workspace per runtime). "
    "Start-up: `facerec --precision P identify PHOTO` as a new process over that workspace; "
    "for TensorFlow the command line of the last TensorFlow commit (a git worktree, "
    "`PYTHONPATH=<worktree>/layers python -m facerec`) over a workspace that version trained; "
    "the runtimes in turn, median wall time; peak RSS is the process's VmHWM.",
    "- LFW: every photo detected once per detector (both ONNX precisions share the ONNX "
    "detector's pass); the labelled face is the most central one (`select_labelled_face` "
    "without references), cropped the default way and embedded. Verification: the "
    "pairsDevTrain pairs, cosine similarity, 10 stratified folds, threshold chosen on 9 and "
    "tested on the 10th; a pair with a photo where no face was found always counts as wrong. "
    "Closed-set: the people with >= 5 photos, seeded stratified 75/25 split, "
    "`FaceClassifier` C = 10, photos with no face count as misses. Open-set: "
    "`bench/open_set.py`'s protocol and served score (nearest-face label, cohort-normalised "
    "centroid), the people with >= 5 photos enrolled, strangers every photo of the others; "
    f"mean over the split seeds {', '.join(map(str, OPEN_SET_SEEDS))}.",
    "- int8 against fp32: int8 stays the default precision (`DEFAULT_PRECISION`) while it "
    "loses at most "
    + " and ".join(f"{tolerance:g} {name}" for name, tolerance in INT8_TOLERANCE.items())
    + " against fp32.",
]


def table_cell(figure: dict, runtime: str) -> str:
    value = cell(figure["values"], runtime)
    if value is None:
        return ""
    text = f"{shown(value)} {figure['unit']}".strip()
    return f"**{text}**" if cell(figure["met"] or {}, runtime) is False else text


def render_markdown(results: dict) -> str:
    """results.json as RESULTS.md: the context, then one table per figure group."""
    meta = results["machine"]
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in meta["cpu_flags"].items())
    lines = [
        "# Benchmark results: TensorFlow against ONNX Runtime",
        "",
        f"`{results['command']}`, {meta['date']}. Crop method: **{results['crop_method']}**; "
        f"default FaceNet precision: **{results['default_precision']}**.",
        "",
        f"- Machine: {meta['cores']} cores, {meta['cpu']} ({flags}), {meta['memory_gib']} GiB, "
        f"{meta['platform']}",
        f"- Load average (1, 5, 15 min) at start: {meta['load_average_1_5_15']}; "
        f"at end: {results['load_average_at_end']} (other work on the machine makes timings noisy; "
        "1-minute load as each section started: "
        + ", ".join(
            f"{title}: {load[0]}" for title, load in results["load_average_by_section"].items()
        )
        + ")",
        "- Versions: "
        + ", ".join(f"{name} {version}" for name, version in meta["libraries"].items()),
        f"- Total benchmark time: {results['seconds']:.0f} s",
    ]
    lines += [f"- Skipped: {reason}" for reason in results["skipped"]]
    commit = results["details"].get("tensorflow command line commit")
    if commit:
        lines.append(f"- TensorFlow command line: commit {commit}")
    within = results["details"].get("int8 within tolerance")
    if within:
        differences = ", ".join(
            f"{name} {value:+.4f} (tolerance {within['tolerance'][name]:g})"
            for name, value in within["differences"].items()
        )
        verdict = "within" if all(within["within"].values()) else "**not within**"
        lines.append(f"- int8 - fp32 on LFW dev-train: {differences}: {verdict} tolerance")
    lines += [
        "",
        "A value in bold misses its target; met? lists " + " / ".join(RUNTIMES) + ".",
    ]
    groups: dict[str, list[dict]] = {}
    for figure in results["figures"]:
        groups.setdefault(figure["group"], []).append(figure)
    header = "| figure | " + " | ".join(RUNTIMES) + " | target | met? |"
    for group, figures in groups.items():
        lines += ["", f"## {group}", "", header, "|---" * (len(RUNTIMES) + 3) + "|"]
        for figure in figures:
            met = figure["met"] or {}
            verdicts = (
                " / ".join({None: "-", True: "yes", False: "no"}[cell(met, r)] for r in RUNTIMES)
                if met
                else ""
            )
            cells = " | ".join(table_cell(figure, runtime) for runtime in RUNTIMES)
            lines.append(f"| {figure['name']} | {cells} | {figure['target']} | {verdicts} |")
    misses = results["details"].get("sample set val misses", {})
    lines += ["", "## Sample set val misses", ""]
    lines += [f"- {key}: {miss}" for key, items in misses.items() for miss in items] or ["None."]
    no_face = results["details"].get("lfw photos with no face")
    if no_face is not None:
        lines += ["", "## LFW photos where no face was found", ""]
        lines += [f"- {key}: {', '.join(paths) or 'none'}" for key, paths in no_face.items()]
    return "\n".join(lines + METHOD_NOTES) + "\n"


def write_results(
    report: Report, out: Path, command: str, settings: AnalysisSettings, meta: dict, started: float
) -> None:
    results = {
        "command": command,
        "crop_method": settings.crop_method,
        "default_precision": DEFAULT_PRECISION,
        "runtimes": list(RUNTIMES),
        "machine": meta,
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        "load_average_by_section": LOAD_BY_SECTION,
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a check of the whole run: fewer timed calls, 100 LFW photos ingested, LFW "
        "accuracy on the first 600 people only",
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW dev-train folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench", help="results folder")
    parser.add_argument(
        "--cache-dir", type=Path, default=REPO_ROOT / ".cache", help="`make setup` cache"
    )
    parser.add_argument(
        "--tf-checkout",
        type=Path,
        default=DEFAULT_TF_CHECKOUT,
        help="checkout of the last TensorFlow commit, for its command line's start-up",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started, meta = time.perf_counter(), machine()
    report, settings, assets = Report(), AnalysisSettings(), AssetPaths(args.cache_dir)
    repeats = 3 if args.quick else 10
    lfw = None
    if not (args.lfw / "pairsDevTrain.txt").is_file():
        report.skip(f"LFW: {args.lfw / 'pairsDevTrain.txt'} not found")
    else:
        lfw = args.lfw.resolve()
    with tempfile.TemporaryDirectory(prefix="facerec-bench-") as tmp:
        work = Path(tmp)
        analysers = load_analysers(report, assets, settings)
        photos = square_photos(assets.sample_set)
        photo = one_face_jpeg(photos, analysers[ONNX[DEFAULT_PRECISION]])
        (work / "photo.jpg").write_bytes(photo)
        bench_stages(report, analysers, photo, photos, repeats)
        deployments = bench_sample_set(report, analysers, assets, work)
        bench_identify(report, deployments, photo, repeats)
        bench_startup(
            report,
            deployments,
            assets,
            work,
            work / "photo.jpg",
            args.tf_checkout,
            3 if args.quick else 5,
        )
        if lfw:
            ingest = 100 if args.quick else LFW_INGEST_PHOTOS
            bench_lfw_ingest(report, analysers, work, lfw, ingest)
            bench_lfw_accuracy(
                report,
                analysers,
                lfw,
                settings.crop_method,
                TrainOptions().seed,
                600 if args.quick else None,
            )
    command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    write_results(report, args.out, command, settings, meta, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
