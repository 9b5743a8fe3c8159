"""Load benchmark of ``facerec serve``: latency and errors under concurrent clients, memory
over many requests, and how long an idle client delays others.

Builds a small trained workspace from the package's sample set (``facerec ingest`` of its
train part, ``facerec train``), starts ``facerec serve`` on a free loopback port as its own
process, then sends ``POST /identify`` with the sample set's validation photos: 300 requests
at concurrency 1, 4 and 16 (each client on its own kept-alive connection), 1,000 more for the
server's RSS growth (``VmRSS`` of /proc/<pid>/status), and requests with and without an idle
client holding a half-sent request open. Then it compares worker counts (``--compare``):
one server per count, alive together, answering blocks of 64 requests from 16 clients in
turn (the order reversed every round), so that a change in the machine's other load falls on
every count alike. Prints every figure beside its target and writes ``load_server.json`` and
``LOAD.md`` here. Not a test: it never fails on slowness.

Run ``.venv/bin/python bench/load_server.py [--threads 4] [--requests 300] [--compare 1,2,4]
[--rounds 6]`` (about 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from facerec.vision.assets import AssetPaths

REPO_ROOT = Path(__file__).resolve().parents[1]
FACEREC = REPO_ROOT / ".venv" / "bin" / "facerec"
CONCURRENCY = (1, 4, 16)
RSS_REQUESTS = 1000
COMPARE_BLOCK = 64
IDLE_SAMPLES = 30
HALF_SENT = b"POST /identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99\r\n\r\n{"
TARGETS = {
    "errors at c=16": "== 0",
    "p95 at c=16 (s)": "< 2",
    "RSS growth over 1,000 requests (MB)": "< 50",
    "delay from an idle client (ms)": "< 100",
}


CACHE = Path(os.environ.get("FACEREC_CACHE_DIR", REPO_ROOT / ".cache"))


def command(workspace: Path, *arguments: str) -> list[str]:
    """A ``facerec`` command line over ``workspace`` with the weights of ``make setup``."""
    return [str(FACEREC), "--workspace", str(workspace), "--cache-dir", str(CACHE), *arguments]


def facerec(workspace: Path, *arguments: str, accept: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run(
        command(workspace, *arguments),
        stdout=subprocess.DEVNULL,
    )
    if done.returncode not in accept:
        sys.exit(f"facerec {arguments[0]} failed (exit {done.returncode})")


def build_workspace(workspace: Path, sample_set: Path) -> None:
    """The sample set's train part enrolled and a model trained on all of it."""
    # Exit 3: a few photos rejected or without a face, as expected of the sample set.
    facerec(workspace, "ingest", "--quiet", str(sample_set / "train"), accept=(0, 3))
    facerec(workspace, "train", "--test-size", "0")


class Served:
    """``facerec serve`` as a child process on a free loopback port."""

    def __init__(self, workspace: Path, threads: int):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log: deque[str] = deque(maxlen=40)  # the server's last lines of log (stderr)
        self.process = subprocess.Popen(
            command(workspace, "serve", "--port", str(self.port), "--threads", str(threads)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self.log.extend, args=(self.process.stderr,), daemon=True).start()
        started = time.perf_counter()
        for line in self.process.stdout:
            if line.startswith("Ctrl-C stops"):
                break
        else:
            self.process.wait(timeout=30)
            sys.exit("facerec serve did not start:\n" + "".join(self.log))
        self.start_seconds = time.perf_counter() - started
        self.token = (workspace / "serve-token").read_text().strip()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Client:
    """One kept-alive connection sending POST /identify; reconnects after an error."""

    def __init__(self, served: Served):
        self.served, self.connection = served, None

    def identify(self, body: bytes) -> tuple[float, int | str]:
        """(seconds, HTTP status or the exception's name)."""
        started = time.perf_counter()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.served.port, timeout=120
                )
            self.connection.request(
                "POST",
                "/identify",
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.served.token}",
                },
            )
            response = self.connection.getresponse()
            response.read()
            outcome: int | str = response.status
        except (OSError, http.client.HTTPException) as error:
            outcome = type(error).__name__
            self.connection.close()
            self.connection = None
        return time.perf_counter() - started, outcome


def load(served: Served, bodies: list[bytes], concurrency: int, requests: int) -> dict:
    """``requests`` identify calls from ``concurrency`` clients -> latency figures (s)."""
    clients = [Client(served) for _ in range(concurrency)]
    results: list[tuple[float, int | str]] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def work(client: Client) -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            outcome = client.identify(bodies[index % len(bodies)])
            with lock:
                results.append(outcome)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(work, clients))
    elapsed = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _ in results)
    errors = [outcome for _, outcome in results if outcome != 200]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
        "max_s": round(latencies[-1], 3),
        "errors": len(errors),
        "error_kinds": sorted({str(outcome) for outcome in errors}),
        "throughput_rps": round(len(results) / elapsed, 2),
    }


