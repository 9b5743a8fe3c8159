"""The served MTCNN (NumPy cascade, networks on ONNX Runtime) against the ``mtcnn`` package on
TensorFlow, on LFW dev-train photos (as stored, 150x150, then some resized to 250x250), in
one run: faces per photo, box IoU, landmark and confidence differences, and detection time
per photo for each.

Both detectors ``scan`` the same batches of 16 photos (the whole cascade: pyramid, three
networks, suppressions), the package's networks compiled (``compile_networks``); the order of
the two alternates from batch to batch so a change of load on the machine touches both. Faces
are paired by the highest IoU within a photo whose counts agree. Writes mtcnn_parity.json and
MTCNN.md here; skips with a message when the LFW folder is absent.

    .venv/bin/python bench/mtcnn_parity.py [--photos N] [--photos-250 N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw-devtrain"
MODELS = REPO_ROOT / ".cache" / "onnx"
BATCH = 16
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def machine() -> dict:
    """Date, cores, CPU model and flags, load average and library versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    first = cpuinfo.split("\n\n")[0].splitlines()
    fields = {
        key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first)
    }
    flags = set(fields.get("flags", "").split())
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": fields.get("model name", platform.processor()),
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "platform": platform.platform(),
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "libraries": {
            name: version(name)
            for name in ("numpy", "onnxruntime", "tensorflow-cpu", "mtcnn", "tf2onnx")
        },
    }


def box_iou(first: np.ndarray, second: np.ndarray) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    sides = np.minimum(first[2:], second[2:]) - np.maximum(first[:2], second[:2])
    intersection = float(np.prod(np.maximum(sides, 0)))
    areas = np.prod(first[2:] - first[:2]) + np.prod(second[2:] - second[:2])
    return intersection / float(areas - intersection)


def compare(ours: np.ndarray, reference: np.ndarray) -> list[tuple[float, float, float]]:
    """Rows of one photo, counts equal -> per face (IoU, landmark max |diff| px, |confidence
    diff|) against the reference row it overlaps most."""
    pairs = []
    for row in ours:
        overlaps = [box_iou(row[1:5], other[1:5]) for other in reference]
        match = reference[int(np.argmax(overlaps))]
        pairs.append(
            (max(overlaps), float(np.abs(row[6:16] - match[6:16]).max()), abs(row[5] - match[5]))
        )
    return pairs


def load(count: int | None, size: int | None) -> tuple[list[Path], list[np.ndarray]]:
    """The first ``count`` LFW photos (all: None), decoded; resized to ``size`` px square
    (bilinear) unless None."""
    from PIL import Image

    from facerec.vision.images import decode_image

    paths = sorted((LFW / "images").glob("*/*.jpg"))[:count]
    photos = [decode_image(path.read_bytes()) for path in paths]
    if size is not None:
        photos = [
            np.asarray(Image.fromarray(photo).resize((size, size), Image.Resampling.BILINEAR))
            for photo in photos
        ]
    return paths, photos


def agrees(mine: np.ndarray, theirs: np.ndarray) -> bool:
    """Same count, every box IoU > 0.99 and landmark within 1 px of its pair."""
    return len(mine) == len(theirs) and all(
        iou > 0.99 and landmark < 1.0 for iou, landmark, _ in compare(mine, theirs)
    )


def summary(
    counts: list[tuple[int, int]], pairs: list[tuple[float, float, float]], paths: list[Path]
) -> dict:
    """Counts (ours, package) per photo and the paired faces' (IoU, landmark px, confidence)
    differences -> the figures."""
    ious, landmarks, confidences = (np.asarray(column) for column in zip(*pairs, strict=True))
    agree = sum(mine == theirs for mine, theirs in counts)
    return {
        "faces": {
            "onnxruntime": sum(mine for mine, _ in counts),
            "tensorflow": sum(theirs for _, theirs in counts),
        },
        "count_agreement": {"photos": agree, "share": round(agree / len(counts), 5)},
        "count_mismatches": [
            str(path.relative_to(LFW))
            for path, (mine, theirs) in zip(paths, counts, strict=True)
            if mine != theirs
        ],
        "paired_faces": len(pairs),
        "iou": {
            "min": float(ious.min()),
            "p1": float(np.percentile(ious, 1)),
            "median": float(np.median(ious)),
            "under_0_99": int(np.sum(ious <= 0.99)),
        },
        "landmark_max_abs_px": {
            "max": float(landmarks.max()),
            "p99": float(np.percentile(landmarks, 99)),
            "over_1": int(np.sum(landmarks >= 1.0)),
        },
        "confidence_max_abs_difference": float(confidences.max()),
    }


