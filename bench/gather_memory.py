"""Gathering every labelled face for training at scale (issue 13): wall time and memory of
``labelled_faces`` (``DynamoCatalog.faces()``: paged Query calls on the labelled-face index
``gsi3``, never a Scan) on a moto table of N labelled faces, 128-d float32 unit embeddings,
10 faces a person (written 100 to a ``put_photo``, to load faster: the items are enrolment's).

Each N runs in a child process of its own. moto answers in that process and keeps caches of
its own while it does: ``faces_retained_mb`` (what the returned FaceRecords hold: tracemalloc,
after minus before, moto's allocations left out) is the gather's own; ``peak_mb``
(tracemalloc's peak over the memory before the call) and ``rss_peak_growth_mb`` (the peak
resident memory during an untraced call, VmHWM reset through /proc/self/clear_refs, over the
resident memory before it) include moto's work, so they bound it from above. The times are
moto's (about 2 ms a face), not DynamoDB's. Writes gather_memory.json here.

    .venv/bin/python bench/gather_memory.py [--faces 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import boto3
import numpy as np
from moto import mock_aws

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "layers")]

from facerec.core.records import FaceRecord, PhotoRecord  # noqa: E402
from facerec.storage.aws import DynamoCatalog  # noqa: E402
from facerec.storage.ports import labelled_faces  # noqa: E402
from tests.support import ENV, REGION, create_resources  # noqa: E402

FACES_PER_PHOTO = 100  # a put_photo call
MB = 2**20


def fill(catalog: DynamoCatalog, count: int) -> None:
    """``count`` labelled faces, 10 a person, ``FACES_PER_PHOTO`` to a photo."""
    rng = np.random.default_rng(0)
    for photo in range(count // FACES_PER_PHOTO):
        key = f"batch{photo:05d}/photo.jpg"
        vectors = rng.standard_normal((FACES_PER_PHOTO, 128)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        faces = [
            FaceRecord(
                f"{key}#{index}",
                key,
                index,
                f"person{(photo * FACES_PER_PHOTO + index) // 10:05d}",
                (10, 20, 110, 140),
                0.999,
                f"batch{photo:05d}/photo-{index}.png",
                "aligned",
                vector,
            )
            for index, vector in enumerate(vectors)
        ]
        record = PhotoRecord(
            key, f"batch{photo:05d}", f"sha-{photo}", "enrolled", "", len(faces), 640, 480
        )
        catalog.put_photo(record, faces)


def resident_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def one_face_bytes(face: FaceRecord) -> int:
    """getsizeof of one FaceRecord, its fields, its box's ints and its embedding's buffer
    (an owning ndarray's getsizeof counts it); not its instance ``__dict__`` (about 300 B)."""
    fields = [getattr(face, name) for name in face.__dataclass_fields__]
    values = [face, *fields, *face.box]
    return sum(sys.getsizeof(value) for value in values)


def case(count: int) -> dict:
    """One N in this process: load, then one untraced and one traced labelled_faces."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        create_resources(session)
        catalog = DynamoCatalog(session.resource("dynamodb"), ENV["CATALOG_TABLE"])
        start = time.perf_counter()
        fill(catalog, count)
        load_s = time.perf_counter() - start
        calls = {"Query": 0, "Scan": 0}

        def count_call(event_name, **_):
            calls[event_name.rsplit(".", 1)[-1]] += 1

        events = catalog.table.meta.client.meta.events
        for operation in calls:
            events.register(f"before-call.dynamodb.{operation}", count_call)

        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        rss_before = resident_kib("VmRSS")
        start = time.perf_counter()
        faces = labelled_faces(catalog, "aligned")
        faces_s = time.perf_counter() - start
        rss_peak_growth = (resident_kib("VmHWM") - rss_before) / 1024
        assert len(faces) == count and calls["Scan"] == 0, calls
        queries, per_face = calls["Query"], one_face_bytes(faces[0])
        del faces

        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        faces = labelled_faces(catalog, "aligned")
        peak = tracemalloc.get_traced_memory()[1]  # traced from just before the call
        assert len(faces) == count
        not_moto = [
            tracemalloc.Filter(False, "*/moto/*"),
            tracemalloc.Filter(False, "*/werkzeug/*"),
        ]
        held = sum(
            stat.size_diff
            for stat in tracemalloc.take_snapshot()
            .filter_traces(not_moto)
            .compare_to(before.filter_traces(not_moto), "filename")
        )
        tracemalloc.stop()
    return {
        "faces": count,
        "people": count // 10,
        "load_s": round(load_s, 1),
        "faces_s": round(faces_s, 1),
        "queries": queries,
        "scans": calls["Scan"],
        "faces_retained_mb": round(held / MB, 1),
        "faces_retained_bytes_per_face": round(held / count),
        "one_face_record_bytes": per_face,
        "embedding_bytes": 128 * 4,
        "peak_mb": round(peak / MB, 1),
        "rss_before_mb": round(rss_before / 1024),
        "rss_peak_growth_mb": round(rss_peak_growth, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[20_000])
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # the child's one N
    arguments = parser.parse_args()
    if arguments.case:
        print(json.dumps(case(arguments.case)))
        return
    results = []
    for count in arguments.faces:
        child = subprocess.run(
            [sys.executable, __file__, "--case", str(count)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(child.stdout))
        print(json.dumps(results[-1], indent=1))
    out = {
        "command": "bench/gather_memory.py --faces " + " ".join(map(str, arguments.faces)),
        "machine": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "cases": results,
    }
    (Path(__file__).parent / "gather_memory.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