def idle_delay(served: Served, body: bytes) -> dict:
    """Median identify latency alone and beside an idle client holding a half-sent request
    open (the old one-at-a-time server waited on it until it went away), measured in
    alternation so that a change in the machine's other load falls on both."""
    client = Client(served)
    alone, beside = [], []
    for _ in range(IDLE_SAMPLES):
        alone.append(client.identify(body))
        with socket.create_connection(("127.0.0.1", served.port)) as idle:
            idle.sendall(HALF_SENT)
            time.sleep(0.05)  # the server has it before the measured request
            beside.append(client.identify(body))
    alone_s = statistics.median(seconds for seconds, _ in alone)
    beside_s = statistics.median(seconds for seconds, _ in beside)
    return {
        "alone_ms": round(alone_s * 1000, 1),
        "with_idle_client_ms": round(beside_s * 1000, 1),
        "delay_ms": round((beside_s - alone_s) * 1000, 1),
        "errors": sum(outcome != 200 for _, outcome in alone + beside),
        "samples": IDLE_SAMPLES,
    }


def started(workspace: Path, bodies: list[bytes], threads: int) -> Served:
    """A server, warmed up: each photo once (TensorFlow traces its graphs)."""
    served = Served(workspace, threads)
    for body in bodies:
        Client(served).identify(body)
    return served


def measure(workspace: Path, bodies: list[bytes], threads: int, requests: int) -> dict:
    served = started(workspace, bodies, threads)
    try:
        run: dict = {"threads": threads, "start_s": round(served.start_seconds, 1), "levels": []}
        rss_start = served.rss_mb()
        for concurrency in CONCURRENCY:
            figures = load(served, bodies, concurrency, requests)
            run["levels"].append(figures)
            print(
                f"threads {threads}  c={concurrency:<3} p50 {figures['p50_s']:.3f} s  "
                f"p95 {figures['p95_s']:.3f} s  max {figures['max_s']:.3f} s  "
                f"errors {figures['errors']}  {figures['throughput_rps']} req/s",
                flush=True,
            )
        run["rss_mb"] = {
            "after_warm_up": round(rss_start, 1),
            "after_levels": round(served.rss_mb(), 1),
        }
        before = served.rss_mb()
        figures = load(served, bodies, 4, RSS_REQUESTS)
        after = served.rss_mb()
        run["rss_mb"].update(
            before_1000=round(before, 1),
            after_1000=round(after, 1),
            growth_over_1000=round(after - before, 1),
        )
        run["rss_run_errors"] = figures["errors"]
        run["idle"] = idle_delay(served, bodies[0])
        print(
            f"RSS {run['rss_mb']['after_warm_up']:.0f} MB after warm-up, "
            f"{before:.0f} -> {after:.0f} MB over {RSS_REQUESTS} requests "
            f"({figures['errors']} errors); an idle client delays a request by "
            f"{run['idle']['delay_ms']} ms ({run['idle']['alone_ms']} ms alone)",
            flush=True,
        )
        return run
    finally:
        served.stop()


def compare(workspace: Path, bodies: list[bytes], counts: list[int], rounds: int) -> list[dict]:
    """Per worker count, the medians over ``rounds`` blocks of COMPARE_BLOCK requests from 16
    clients, the counts' blocks in turn (reversed every other round)."""
    servers: dict[int, Served] = {}
    blocks: dict[int, list[dict]] = {count: [] for count in counts}
    try:
        for count in counts:
            servers[count] = started(workspace, bodies, count)
        for round_ in range(rounds):
            for count in counts if round_ % 2 == 0 else counts[::-1]:
                blocks[count].append(load(servers[count], bodies, 16, COMPARE_BLOCK))
    finally:
        for served in servers.values():
            served.stop()
    summary = [
        {
            "threads": count,
            "blocks": rounds,
            "median_p50_s": round(statistics.median(b["p50_s"] for b in blocks[count]), 3),
            "median_p95_s": round(statistics.median(b["p95_s"] for b in blocks[count]), 3),
            "median_rps": round(statistics.median(b["throughput_rps"] for b in blocks[count]), 2),
            "errors": sum(b["errors"] for b in blocks[count]),
        }
        for count in counts
    ]
    for row in summary:
        print(
            f"compare: {row['threads']} workers, 16 clients: median p50 {row['median_p50_s']} s, "
            f"p95 {row['median_p95_s']} s, {row['median_rps']} req/s, {row['errors']} errors",
            flush=True,
        )
    return summary


