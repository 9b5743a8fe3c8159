"""Training at an organisation's scale: the FaceNet engine's classifier for 100 to 10,000 people.

1. Candidates side by side, each fit in a fresh process (its peak RSS is the fit's): the
   thesis's SVC (the package's FaceClassifier, up to --svc-max people), the package's
   OneVsRestSVM, liblinear one-vs-rest against every face, SGD with hinge loss, the nearest
   centroid and the nearest face. Fit time, peak RSS, the fitted state's size, closed-set
   top-1 and open-set DIR at FAR 1 % (the label from the candidate, the package's cohort
   score, the threshold at 1 % of the strangers' scores).
2. The product: ``facerec train``'s steps (flows.train: gather from a SQLite workspace, fit,
   evaluate FaceNet and the nearest face on the held-out quarter, publish), each timed, in a
   fresh process per size, its peak RSS, the artifact's size; then warm identify of a
   one-face sample photo (detect, embed, classify, score) with each size's model and a
   5-person one, interleaved in one process; and the cloud's estimate per training.

People: LFW dev-train's people with 5+ photos (their 75 % enrolled, 25 % asked; the open-set
protocol of bench/open_set.py), and synthetic people drawn like them (bench/scale.py's
SyntheticFaces: 10 faces enrolled, 3 asked); strangers: LFW's other people and 2,000
synthetic ones. Writes ``train_scale.json`` and ``TRAINING_SCALE.md``.
Run ``make bench-train-scale`` (about 50 minutes; skipped without the LFW folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from open_set import (
    DEFAULT_CACHE,
    DEFAULT_LFW,
    REPO_ROOT,
    load_embeddings,
    machine,
    open_set_split,
    variant,
)
from scale import SyntheticFaces
from threadpoolctl import threadpool_limits

from facerec.core.records import FaceRecord, PhotoRecord
from facerec.core.settings import AnalysisSettings, TrainOptions
from facerec.engines.classifier import FaceClassifier, OneVsRestSVM
from facerec.engines.facenet import FaceNetEngine
from facerec.engines.gallery import Gallery
from facerec.engines.openset import far_threshold, open_set_scores
from facerec.flows import train as flow
from facerec.storage.local import local_stores

PEOPLE = (100, 600, 1_000, 3_000, 10_000)
PRODUCT_PEOPLE = (100, 1_000, 3_000, 10_000)
# The package's calibrated SVC holds the one-vs-one decisions of a third of the faces at once
# (faces x K(K-1)/2 float64, about four copies): 5 GB at 300 people, 11 GB at 600, over 50 GB
# at 1,000. Beyond SVC_MAX, libsvm's SVC alone (the same labels, no probability) is fitted.
SVC_MAX = 600
LIBSVM_MAX = 1_000
ALL_NEGATIVES_MAX = 1_000  # liblinear and SGD against every face grow with people x faces
ENROLLED, ASKED = 10, 3  # faces per synthetic person
SYNTHETIC_STRANGERS = 2_000
IDENTIFY_REPEATS = 60
# How the faces were made, as a model records it (FaceAnalyser.describe): here they were drawn.
ANALYSIS = {
    "embedding": {"model_id": "LFW and synthetic embeddings"},
    "crop": {"method": "aligned"},
}
# Lambda's price per GB-second (x86, us-east-1, 2026) and the training function's memory.
LAMBDA_GB_SECOND_USD = 0.0000166667
CANDIDATES = ("svc", "svc-libsvm", "ovr", "liblinear-all", "sgd-hinge", "centroid", "nearest-face")


def people_data(people: int, lfw: Path, cache: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """Seeded, so every process draws the same: ``enrolled``/``enrolled_labels`` (N, 128) and
    (N,), ``asked``/``asked_labels`` and ``strangers`` (S, 128), float32 unit vectors."""
    _, names, embeddings, found = load_embeddings(lfw, cache, cache_dir)
    vectors = variant(embeddings, "aligned", flip=True)
    split = open_set_split(names, found, seed=42)
    rng = np.random.default_rng(people)
    real = np.unique(names[split.gallery])
    if people < len(real):
        real = np.sort(rng.choice(real, people, replace=False))
    enrolled = split.gallery[np.isin(names[split.gallery], real)]
    asked = split.known[np.isin(names[split.known], real) & found[split.known]]
    parts = {
        "enrolled": [vectors[enrolled]],
        "enrolled_labels": [names[enrolled]],
        "asked": [vectors[asked]],
        "asked_labels": [names[asked]],
        "strangers": [vectors[split.strangers]],
    }
    synthetic = people - len(real)
    if synthetic > 0:
        model = SyntheticFaces(vectors[found], names[found])
        centres = model.centres(synthetic, rng)
        faces = model.faces(np.repeat(centres, ENROLLED + ASKED, axis=0), rng)
        faces = faces.reshape(synthetic, ENROLLED + ASKED, -1)
        labels = np.char.add("synthetic-", np.arange(synthetic).astype(str))
        parts["enrolled"].append(faces[:, :ENROLLED].reshape(-1, faces.shape[2]))
        parts["enrolled_labels"].append(np.repeat(labels, ENROLLED))
        parts["asked"].append(faces[:, ENROLLED:].reshape(-1, faces.shape[2]))
        parts["asked_labels"].append(np.repeat(labels, ASKED))
        parts["strangers"].append(model.faces(model.centres(SYNTHETIC_STRANGERS, rng), rng))
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_candidate(name: str, X: np.ndarray, y: np.ndarray, gallery: Gallery):
    """(predict: (Q, D) -> (Q,) labels, the fitted state's bytes) of one candidate."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.svm import SVC, LinearSVC

    if name == "svc":
        model = FaceClassifier(C=10.0, random_state=0).fit(X, y)
    elif name == "svc-libsvm":
        model = SVC(kernel="linear", C=10.0).fit(X, y)
    elif name == "ovr":
        model = OneVsRestSVM(C=10.0, random_state=0).fit(X, y)
    elif name == "liblinear-all":
        model = LinearSVC(C=10.0, dual=True, max_iter=5000).fit(X, y)
    elif name == "sgd-hinge":
        model = SGDClassifier(loss="hinge", alpha=1e-4, random_state=0).fit(X, y)
    elif name == "centroid":
        return (lambda Q: gallery.search_centroids(Q, 1)[0][:, 0]), len(gallery.people) * 512
    else:
        return (lambda Q: gallery.search(Q, 1)[0][:, 0]), gallery.nbytes
    state = sum(np.asarray(value).nbytes for value in (model.coef_, model.intercept_))
    return model.predict, state


def skipped(name: str, people: int, svc_max: int) -> str:
    """Why ``name`` is not fitted for ``people`` ("" when it is)."""
    if name == "svc" and people > svc_max:
        return f"over {svc_max:,} people: its calibration's decisions would not fit in memory"
    if name == "svc-libsvm" and not svc_max < people <= LIBSVM_MAX:
        return "fitted only where the calibrated SVC cannot be, up to 1,000 people"
    if name in ("liblinear-all", "sgd-hinge") and people > ALL_NEGATIVES_MAX:
        return f"over {ALL_NEGATIVES_MAX:,} people: its fit grows as people x faces"
    return ""


def run_candidate(name: str, people: int, args) -> dict:
    """One candidate at one size, in this (fresh) process."""
    data = people_data(people, args.lfw, args.cache, args.cache_dir)
    X, y = data["enrolled"], data["enrolled_labels"]
    gallery = Gallery(X.shape[1]).add(np.arange(len(y)).astype(str), y, X)
    before = peak_rss_mib()
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        predict, state = fit_candidate(name, X, y, gallery)
        fit_s = time.perf_counter() - started
        labels = predict(data["asked"])
        stranger_labels = predict(data["strangers"])
        one = data["asked"][:1]
        predict(one)
        started = time.perf_counter()
        for _ in range(20):
            predict(one)
        predict_ms = (time.perf_counter() - started) / 20 * 1000
    right = labels == data["asked_labels"]
    known = open_set_scores(gallery, data["asked"], labels)
    threshold = far_threshold(open_set_scores(gallery, data["strangers"], stranger_labels), 0.01)
    return {
        "candidate": name,
        "people": people,
        "enrolled_faces": len(y),
        "asked_faces": len(labels),
        "strangers": len(data["strangers"]),
        "fit_s": fit_s,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_fit_mib": before,
        "state_mib": state / 2**20,
        "predict_one_ms": predict_ms,
        "top1": float(right.mean()),
        "dir_far_1pct": float((right & (known > threshold)).mean()),
    }


def run_product(people: int, args) -> dict:
    """``facerec train``'s steps on a SQLite workspace of ``people`` people (their enrolled
    and asked faces together; the product holds out its own quarter), in this process."""
    data = people_data(people, args.lfw, args.cache, args.cache_dir)
    vectors = np.concatenate([data["enrolled"], data["asked"]])
    labels = np.concatenate([data["enrolled_labels"], data["asked_labels"]])
    workspace = args.workspaces / f"people-{people}"
    stores = local_stores(workspace, "bench")
    # One record per person holding all of their faces: the catalog's transactions, not the
    # faces, would otherwise take the time of setting up.
    rows = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[rows][1:] != labels[rows][:-1]])
    for group in np.split(rows, starts[1:]):
        person = str(labels[group[0]])
        key = f"{person}/photo.jpg"
        faces = [
            FaceRecord(
                f"face-{n:06d}",
                key,
                index,
                person,
                (0, 0, 1, 1),
                1.0,
                f"{person}/face-{n:06d}.png",
                "aligned",
                vectors[n],
            )
            for index, n in enumerate(group)
        ]
        photo = PhotoRecord(key, person, f"{group[0]:064x}", "enrolled", "", len(faces), 250, 250)
        stores.catalog.put_photo(photo, faces)
    rss = peak_rss_mib()
    steps = {}
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        training_set = flow.gather(stores.catalog, "aligned")
        steps["gather"] = time.perf_counter() - started
        started = time.perf_counter()
        model, _ = flow.fit(training_set, TrainOptions(), ANALYSIS)
        steps["fit"] = time.perf_counter() - started
        started = time.perf_counter()
        runs = flow.evaluate(model, training_set, stores.faces.get)
        steps["evaluate"] = time.perf_counter() - started
        started = time.perf_counter()
        model, published = flow.publish(stores, model, training_set, runs)
        steps["publish"] = time.perf_counter() - started
    artifact = stores.models.get(published["model_key"])
    figures = flow.summaries(model, training_set, runs)
    return {
        "people": people,
        "faces": len(labels),
        "classifier": model.metadata["classifier"]["kind"],
        "cv": model.metadata["cv"]["mean"],
        "seconds": steps,
        "train_s": sum(steps.values()),
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_workspace_mib": rss,
        "artifact_mib": len(artifact) / 2**20,
        "held_out_faces": figures["facenet"]["held_out_faces"],
        "held_out_top1": figures["facenet"]["closed_set_accuracy"],
        "model_key": str(workspace / "models" / published["model_key"]),
        "model_sha256": published["model_sha256"],
    }


