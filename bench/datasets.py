"""Dataset sync vs a raw Storage Read API read of the same rows, at 1M and 5M emulator rows.

    python -m bench.datasets [--rows 5000000] [--small 1000000] [--rounds 3]

Starts the BigQuery emulator, a private Redis and one real worker (`python -m worker_service`,
file:// storage in a temp dir); seeds two tables of production/inbound forecast rows (so one
request selects all of them); then per size, `--rounds` times, alternating which goes first: a
raw read (one read session, every Arrow batch decoded, through the same gRPC channel settings)
and a sync to Parquet parts through the worker, measuring the worker's peak RSS (see _rss.py)
and the CPU time of the emulator and of the reading process. Rates are the best round of each
(they swing +-20% here with whatever else the 2 cores run), memory the highest round. Prints a
markdown table.
"""

from __future__ import annotations

# isort: off
# isort: on
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._rss import PeakRss, cpu_seconds
from heavylift.datasets import job
from heavylift.datasets.clients import open_clients
from heavylift.datasets.request import parse_request
from heavylift.datasets.sink import SyncManifest
from heavylift.queue import BlockingQueues, QueueName
from heavylift.settings import Settings
from local import sample_data
from local.bq_emulator import launch
from local.launch import RedisServer, child_env, free_port, wait_for
from tests.dataset_checks import read_table

RANGE = {"startDate": "2024-01-01", "endDate": "2025-12-31"}


class Cpu:
    """CPU seconds (user + system, all threads) the emulator and the reading process use inside
    the `with` block: both share the 2 cores, so the split explains the times."""

    def __init__(self, emulator_pid: int, reader_pid: int) -> None:
        self.pids = {"emulator": emulator_pid, "reader": reader_pid}
        self.used: dict[str, float] = {}

    def __enter__(self) -> Cpu:
        self.used = {name: -cpu_seconds(pid, children=False) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *_: object) -> None:
        for name, pid in self.pids.items():
            self.used[name] += cpu_seconds(pid, children=False)


def raw_read(settings: Settings, dataset: str, emulator_pid: int) -> dict[str, Any]:
    """One Storage Read API session over the whole table, every batch decoded."""
    clients = open_clients(settings)
    with Cpu(emulator_pid, os.getpid()) as cpu:
        started = time.perf_counter()
        rows = read_table(clients, dataset, "forecast").num_rows
        elapsed = time.perf_counter() - started
    clients.close()
    return {"rows": rows, "seconds": elapsed, "cpu": cpu.used}


def sync(
    settings: Settings, queues: BlockingQueues, dataset: str, worker_pid: int, emulator_pid: int
) -> dict[str, Any]:
    """One queued sync through the worker, enqueue to completed."""
    spec = parse_request({"datasetId": dataset, "environment": "production",
                          "volumeType": "inbound", "jobType": "forecast", **RANGE}, settings)
    with PeakRss(worker_pid, every_s=0.02) as rss, Cpu(emulator_pid, worker_pid) as cpu:
        started = time.perf_counter()
        job_id = queues.run(lambda q: job.enqueue(q, spec, 0))
        wait_for(lambda: queues.run(lambda q: q.view(QueueName.DATASETS, job_id)).state
                 in ("completed", "failed"), timeout=1200, interval=0.05)
        elapsed = time.perf_counter() - started
    view = queues.run(lambda q: q.view(QueueName.DATASETS, job_id))
    if view.state != "completed":
        raise SystemExit(f"sync failed: {view.failedReason}")
    root = Path(settings.storage_url.removeprefix("file://"))
    manifest = SyncManifest.model_validate_json((root / view.result["manifest"]).read_bytes())
    shutil.rmtree(root / "datasets" / job_id)  # ~200 MB at 5M rows
    return {"rows": manifest.totalRows, "seconds": elapsed, "peak": rss.peak, "idle": rss.idle,
            "cpu": cpu.used, "query": manifest.timings.materializeMs / 1000,
            "parts": len(manifest.parts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N, raw and sync alternating")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="heavylift-bench-datasets-"))
    redis = RedisServer(workdir)
    redis.start()
    emulator = launch(log_path=workdir / "emulator.log")
    env = {**emulator.env(), "REDIS_URL": redis.url, "STORAGE_URL": f"file://{workdir}/storage",
           "PORT": str(free_port()), "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    settings = Settings()
    worker: subprocess.Popen[bytes] | None = None
    queues = BlockingQueues(settings)
    try:
        sizes = {"bench_small": args.small, "bench_large": args.rows}
        clients = open_clients(settings)
        for dataset, rows in sizes.items():
            print(f"seeding {rows:,} rows into {dataset}...", file=sys.stderr)
            sample_data.load_table(clients, dataset, "forecast", rows,
                            environments=("production",), volume_types=("inbound",))
        clients.close()
        worker = subprocess.Popen([sys.executable, "-m", "worker_service"], env=child_env(**env))
        results = {}
        for dataset, rows in sizes.items():
            raws, syncs = [], []
            for round_number in range(args.rounds):
                print(f"{rows:,} rows, round {round_number + 1}/{args.rounds}: raw read + sync",
                      file=sys.stderr)
                # Who goes first alternates: the emulator slows as it keeps every read session.
                if round_number % 2:
                    syncs.append(sync(settings, queues, dataset, worker.pid, emulator.process.pid))
                raws.append(raw_read(settings, dataset, emulator.process.pid))
                if not round_number % 2:
                    syncs.append(sync(settings, queues, dataset, worker.pid, emulator.process.pid))
            best = min(syncs, key=lambda s: s["seconds"])
            results[rows] = (min(raws, key=lambda r: r["seconds"]),
                             {**best, "peak": max(s["peak"] for s in syncs)})
        print_table(results)
    finally:
        queues.close()
        if worker is not None:
            worker.terminate()
            worker.wait(15)
        emulator.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # ~200 MB of parts per run


def print_table(results: dict[int, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    sizes = list(results)
    print("| | " + " | ".join(f"{n:,} rows" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))

    def row(label: str, cells: list[str]) -> None:
        print(f"| {label} | " + " | ".join(cells) + " |")

    def rate(m: dict[str, Any], seconds: float | None = None) -> float:
        return float(m["rows"] / (seconds or m["seconds"]))

    pairs = [results[n] for n in sizes]
    row("raw Storage Read API read, rows/s (best round)", [f"{rate(r):,.0f}" for r, _ in pairs])
    row("sync to Parquet parts (worker job), rows/s (best round)",
        [f"{rate(s):,.0f}" for _, s in pairs])
    row("**ratio sync / raw**", [f"**{rate(s) / rate(r):.2f}x**" for r, s in pairs])
    row("sync wall time, s (of which query into result table)",
        [f"{s['seconds']:.1f} ({s['query']:.1f})" for _, s in pairs])
    row("ratio excluding the query step",
        [f"{rate(s, s['seconds'] - s['query']) / rate(r):.2f}x" for r, s in pairs])
    row("CPU s, raw: emulator + reader", [
        f"{r['cpu']['emulator']:.1f} + {r['cpu']['reader']:.1f}" for r, _ in pairs])
    row("CPU s, sync: emulator + worker", [
        f"{s['cpu']['emulator']:.1f} + {s['cpu']['reader']:.1f}" for _, s in pairs])
    row("parts", [str(s["parts"]) for _, s in pairs])
    row("worker RSS before the sync, MB", [f"{s['idle'] / 2**20:.0f}" for _, s in pairs])
    row("**worker peak RSS incl. children (highest round), MB**",
        [f"**{s['peak'] / 2**20:.0f}**" for _, s in pairs])


if __name__ == "__main__":
    main()