def measure(paths: list[Path], photos: list[np.ndarray], ours, package) -> dict:
    """Both detectors on the same batches: time per photo; the faces against the package's in
    the same batch and, for the photos where those disagree, against the package's when
    it scans that photo alone (its batches can move a box: see MTCNN.md)."""
    for detector in (ours, package):  # warm up: first calls compile / allocate
        detector.scan(photos[:BATCH])
    load_before = [round(value, 2) for value in os.getloadavg()]
    seconds = {"tensorflow": 0.0, "onnxruntime": 0.0}
    batch_ms: dict[str, list[float]] = {"tensorflow": [], "onnxruntime": []}
    batched: dict[str, list] = {"counts": [], "pairs": []}
    alone: dict[str, list] = {"counts": [], "pairs": []}
    rechecked = []
    for number, start in enumerate(range(0, len(photos), BATCH)):
        batch = photos[start : start + BATCH]
        order = [("onnxruntime", ours), ("tensorflow", package)]
        rows = {}
        for name, detector in order if number % 2 else order[::-1]:
            began = time.perf_counter()
            rows[name] = detector.scan(batch)
            elapsed = time.perf_counter() - began
            seconds[name] += elapsed
            batch_ms[name].append(elapsed * 1000 / len(batch))
        for index, photo in enumerate(batch):
            mine = rows["onnxruntime"][rows["onnxruntime"][:, 0] == index]
            theirs = rows["tensorflow"][rows["tensorflow"][:, 0] == index]
            batched["counts"].append((len(mine), len(theirs)))
            if len(mine) == len(theirs):
                batched["pairs"] += compare(mine, theirs)
            if not agrees(mine, theirs):
                rechecked.append(str(paths[start + index].relative_to(LFW)))
                theirs = package.scan([photo])
            alone["counts"].append((len(mine), len(theirs)))
            if len(mine) == len(theirs):
                alone["pairs"] += compare(mine, theirs)
    return {
        "photos": len(photos),
        "shape": list(photos[0].shape),
        "against_package_batched": summary(batched["counts"], batched["pairs"], paths),
        "rechecked_alone": rechecked,
        "against_package_alone": summary(alone["counts"], alone["pairs"], paths),
        "ms_per_photo": {
            name: {
                "mean": round(seconds[name] * 1000 / len(photos), 2),
                "median_batch": round(float(np.median(batch_ms[name])), 2),
            }
            for name in seconds
        },
        "speedup": round(seconds["tensorflow"] / seconds["onnxruntime"], 2),
        "load_average_before": load_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }


def run(count: int | None, count_250: int) -> dict:
    """Both passes: the photos as they are, then ``count_250`` of them at 250x250."""
    sys.path.insert(0, str(REPO_ROOT / "layers"))
    from facerec.vision.detection import FaceDetector
    from facerec.vision.mtcnn_tf import PackageDetector
    from facerec.vision.runtime import ModelFiles

    ours, package = FaceDetector(ModelFiles(MODELS)), PackageDetector()
    passes = {}
    for label, (number, size) in {"as_stored": (count, None), "250x250": (count_250, 250)}.items():
        passes[label] = measure(*load(number, size), ours, package)
        print(label, json.dumps(passes[label]["against_package_alone"]["iou"]))
    return {"batch": BATCH, "passes": passes, "machine": machine()}


