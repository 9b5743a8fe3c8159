"""Size of what the Lambda image installs to serve: its Python packages and the networks it
copies, now (ONNX Runtime, functions/requirements.txt, .cache/onnx) and before (TensorFlow,
the requirements and Keras weights of BEFORE).

Each set of requirements is installed the way it can be here without Docker:
``pip install --target DIR --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
--python-version 3.12 --implementation cp --only-binary=:all: --no-deps -r REQUIREMENTS``
(the image's wheels, downloaded from the package index; the files are pinned and fully
resolved, so ``--no-deps`` installs exactly them). Its size is the folder's disk usage (as
``du -sk``) and the files' bytes, per distribution too; pip byte-compiles the modules as it
does in the image (with this interpreter, not 3.12). The base image is not counted. Writes
install_size.json and INSTALL.md here.

    .venv/bin/python bench/install_size.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import distributions
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT / "layers"))

from packaging.utils import canonicalize_name  # noqa: E402

from facerec.vision.runtime import FACENET, MANIFEST, MTCNN  # noqa: E402

# The last commit whose image served TensorFlow: its requirements and the weights it copied.
BEFORE = "d29486277aed8d5ec0f53e9520c5a2e85eea8019"
BEFORE_MODELS = (REPO_ROOT / ".cache/facenet/facenet_keras.h5",)
NOW_MODELS = tuple(
    REPO_ROOT / ".cache/onnx" / name
    for name in (MANIFEST, "SHA256SUMS", *(f"{n}.onnx" for n in (*FACENET.values(), *MTCNN)))
)
PLATFORM = (
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux_2_28_x86_64",
    "--implementation",
    "cp",
    "--only-binary=:all:",
)
FALLBACK_PLATFORM = (*PLATFORM, "--platform", "manylinux_2_27_x86_64")
IMAGE_PYTHON, FALLBACK_PYTHON = "3.12", "3.11"
TARGET_MB = 300  # the serving install (packages and networks)
MB = 1024 * 1024
# What the image's packages serve, to read the figures by (distributions as pip names them).
ROLES = {
    "training and arrays": ("scipy", "numpy", "scikit-learn", "joblib", "threadpoolctl"),
    "network runtime": ("onnxruntime", "protobuf", "flatbuffers"),
    "gallery index (usearch, large galleries)": ("usearch", "numkong"),
    "report plots": ("matplotlib", "fonttools", "kiwisolver", "contourpy", "cycler"),
    "AWS SDK": ("boto3", "botocore", "s3transfer"),
    "photo decoding": ("pillow",),
}


def pinned(requirements: Path) -> list[str]:
    """The ``name==version`` lines of a requirements file."""
    lines = (line.split("#")[0].strip() for line in requirements.read_text().splitlines())
    return [line for line in lines if line]


def disk_usage(folder: Path) -> int:
    """Bytes of disk the folder takes, as ``du -sk`` counts them."""
    output = subprocess.run(["du", "-sk", str(folder)], capture_output=True, text=True, check=True)
    return int(output.stdout.split()[0]) * 1024


def file_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def pip_install(target: Path, python: str, *requirements: str, platforms=PLATFORM) -> bool:
    """``pip install --target`` for ``platforms`` and CPython ``python``; False if it failed."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-deps"]
    command += ["--target", str(target), *platforms, "--python-version", python, *requirements]
    return subprocess.run(command, capture_output=True).returncode == 0


def test_suite_bytes(folder: Path) -> int:
    """Bytes of the packages' own test suites (files under a folder named ``tests``)."""
    return sum(
        path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file() and "tests" in path.relative_to(folder).parts[:-1]
    )


def install(requirements: Path, target: Path) -> dict:
    """Install ``requirements`` into ``target`` for the image's platform; its sizes (MB). A
    pin the index has no CPython 3.12 wheel of is installed from its 3.11 manylinux_2_27 one
    instead and named in ``substituted`` (an image built against this index could not)."""
    substituted = []
    if not pip_install(target, IMAGE_PYTHON, "-r", str(requirements)):
        for pin in pinned(requirements):
            if not pip_install(target, IMAGE_PYTHON, pin):
                if not pip_install(target, FALLBACK_PYTHON, pin, platforms=FALLBACK_PLATFORM):
                    raise SystemExit(f"{pin}: no wheel for CPython {IMAGE_PYTHON} or 3.11")
                substituted.append(pin)
    per_distribution = {}
    for distribution in distributions(path=[str(target)]):
        paths = (target / str(file) for file in distribution.files or ())
        size = sum(path.stat().st_size for path in paths if path.is_file())
        per_distribution[canonicalize_name(distribution.metadata["Name"])] = round(size / MB, 1)
    largest = dict(sorted(per_distribution.items(), key=lambda item: -item[1]))
    return {
        "substituted": substituted,
        "distributions": len(per_distribution),
        "disk_mb": round(disk_usage(target) / MB, 1),
        "files_mb": round(file_bytes(target) / MB, 1),
        "test_suites_mb": round(test_suite_bytes(target) / MB, 1),
        "by_distribution_mb": largest,
    }


def models(paths: tuple[Path, ...]) -> dict:
    """The networks the image copies: MB per file, None when it is missing here."""
    sizes = {
        path.name: round(path.stat().st_size / MB, 1) if path.is_file() else None for path in paths
    }
    present = [size for size in sizes.values() if size is not None]
    return {
        "files_mb": sizes,
        "total_mb": round(sum(present), 1),
        "complete": len(present) == len(sizes),
    }