def identify_latencies(models: dict[str, tuple[str, str]], args) -> dict[str, dict]:
    """Warm identify of a one-face sample photo (analyser + the FaceNet engine) with each
    model (``{name: (artifact path, sha256)}``), interleaved round by round: p50 / p95 ms."""
    from facerec.engines.facenet import TrainedModel
    from facerec.flows.identify import identify_photo
    from facerec.vision.analyser import build_analyser
    from facerec.vision.assets import AssetPaths

    paths = AssetPaths(args.cache_dir)
    analyser = build_analyser(paths.cache_dir / "onnx", AnalysisSettings())
    photo = sorted((paths.sample_set / "val").glob("*/*.jpg"))[0].read_bytes()
    engines = {}
    for name, (path, _) in models.items():
        model = TrainedModel.from_bytes(Path(path).read_bytes())
        engines[name] = {"facenet": FaceNetEngine(lambda model=model: model)}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for round_ in range(IDENTIFY_REPEATS + 3):
        for name, chosen in engines.items():
            started = time.perf_counter()
            identify_photo(analyser, chosen, ("facenet",), photo)
            if round_ >= 3:  # warm-up rounds
                seconds[name].append(time.perf_counter() - started)
    return {
        name: {
            "p50_ms": float(np.median(values) * 1000),
            "p95_ms": float(np.percentile(values, 95) * 1000),
        }
        for name, values in seconds.items()
    }