def markdown(result: dict) -> str:
    lines = [
        "# `facerec serve` under load",
        "",
        f"Measured {result['date']} on {result['machine']['cpus']} cores "
        f"({result['machine']['processor']}), load average (1, 5, 15 min) "
        f"{result['machine']['load_average_before']} before and "
        f"{result['machine']['load_average_after']} after (other work on the machine counts "
        "in it as well as this benchmark).",
        "",
        f"Reproduce: `{result['command']}` (or `make bench-load`).",
        "",
        f"`POST /identify` with one of the sample set's {result['photos']} validation photos "
        "(250x250 JPEG, one face), each client on a kept-alive connection, after a warm-up.",
        "",
        "| workers | clients | requests | p50 (s) | p95 (s) | max (s) | errors | req/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    main = result["run"]
    for level in main["levels"]:
        lines.append(
            f"| {main['threads']} | {level['concurrency']} | {level['requests']} | "
            f"{level['p50_s']:.3f} | {level['p95_s']:.3f} | {level['max_s']:.3f} | "
            f"{level['errors']} | {level['throughput_rps']} |"
        )
    lines += [
        "",
        f"With {main['threads']} workers: server RSS "
        f"{main['rss_mb']['after_warm_up']} MB after warm-up, "
        f"{main['rss_mb']['before_1000']} -> {main['rss_mb']['after_1000']} MB over "
        f"{RSS_REQUESTS:,} more requests (growth {main['rss_mb']['growth_over_1000']} MB, "
        f"{main['rss_run_errors']} errors). An idle client holding a half-sent request open "
        f"delays another request by {main['idle']['delay_ms']} ms (median of "
        f"{main['idle']['samples']}: {main['idle']['alone_ms']} ms alone, "
        f"{main['idle']['with_idle_client_ms']} ms beside it, measured in alternation; "
        f"{main['idle']['errors']} errors).",
        "",
        "| target (issue 11) | measured | met |",
        "| --- | ---: | :---: |",
    ]
    for name, (value, target, met) in result["targets"].items():
        lines.append(f"| {name} {target} | {value} | {'yes' if met else 'no'} |")
    if result["compare"]:
        lines += [
            "",
            f"Worker counts compared (`--compare`): one server per count, alive together, "
            f"{result['compare'][0]['blocks']} blocks of {COMPARE_BLOCK} requests from 16 "
            "clients each, in turn; medians over the blocks.",
            "",
            "| workers | p50 (s) | p95 (s) | req/s | errors |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in result["compare"]:
            lines.append(
                f"| {row['threads']} | {row['median_p50_s']:.3f} | {row['median_p95_s']:.3f} | "
                f"{row['median_rps']} | {row['errors']} |"
            )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=4, help="workers of the main run")
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency")
    parser.add_argument("--compare", default="1,2,4", help="worker counts to compare ('': none)")
    parser.add_argument("--rounds", type=int, default=6, help="blocks per compared count")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    counts = [int(value) for value in args.compare.split(",") if value]

    sample_set = AssetPaths(CACHE).sample_set
    if not (sample_set / "val").is_dir():
        sys.exit(f"no sample set in {CACHE}: run `make setup` first")
    photos = sorted((sample_set / "val").rglob("*.jpg"))
    bodies = [
        json.dumps({"image": base64.b64encode(photo.read_bytes()).decode()}).encode()
        for photo in photos
    ]
    load_before = [round(value, 2) for value in os.getloadavg()]
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder) / "workspace"
        build_workspace(workspace, sample_set)
        main_run = measure(workspace, bodies, args.threads, args.requests)
        compared = compare(workspace, bodies, counts, args.rounds) if counts else []
    high = main_run["levels"][-1]
    values = {
        "errors at c=16": (high["errors"], high["errors"] == 0),
        "p95 at c=16 (s)": (high["p95_s"], high["p95_s"] < 2),
        "RSS growth over 1,000 requests (MB)": (
            main_run["rss_mb"]["growth_over_1000"],
            main_run["rss_mb"]["growth_over_1000"] < 50,
        ),
        "delay from an idle client (ms)": (
            main_run["idle"]["delay_ms"],
            main_run["idle"]["delay_ms"] < 100,
        ),
    }
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(["bench/load_server.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
        },
        "photos": len(photos),
        "run": main_run,
        "compare": compared,
        "targets": {name: (value, TARGETS[name], met) for name, (value, met) in values.items()},
    }
    for name, (value, target, met) in result["targets"].items():
        print(f"{name:<40} {value!s:>8}  target {target:<6} {'met' if met else 'NOT met'}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_server.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "LOAD.md").write_text(markdown(result))
    print(f"wrote {args.out / 'load_server.json'} and {args.out / 'LOAD.md'}")


if __name__ == "__main__":
    main()
