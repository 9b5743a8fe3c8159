"""Peak memory and wall time of `facerec identify` on one large photo (issue 11, item 5).

Each case runs ``python -m facerec identify --json PHOTO`` in a child process of its own, on
a workspace trained on the sample set's train part; the child's peak resident memory is the
kernel's (``ru_maxrss`` from os.wait4). The photos: a 6000x6000 JPEG (a sample photo upscaled
30x: under 1 MB on disk, 36 MP decoded), a 4000x3000 one and the sample photo itself (200x200,
the ordinary case: its time is mostly the models loading). ``--before DIR`` also runs every
case on another checkout's code (its ``layers/`` first on the path), e.g. one made with
``git worktree add /tmp/before <commit>``. Writes decode_memory.json and MEMORY.md here.

    .venv/bin/python bench/decode_memory.py [--before DIR] [--workspace TRAINED_WORKSPACE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CACHE = REPO_ROOT / ".cache"
PHOTO = ("val", "madonna")  # the first photo of this person: 200x200, one face
CASES = {"6000x6000": (6000, 6000), "4000x3000": (4000, 3000), "ordinary": None}
LIMIT_MB = 1536  # the target: a single photo under 1.5 GB


def facerec(code: Path, *argv: str) -> dict:
    """Run the CLI of the checkout at ``code`` (its layers/ first on the path): its exit
    code, wall time (s), peak resident memory (MB), stdout and the end of its stderr."""
    environment = {**os.environ, "PYTHONPATH": str(code / "layers")}
    command = [sys.executable, "-m", "facerec", *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=environment)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    return {
        "exit": child.returncode,
        "wall_s": round(wall, 2),
        "peak_mb": round(usage.ru_maxrss / 1024),  # Linux reports KiB
        "stdout": stdout,
        "stderr": stderr[-2000:],
    }


def make_photos(folder: Path) -> dict[str, Path]:
    """The cases' JPEGs, made from one sample photo."""
    source = sorted((CACHE / "sample-set" / PHOTO[0] / PHOTO[1]).glob("*.jpg"))[0]
    photos = {}
    for name, size in CASES.items():
        if size is None:
            photos[name] = source
            continue
        photos[name] = folder / f"{name}.jpg"
        image = Image.open(source).convert("RGB")
        image.resize(size, Image.Resampling.BICUBIC).save(photos[name], quality=75)
    return photos


def trained_workspace(folder: Path) -> Path:
    """A workspace with the sample set's train part enrolled and a model trained on it all."""
    workspace = folder / "workspace"
    base = ["--workspace", str(workspace), "--cache-dir", str(CACHE)]
    ingest = facerec(REPO_ROOT, *base, "ingest", str(CACHE / "sample-set" / "train"))
    train = facerec(REPO_ROOT, *base, "train", "--test-size", "0")
    if ingest["exit"] not in (0, 3) or train["exit"] != 0:
        raise SystemExit(f"could not train the workspace:\n{ingest['stderr']}{train['stderr']}")
    return workspace


def answer(run: dict, photo: Path) -> dict:
    """What identify said about the photo: its size, faces (box, person) or its error."""
    if run["exit"] not in (0, 3):
        return {"error": run["stderr"].strip().splitlines()[-1:]}
    result = json.loads(run["stdout"])[str(photo)]
    if "error" in result:
        return {"error": result["error"]}
    return {
        "width": result["width"],
        "height": result["height"],
        "faces": [
            {"box": face["box"], "person": face.get("facenet", {}).get("person")}
            for face in result["faces"]
        ],
    }