def in_fresh_process(arguments: list[str]) -> dict:
    """Run this script with ``arguments`` in a new process; its JSON answer (last line)."""
    command = [sys.executable, __file__, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def training_function_memory_mb() -> int:
    """The training steps' Lambda memory in the synthesized config (infra.config)."""
    sys.path.insert(0, str(REPO_ROOT))
    from infra.config import load_config

    return load_config("dev").training.memory_mb


def cloud_estimate(product: dict, memory_mb: int) -> dict:
    """Lambda minutes and USD of one training at ``memory_mb``, from the steps measured here
    on one core (a Lambda function at 1,769 MB or more has at least one full vCPU)."""
    seconds = product["train_s"]
    return {
        "memory_mb": memory_mb,
        "lambda_minutes": seconds / 60,
        "usd": seconds * memory_mb / 1024 * LAMBDA_GB_SECOND_USD,
        "longest_step_s": max(product["seconds"].values()),
        "longest_step": max(product["seconds"], key=product["seconds"].get),
    }


def render_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Training at an organisation's scale",
        "",
        f"`{results['command']}`, {m['date']}; written by `bench/train_scale.py`. "
        f"{m['cores']} cores, load average at start {m['load_average_1_5_15']}, at end "
        f"{results['load_average_at_end']} (other work shares this machine). One BLAS "
        "thread throughout; every fit in a fresh process (peak RSS is that process's).",
        "",
        "## Candidates side by side",
        "",
        *(
            [
                "Measured in an earlier run of the same code (`--product-only` measured the "
                f"product again): {results['candidates_machine']['date']}, load average "
                f"{results['candidates_machine']['load_average_1_5_15']}.",
                "",
            ]
            if "candidates_machine" in results
            else []
        ),
        "Top-1: closed set, the enrolled people's asked faces. DIR: open set at FAR 1 % "
        "(the candidate's label accepted by the package's cohort score, the threshold at 1 % "
        "of the strangers' scores). State: the fitted arrays (weights; the gallery for the "
        "nearest face). Predict: one face, the classifier alone.",
        "",
        "| people | candidate | enrolled faces | fit (s) | peak RSS (MiB) | state (MiB) "
        "| predict 1 face (ms) | top-1 | DIR @ FAR 1 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["candidates"]:
        lines.append(
            f"| {row['people']:,} | {row['candidate']} | {row['enrolled_faces']:,} "
            f"| {row['fit_s']:.1f} | {row['peak_rss_mib']:.0f} | {row['state_mib']:.2f} "
            f"| {row['predict_one_ms']:.2f} | {row['top1']:.4f} | {row['dir_far_1pct']:.4f} |"
        )
    for row in results["skipped"]:
        lines.append(f"| {row['people']:,} | {row['candidate']} | not run: {row['why']} |")
    lines += [
        "",
        "## The product: `facerec train`'s steps",
        "",
        "flows.train on a SQLite workspace (gather, fit with `--classifier auto`, evaluate "
        "FaceNet and the nearest face on the held-out quarter, publish), one process per size.",
        "",
        "| people | faces | classifier | gather (s) | fit (s) | evaluate (s) | publish (s) "
        "| total (s) | peak RSS (MiB) | artifact (MiB) | held-out top-1 "
        "| identify p50 / p95 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    identify = results["identify"]
    for row in results["product"]:
        s = row["seconds"]
        latency = identify[str(row["people"])]
        lines.append(
            f"| {row['people']:,} | {row['faces']:,} | {row['classifier']} | {s['gather']:.1f} "
            f"| {s['fit']:.1f} | {s['evaluate']:.1f} | {s['publish']:.1f} | {row['train_s']:.1f} "
            f"| {row['peak_rss_mib']:.0f} | {row['artifact_mib']:.1f} "
            f"| {row['held_out_top1']:.4f} | {latency['p50_ms']:.1f} / {latency['p95_ms']:.1f} |"
        )
    base = identify["5"]
    lines += [
        "",
        f"Identify with a 5-person model in the same run, interleaved: p50 / p95 "
        f"{base['p50_ms']:.1f} / {base['p95_ms']:.1f} ms. At the largest size: "
        f"{results['identify_growth']:+.1%} at p50 (target: at most +10 %).",
        "",
        "## In the cloud",
        "",
        "Each step is its own Lambda invocation (15-minute limit); the steps above ran on one "
        "core, as a function of 1,769 MB or more has one full vCPU.",
        "",
        "| people | memory (MB) | longest step | its time (s) | Lambda minutes "
        "| USD per training |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["cloud"]:
        lines.append(
            f"| {row['people']:,} | {row['memory_mb']} | {row['longest_step']} "
            f"| {row['longest_step_s']:.0f} | {row['lambda_minutes']:.1f} | {row['usd']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW dev-train folder")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embeddings cache")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache")
    parser.add_argument("--people", type=int, nargs="+", default=PEOPLE)
    parser.add_argument("--product-people", type=int, nargs="+", default=PRODUCT_PEOPLE)
    parser.add_argument("--svc-max", type=int, default=SVC_MAX, help="largest SVC fitted")
    parser.add_argument("--quick", action="store_true", help="100 and 300 people only")
    parser.add_argument(
        "--product-only",
        action="store_true",
        help="measure the product again; keep the candidates of the results already written",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench", help="results folder")
    parser.add_argument("--fit", nargs=2, metavar=("CANDIDATE", "PEOPLE"), help=argparse.SUPPRESS)
    parser.add_argument("--product", type=int, metavar="PEOPLE", help=argparse.SUPPRESS)
    parser.add_argument("--workspaces", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.lfw = args.lfw.resolve()
    if args.fit:  # a child process: one candidate at one size
        print(json.dumps(run_candidate(args.fit[0], int(args.fit[1]), args)))
        return 0
    if args.product:
        print(json.dumps(run_product(args.product, args)))
        return 0
    if not (args.lfw / "images").is_dir():
        print(f"skipped: {args.lfw / 'images'} not found (the people are drawn from it)")
        return 0
    if args.quick:
        args.people, args.product_people = (100, 300), (100, 300)
    started = time.perf_counter()
    results = {
        "command": " ".join(["python bench/train_scale.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "candidates": [],
        "skipped": [],
    }
    load_embeddings(args.lfw, args.cache, args.cache_dir)  # once, before the children read it
    common = [
        "--lfw",
        str(args.lfw),
        "--cache",
        str(args.cache),
        "--cache-dir",
        str(args.cache_dir),
    ]
    if args.product_only:
        kept = json.loads((args.out / "train_scale.json").read_text())
        results |= {key: kept[key] for key in ("candidates", "skipped")}
        results["candidates_machine"] = kept.get("candidates_machine", kept["machine"])
    for people in [] if args.product_only else args.people:
        for name in CANDIDATES:
            why = skipped(name, people, args.svc_max)
            if why:
                results["skipped"].append({"candidate": name, "people": people, "why": why})
                continue
            row = in_fresh_process(["--fit", name, str(people), *common])
            results["candidates"].append(row)
            print(f"  {name} at {people}: {row}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        workspaces = ["--workspaces", folder, *common]
        products = [
            in_fresh_process(["--product", str(people), *workspaces])
            for people in (5, *args.product_people)
        ]
        for row in products:
            print(f"  product at {row['people']}: {row}", flush=True)
        identify = identify_latencies(
            {str(row["people"]): (row["model_key"], row["model_sha256"]) for row in products}, args
        )
    largest = str(max(args.product_people))
    memory = training_function_memory_mb()
    results |= {
        "product": [row for row in products if row["people"] != 5],
        "identify": identify,
        "identify_growth": identify[largest]["p50_ms"] / identify["5"]["p50_ms"] - 1,
        "cloud": [
            {"people": row["people"], **cloud_estimate(row, memory)}
            for row in products
            if row["people"] != 5
        ],
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "TRAINING_SCALE.md").write_text(render_markdown(results))
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
