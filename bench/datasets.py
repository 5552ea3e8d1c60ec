"""Dataset sync vs a raw Storage Read API read of the same rows, at 1M and 5M emulator rows.

    python bench/datasets.py [--rows 5000000] [--small 1000000]

Starts the BigQuery emulator, a private Redis and one real worker (`python -m worker_service`,
file:// storage in a temp dir); seeds two tables of production/inbound forecast rows (so one
request selects all of them); then per size: a raw read (one read session, every Arrow batch
decoded) and a sync to Parquet parts through the worker, sampling the worker's RSS (with its
child processes) every 20 ms. Prints a markdown table.
"""

from __future__ import annotations

# isort: off
import _paths  # noqa: F401 - first: fixes sys.path before anything imports `queue`
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

from google.cloud.bigquery_storage_v1 import types

from bench._rss import PeakRss
from heavylift.datasets import seed, service
from heavylift.datasets.clients import open_clients
from heavylift.datasets.request import parse_request
from heavylift.datasets.sink import Manifest
from heavylift.datasets.source import arrow_table
from heavylift.queue import QueueName, SyncQueues
from heavylift.settings import Settings
from local.bq_emulator import launch
from tests.servers import RedisServer, child_env, free_port, wait_for

RANGE = {"startDate": "2024-01-01", "endDate": "2025-12-31"}


def raw_read(settings: Settings, dataset: str) -> tuple[int, float]:
    """(rows, seconds) for one Storage Read API session over the whole table, decoded."""
    clients = open_clients(settings)
    started = time.perf_counter()
    session = clients.storage.create_read_session(
        parent=f"projects/{settings.bq_project}",
        read_session=types.ReadSession(
            table=f"projects/{settings.bq_project}/datasets/{dataset}/tables/forecast",
            data_format=types.DataFormat.ARROW,
        ),
        max_stream_count=1,
    )
    rows = arrow_table(session, clients.storage.read_rows(session.streams[0].name)).num_rows
    elapsed = time.perf_counter() - started
    clients.close()
    return rows, elapsed


def sync(settings: Settings, queues: SyncQueues, dataset: str, worker_pid: int) -> dict[str, Any]:
    spec = parse_request({"datasetId": dataset, "environment": "production",
                          "volumeType": "inbound", "jobType": "forecast", **RANGE}, settings)
    with PeakRss(worker_pid, every_s=0.02) as rss:
        started = time.perf_counter()
        job_id = service.enqueue(queues, spec, 0)
        wait_for(lambda: queues.run(lambda q: q.view(QueueName.DATASETS, job_id)).state
                 in ("completed", "failed"), timeout=1200, interval=0.05)
        elapsed = time.perf_counter() - started
    view = queues.run(lambda q: q.view(QueueName.DATASETS, job_id))
    if view.state != "completed":
        raise SystemExit(f"sync failed: {view.failedReason}")
    root = Path(settings.storage_url.removeprefix("file://"))
    manifest = Manifest.model_validate_json((root / view.result["manifest"]).read_bytes())
    return {"rows": manifest.totalRows, "seconds": elapsed, "peak": rss.peak,
            "query": manifest.timings.materializeMs / 1000, "parts": len(manifest.parts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small", type=int, default=1_000_000)
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
    queues = SyncQueues(settings)
    try:
        sizes = {"bench_small": args.small, "bench_large": args.rows}
        clients = open_clients(settings)
        for dataset, rows in sizes.items():
            print(f"seeding {rows:,} rows into {dataset}...", file=sys.stderr)
            seed.seed_table(clients, dataset, "forecast", rows,
                            environments=("production",), volume_types=("inbound",))
        clients.close()
        worker = subprocess.Popen([sys.executable, "-m", "worker_service"], env=child_env(**env))
        results = {}
        for dataset, rows in sizes.items():
            print(f"raw read + sync of {rows:,} rows...", file=sys.stderr)
            results[rows] = (raw_read(settings, dataset), sync(settings, queues, dataset,
                                                                worker.pid))
        print_table(results)
    finally:
        queues.close()
        if worker is not None:
            worker.terminate()
            worker.wait(15)
        emulator.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # ~200 MB of parts per run


def print_table(results: dict[int, tuple[tuple[int, float], dict[str, Any]]]) -> None:
    sizes = list(results)
    print("| | " + " | ".join(f"{n:,} rows" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))

    def row(label: str, cells: list[str]) -> None:
        print(f"| {label} | " + " | ".join(cells) + " |")

    raw = [results[n][0] for n in sizes]
    synced = [results[n][1] for n in sizes]
    row("raw Storage Read API read, rows/s", [f"{r / s:,.0f}" for r, s in raw])
    row("sync to Parquet parts (worker job), rows/s", [f"{s['rows'] / s['seconds']:,.0f}"
                                                      for s in synced])
    row("ratio sync / raw", [f"{(s['rows'] / s['seconds']) / (r / t):.2f}x"
                             for (r, t), s in zip(raw, synced, strict=True)])
    row("sync wall time, s (of which query into result table)",
        [f"{s['seconds']:.1f} ({s['query']:.1f})" for s in synced])
    row("ratio excluding the query step", [
        f"{(s['rows'] / (s['seconds'] - s['query'])) / (r / t):.2f}x"
        for (r, t), s in zip(raw, synced, strict=True)])
    row("parts", [str(s["parts"]) for s in synced])
    row("worker peak RSS incl. children, MB", [f"{s['peak'] / 2**20:.0f}" for s in synced])


if __name__ == "__main__":
    main()