def measure(requirements: Path, networks: tuple[Path, ...], folder: Path) -> dict:
    packages = install(requirements, folder)
    files = models(networks)
    return {
        "packages": packages,
        "networks": files,
        # functions/Dockerfile deletes the packages' test suites after installing them.
        "total_mb": round(packages["disk_mb"] - packages["test_suites_mb"] + files["total_mb"], 1),
    }


def markdown(results: dict) -> str:
    before, now = results["before"], results["now"]
    rows = [
        ("Python packages (disk)", "packages", "disk_mb"),
        ("Python packages (file bytes)", "packages", "files_mb"),
        ("of which test suites (`tests/` folders)", "packages", "test_suites_mb"),
        ("Distributions", "packages", "distributions"),
        ("Networks copied", "networks", "total_mb"),
    ]
    table = ["| | TensorFlow (before) | ONNX Runtime (now) |", "|---|---:|---:|"]
    table += [f"| {label} | {before[part][key]} | {now[part][key]} |" for label, part, key in rows]
    table.append(f"| **Serving install** | **{before['total_mb']}** | **{now['total_mb']}** |")
    largest = [
        f"| {name} | {size} |"
        for name, size in list(now["packages"]["by_distribution_mb"].items())[:8]
    ]
    largest_before = [
        f"| {name} | {size} |"
        for name, size in list(before["packages"]["by_distribution_mb"].items())[:8]
    ]
    sizes = now["packages"]["by_distribution_mb"]
    roles = [
        f"| {role} | {', '.join(names)} | {round(sum(sizes.get(n, 0) for n in names), 1)} |"
        for role, names in ROLES.items()
    ]
    substituted = before["packages"]["substituted"]
    substitution = (
        [
            f"The package index has no CPython 3.12 wheel of {', '.join(substituted)}: it was "
            "measured from its CPython 3.11 (manylinux_2_27) wheel, which is about the same "
            "size; an image built against this index could not have installed it.",
            "",
        ]
        if substituted
        else []
    )
    machine = results["machine"]
    verdict = "met" if results["target_met"] else "NOT met"
    return "\n".join(
        [
            "# Serving install size (issue 12)",
            "",
            "What the Lambda image (functions/Dockerfile) installs to serve, in MB (MiB): its "
            "Python packages, installed for the image's platform (CPython 3.12, manylinux "
            "x86_64) with `pip install --target DIR --platform manylinux2014_x86_64 --platform "
            "manylinux_2_28_x86_64 --python-version 3.12 --implementation cp "
            "--only-binary=:all: --no-deps -r REQUIREMENTS`, and the network files it copies. "
            "Before: the requirements and Keras weights of commit "
            f"{results['before_commit']} (TensorFlow); now: functions/requirements.txt and "
            ".cache/onnx (ONNX Runtime, FaceNet fp32 and int8, MTCNN). The base image "
            "(public.ecr.aws/lambda/python:3.12) is not counted, nor are the packages' test "
            "suites, which the image deletes (both columns). Made by "
            "`.venv/bin/python bench/install_size.py`.",
            "",
            *table,
            "",
            f"Target: serving install at most {TARGET_MB} MB: **{verdict}** "
            f"({now['total_mb']} MB, {results['reduction_percent']}% less than before).",
            "",
            *substitution,
            "What the packages now serve (MB of files):",
            "",
            "| Serves | Distributions | MB |",
            "|---|---|---:|",
            *roles,
            "",
            "Largest distributions now (MB of files):",
            "",
            "| Distribution | MB |",
            "|---|---:|",
            *largest,
            "",
            "Largest distributions before (MB of files):",
            "",
            "| Distribution | MB |",
            "|---|---:|",
            *largest_before,
            "",
            "Networks now (MB): "
            + ", ".join(f"{name} {size}" for name, size in now["networks"]["files_mb"].items())
            + ".",
            "",
            f"Measured {results['date']} with pip {machine['pip']} on Python "
            f"{machine['python']} ({machine['platform']}); modules byte-compiled by this "
            "interpreter, as pip does in the image with its own; load average (1, 5, 15 min) "
            f"{machine['load_before']} before, {machine['load_after']} after. Sizes do not "
            "depend on load.",
            "",
        ]
    )


def main() -> None:
    load_before = [round(value, 2) for value in os.getloadavg()]
    pip_version = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        old = root / "requirements-before.txt"
        old.write_text(
            subprocess.run(
                ["git", "show", f"{BEFORE}:functions/requirements.txt"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        before = measure(old, BEFORE_MODELS, root / "before")
        now = measure(REPO_ROOT / "functions/requirements.txt", NOW_MODELS, root / "now")
    for name, result in (("before (TensorFlow)", before), ("now (ONNX Runtime)", now)):
        packages, networks = result["packages"], result["networks"]
        print(
            f"{name}: packages {packages['disk_mb']} MB on disk ({packages['files_mb']} MB of "
            f"files, {packages['distributions']} distributions), networks "
            f"{networks['total_mb']} MB{'' if networks['complete'] else ' (files missing)'}, "
            f"serving install {result['total_mb']} MB"
        )
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "before_commit": BEFORE,
        "target_mb": TARGET_MB,
        "target_met": now["total_mb"] <= TARGET_MB and now["networks"]["complete"],
        "reduction_percent": round(100 * (1 - now["total_mb"] / before["total_mb"]), 1),
        "before": before,
        "now": now,
        "machine": {
            "pip": pip_version,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": [round(value, 2) for value in os.getloadavg()],
        },
    }
    print(f"target <= {TARGET_MB} MB: {'met' if results['target_met'] else 'NOT met'}")
    (HERE / "install_size.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "INSTALL.md").write_text(markdown(results))
    print(f"written: {HERE / 'install_size.json'}, {HERE / 'INSTALL.md'}")


if __name__ == "__main__":
    main()