def markdown(results: dict) -> str:
    rows = [
        "| code | photo | on disk (MB) | peak RSS (MB) | wall (s) | faces: person, box (left, "
        "top, width, height) |",
        "|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        found = run["answer"]
        faces = (
            "; ".join(
                f"{face['person']} ({face['box']['left']}, {face['box']['top']}, "
                f"{face['box']['width']}, {face['box']['height']})"
                for face in found["faces"]
            )
            if "faces" in found
            else f"error: {found['error']}"
        )
        case = results["cases"][run["case"]]
        photo = (
            run["case"] if run["case"] == case["pixels"] else f"{run['case']} ({case['pixels']})"
        )
        rows.append(
            f"| {run['code']} | {photo} | {case['megabytes']:.2f} | "
            f"{run['peak_mb']:,} | {run['wall_s']:.1f} | {faces} |"
        )
    machine = results["machine"]
    return "\n".join(
        [
            "# Peak memory of `facerec identify` on one photo",
            "",
            "Each row is one `facerec identify --json PHOTO` in a child process of its own "
            "(its peak resident memory as the kernel counts it, `ru_maxrss`), on a workspace "
            "trained on the sample set's train part. The wall time includes loading the "
            "models (the ordinary photo's row is about that alone). The large photos are one "
            "sample photo upscaled; the target is under "
            f"{LIMIT_MB:,} MB for a single photo.",
            "",
            *rows,
            "",
            (
                f"`before`: the code of {results['before_commit']}, before the detection "
                "budget (MTCNN scanned the whole photo); "
                if results["before_commit"]
                else ""
            )
            + "`after`: MTCNN scans at most `DetectorSettings.max_pixels` "
            f"({results['max_pixels']:,}) pixels, faces are mapped back to the photo's pixels "
            "and cropped from the full-resolution photo.",
            "",
            f"Machine: {machine['cores']} cores, {machine['platform']}, {machine['date']}; "
            f"load average (1, 5, 15 min) {machine['load_before']} before, "
            f"{machine['load_after']} after (other work shared the machine: wall times vary "
            "with it, peak memory does not).",
            "",
            f"Reproduce: `{results['command']}`",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--workspace", type=Path, help="a trained workspace to use as it is")
    args = parser.parse_args()
    from facerec.core.settings import DetectorSettings

    load_before = [round(value, 2) for value in os.getloadavg()]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        photos = make_photos(folder)
        workspace = args.workspace or trained_workspace(folder)
        codes = {"after": REPO_ROOT, **({"before": args.before} if args.before else {})}
        runs = []
        for case, photo in photos.items():
            for code, root in codes.items():
                argv = ["--workspace", str(workspace), "--cache-dir", str(CACHE)]
                run = facerec(root, *argv, "identify", "--json", str(photo))
                found = answer(run, photo)
                runs.append(
                    {
                        "code": code,
                        "case": case,
                        "exit": run["exit"],
                        "peak_mb": run["peak_mb"],
                        "wall_s": run["wall_s"],
                        "answer": found,
                    }
                )
                print(f"{code:<6} {case:<10} peak {run['peak_mb']:>6,} MB  {run['wall_s']:6.1f} s")
        cases = {
            case: {
                "pixels": "x".join(map(str, Image.open(photo).size)),
                "megabytes": round(photo.stat().st_size / 1e6, 3),
            }
            for case, photo in photos.items()
        }
    command = "make bench-memory" + (f" BEFORE={args.before}" if args.before else "")
    before_commit = None
    if args.before:
        before_commit = subprocess.run(
            ["git", "-C", str(args.before), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        command = f"git worktree add {args.before} {before_commit} && {command}"
    results = {
        "command": command,
        "before_commit": before_commit,
        "max_pixels": DetectorSettings().max_pixels,
        "limit_mb": LIMIT_MB,
        "machine": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": [round(value, 2) for value in os.getloadavg()],
        },
        "cases": cases,
        "runs": runs,
    }
    (HERE / "decode_memory.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "MEMORY.md").write_text(markdown(results))
    print(f"written: {HERE / 'decode_memory.json'}, {HERE / 'MEMORY.md'}")
    over = [run for run in runs if run["code"] == "after" and run["peak_mb"] > LIMIT_MB]
    if over:
        raise SystemExit(f"over {LIMIT_MB} MB: {over}")


if __name__ == "__main__":
    main()