def figure_rows(name: str, figures: dict, photos: int) -> list[str]:
    """Table rows of one comparison (``summary``)."""
    iou, marks = figures["iou"], figures["landmark_max_abs_px"]
    agreement = figures["count_agreement"]
    return [
        f"| {name}: same face count | {agreement['photos']:,} of {photos:,} "
        f"({agreement['share']:.2%}) |",
        f"| {name}: faces (ONNX Runtime / TensorFlow), paired | "
        f"{figures['faces']['onnxruntime']:,} / {figures['faces']['tensorflow']:,}, "
        f"{figures['paired_faces']:,} |",
        f"| {name}: box IoU min / 1st percentile / median | {iou['min']:.5f} / "
        f"{iou['p1']:.5f} / {iou['median']:.5f} |",
        f"| {name}: boxes with IoU <= 0.99 | {iou['under_0_99']} |",
        f"| {name}: landmark max abs difference (px), max / 99th percentile | "
        f"{marks['max']:.4f} / {marks['p99']:.4f} |",
        f"| {name}: landmarks 1 px or more apart | {marks['over_1']} |",
        f"| {name}: confidence max abs difference | "
        f"{figures['confidence_max_abs_difference']:.2e} |",
    ]


def pass_lines(label: str, result: dict) -> list[str]:
    """One pass's section of MTCNN.md."""
    speed = result["ms_per_photo"]
    height, width = result["shape"][:2]
    rechecked = result["rechecked_alone"]
    return [
        f"## {label}: {result['photos']:,} photos of {width}x{height}",
        "",
        "| | |",
        "|---|---|",
        *figure_rows("package, same batch", result["against_package_batched"], result["photos"]),
        f"| photos rechecked against the package alone | {len(rechecked)} |",
        *figure_rows("package alone", result["against_package_alone"], result["photos"]),
        f"| ms per photo, mtcnn on TensorFlow (networks compiled): mean / median batch | "
        f"{speed['tensorflow']['mean']} / {speed['tensorflow']['median_batch']} |",
        f"| ms per photo, facerec.vision.mtcnn on ONNX Runtime: mean / median batch | "
        f"{speed['onnxruntime']['mean']} / {speed['onnxruntime']['median_batch']} |",
        f"| speed-up | {result['speedup']}x |",
        f"| load average (1, 5, 15 min) before / after | {result['load_average_before']} / "
        f"{result['load_average_after']} |",
        "",
        "Rechecked (all in mtcnn_parity.json): "
        + (", ".join(Path(path).stem for path in rechecked[:12]) if rechecked else "none")
        + (", ..." if len(rechecked) > 12 else ""),
        "",
    ]


def markdown(result: dict) -> str:
    meta = result["machine"]
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in meta["cpu_flags"].items())
    lines = [
        "# MTCNN on ONNX Runtime against the mtcnn package on TensorFlow",
        "",
        "`bench/mtcnn_parity.py`: the served detector (facerec.vision.mtcnn: NumPy stages around",
        "the three networks converted by facerec.vision.mtcnn_tf) and `mtcnn==1.0.0` on",
        f"TensorFlow scan the same LFW dev-train photos in batches of {result['batch']}, in one "
        "run.",
        "Faces are paired by the highest IoU within a photo whose counts agree.",
        "",
        "The package's faces of a photo can depend a little on the other photos of its batch:",
        "it sorts the whole batch's candidates by score before each suppression (equal scores",
        "then fall in another order) and its RNet and ONet outputs move by about 1e-7 with",
        "the batch's size. The served cascade sorts each photo's candidates apart, in the",
        "order the package gives that photo alone, so its faces do not depend on the batch.",
        "A photo where the two disagree in the same batch is therefore compared again with",
        "the package scanning it alone ('package alone').",
        "",
        "Each batch is",
        "timed for both detectors, in alternating order; a photo's time is its batch's `scan`",
        "(the whole cascade) divided by the batch's size. The stored LFW photos are 150x150;",
        "the second pass scans the first ones resized to 250x250 (bilinear).",
        "",
    ]
    for label, result_pass in result["passes"].items():
        lines += pass_lines(label, result_pass)
    lines += [
        "## Machine",
        "",
        f"- {meta['date']}, {meta['cores']} cores, {meta['cpu']} ({flags})",
        f"- load average (1, 5, 15 min) at the end: {meta['load_average_1_5_15']}",
        f"- {meta['platform']}; "
        + ", ".join(f"{name} {value}" for name, value in meta["libraries"].items()),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=None, help="first N photos (all)")
    parser.add_argument("--photos-250", type=int, default=3200, help="of them at 250x250")
    args = parser.parse_args()
    if not (LFW / "images").is_dir():
        print(f"skipped: the LFW dev-train photos are not at {LFW}")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = run(args.photos, args.photos_250)
    (HERE / "mtcnn_parity.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "MTCNN.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
