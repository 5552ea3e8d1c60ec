"""Scale-out benchmark: I/O-bound jobs per second with 1, 2 and 4 worker processes, and one
large dataset sync with 1 and 2 workers; one run.

    python -m bench.scale [--seconds-per-job 0.5] [--concurrency 8] [--work-s 8]
                          [--sync-rows 20000000] [--streams 8]

One private redis-server; for each count N, N real workers (`python -m worker_service --queue
diagnostics`, `JOB_CONCURRENCY` fixed) drain N x concurrency x work_s / seconds_per_job
`diagnostics` `sleep` jobs (each waits `seconds_per_job` without CPU, standing for an OpenAI call).
Prints jobs/s beside the linear expectation (the 1-worker rate x N) and each worker's CPU
seconds over the drain. The target is >= 0.9x linear: workers share nothing but Redis.

The sync table (skipped with --sync-rows 0): the BigQuery emulator seeded with that many rows,
then the same sync three times: as one job reading one stream (SYNC_DISTRIBUTE_ROWS above the
size), and as a flow of up to --streams child jobs (`datasets.flow`) on 1 and on 2 workers
(default JOB_CONCURRENCY each). Rows/s from enqueue to completed, the workers' CPU seconds
(with their children) per 1M rows, the emulator's CPU, and whether the parts hold exactly the
source's rows (every row_id once).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench._rss import cpu_seconds
from heavylift.datasets import job
from heavylift.datasets.clients import open_clients
from heavylift.datasets.request import parse_request
from heavylift.datasets.sink import SyncManifest
from heavylift.queue import BlockingQueues, Priority, QueueName, Queues
from heavylift.queue.client import QueueUnavailableError
from heavylift.settings import Settings
from local import sample_data
from local.bq_emulator import BigQueryEmulator, launch
from local.launch import RedisServer, WorkerProcess, wait_for

COUNTS = (1, 2, 4)
CACHE = Path.home() / ".cache" / "heavylift-bench"
TARGET = 0.9


@dataclass
class Round:
    workers: int
    jobs: int
    seconds: float
    cpu_s: list[float]

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


async def enqueue_and_drain(settings: Settings, jobs: int, seconds_per_job: float) -> float:
    """Seconds from the first enqueue until no job is waiting or running."""
    queues = Queues(settings)
    queue = queues.bull(QueueName.DIAGNOSTICS)
    started = time.perf_counter()
    await queues.add_bulk(QueueName.DIAGNOSTICS, "sleep", [{"seconds": seconds_per_job}] * jobs,
                          Priority.REGULAR)
    while sum((await queue.getJobCounts("waiting", "prioritized", "active")).values()):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    await queues.close()
    return elapsed


def run_round(redis: RedisServer, workdir: Path, workers: int, args: argparse.Namespace) -> Round:
    redis.flush()
    env = {"JOB_CONCURRENCY": str(args.concurrency), "CPU_WORKERS": "1",
           "STORAGE_URL": f"file://{workdir / 'storage'}",
           "ARGS": "--queue diagnostics"}
    procs = [WorkerProcess(redis.url, None, **env) for _ in range(workers)]
    try:
        for proc in procs:
            proc.wait_ready(60)
        jobs = int(workers * args.concurrency * args.work_s / args.seconds_per_job)
        before = [cpu_seconds(p.process.pid) for p in procs]
        seconds = asyncio.run(enqueue_and_drain(Settings(redis_url=redis.url), jobs,
                                                args.seconds_per_job))
        cpu = [cpu_seconds(p.process.pid) - b for p, b in zip(procs, before, strict=True)]
    finally:
        for proc in procs:
            proc.stop()
    return Round(workers, jobs, seconds, cpu)


def table(rounds: list[Round], args: argparse.Namespace) -> str:
    base = rounds[0].rate
    ideal = args.concurrency / args.seconds_per_job
    lines = [
        f"{args.seconds_per_job:g} s sleep jobs, JOB_CONCURRENCY={args.concurrency} "
        f"(ceiling {ideal:g} jobs/s per worker)",
        "",
        "| workers | jobs | seconds | jobs/s | linear (1-worker rate x N) | vs linear "
        "| CPU s per worker |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rounds:
        cpu = ", ".join(f"{c:.2f}" for c in r.cpu_s)
        lines.append(f"| {r.workers} | {r.jobs} | {r.seconds:.2f} | {r.rate:.1f} | "
                     f"{base * r.workers:.1f} | {r.rate / (base * r.workers):.2f}x | {cpu} |")
    worst = min(r.rate / (base * r.workers) for r in rounds)
    lines += ["", f"Target >= {TARGET}x linear at every N: "
              f"{'met' if worst >= TARGET else 'NOT met'} (worst {worst:.2f}x)"]
    return "\n".join(lines)


@dataclass
class SyncRound:
    label: str
    rows: int
    seconds: float
    worker_cpu_s: float
    emulator_cpu_s: float
    parts: int
    exact: bool

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def seed(emulator: BigQueryEmulator, rows: int) -> None:
    settings = Settings(bq_emulator_host=emulator.rest_host,
                        bq_storage_emulator_host=emulator.grpc_host, bq_project=emulator.project)
    clients = open_clients(settings)
    seeded = 0

    def report(size: int) -> None:
        nonlocal seeded
        seeded += size
        print(f"\rseeding the emulator: {seeded:,} / {rows:,} rows", end="", file=sys.stderr)

    try:
        sample_data.load_table(clients, "bench_scale", "forecast", rows,
                               environments=("production",), volume_types=("inbound",),
                               on_rows=report)
    finally:
        clients.close()
    print(file=sys.stderr)


def exact_rows(storage: Path, manifest: SyncManifest, rows: int) -> bool:
    """Every source row once: the parts' row counts add up and every row_id is distinct."""
    ids = [pq.read_table(storage / part.key, columns=["row_id"])["row_id"]
           for part in manifest.parts]
    total = sum(len(column) for column in ids)
    distinct = pc.count_distinct(pa.chunked_array(
        [chunk for column in ids for chunk in column.chunks])).as_py() if ids else 0
    return total == rows == manifest.totalRows == distinct


def finished(queues: BlockingQueues, job_id: str) -> bool:
    """Done, completed or failed; a Redis answer slowed by a loaded machine just polls again."""
    try:
        return queues.run(lambda q: q.view(QueueName.DATASETS, job_id)).state in (
            "completed", "failed")
    except QueueUnavailableError:
        return False


def sync_round(
    redis: RedisServer, emulator: BigQueryEmulator, workdir: Path, label: str, workers: int,
    streams: int, rows: int,
) -> SyncRound:
    redis.flush()
    storage = workdir / "sync-storage"
    env = {**emulator.env(), "STORAGE_URL": f"file://{storage}", "ARGS": "--queue datasets"}
    procs = [WorkerProcess(redis.url, None, **env) for _ in range(workers)]
    settings = Settings(redis_url=redis.url, sync_distribute_rows=1 if streams > 1 else rows + 1,
                        sync_max_streams=streams, chunk_size=50_000)
    queues = BlockingQueues(settings)
    try:
        for proc in procs:
            proc.wait_ready(60)
        spec = parse_request({"datasetId": "bench_scale", "environment": "production",
                              "volumeType": "inbound", "jobType": "forecast",
                              "startDate": "2024-01-01", "endDate": "2025-12-31"}, settings)
        before = [cpu_seconds(p.process.pid) for p in procs]
        emulator_before = cpu_seconds(emulator.process.pid)
        started = time.perf_counter()
        job_id = queues.run(lambda q: job.enqueue(q, spec, rows))
        wait_for(lambda: finished(queues, job_id), timeout=3600, interval=0.05)
        seconds = time.perf_counter() - started
        worker_cpu = sum(cpu_seconds(p.process.pid) - b for p, b in zip(procs, before, strict=True))
        emulator_cpu = cpu_seconds(emulator.process.pid) - emulator_before
        view = queues.run(lambda q: q.view(QueueName.DATASETS, job_id))
        if view.state != "completed":
            raise SystemExit(f"{label}: the sync failed: {view.failedReason}")
        manifest = SyncManifest.model_validate_json(
            (storage / view.result["manifest"]).read_bytes())
        exact = exact_rows(storage, manifest, rows)
    finally:
        queues.close()
        for proc in procs:
            proc.stop()
        shutil.rmtree(storage, ignore_errors=True)  # ~40 MB of parts per 1M rows
    return SyncRound(label, manifest.totalRows, seconds, worker_cpu, emulator_cpu,
                     len(manifest.parts), exact)


def sync_table(rounds: list[SyncRound]) -> str:
    base = rounds[0].rate
    lines = [
        "| sync | rows | seconds | rows/s | vs one job | worker CPU-s per 1M rows "
        "| emulator CPU-s | parts | exact rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r.label} | {r.rows:,} | {r.seconds:.1f} | {r.rate:,.0f} | {r.rate / base:.2f}x "
            f"| {r.worker_cpu_s / (r.rows / 1e6):.2f} | {r.emulator_cpu_s:.1f} | {r.parts} "
            f"| {'yes' if r.exact else 'NO'} |")
    return "\n".join(lines)


def sync_rounds(workdir: Path, redis: RedisServer, args: argparse.Namespace) -> list[SyncRound]:
    # Seeding 20M rows takes minutes: the emulator's data is kept outside the repo for the next run.
    data = CACHE / f"bq-{args.sync_rows}"
    seeded = (data / "seeded").exists()
    data.mkdir(parents=True, exist_ok=True)
    emulator = launch(data_dir=data, log_path=workdir / "emulator.log", timeout_s=300)
    try:
        if not seeded:
            seed(emulator, args.sync_rows)
            (data / "seeded").touch()
        plans = [("one job, one read stream, 1 worker", 1, 1),
                 (f"flow of up to {args.streams} streams, 1 worker", 1, args.streams),
                 (f"flow of up to {args.streams} streams, 2 workers", 2, args.streams)]
        rounds = []
        for label, workers, streams in plans:
            print(f"sync: {label}...", file=sys.stderr)
            rounds.append(sync_round(redis, emulator, workdir, label, workers, streams,
                                     args.sync_rows))
        return rounds
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds-per-job", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--work-s", type=float, default=8.0,
                        help="ideal drain time of each round (jobs scale with N)")
    parser.add_argument("--sync-rows", type=int, default=20_000_000,
                        help="rows of the sync rounds (0: no sync rounds)")
    parser.add_argument("--streams", type=int, default=8, help="SYNC_MAX_STREAMS of the flows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir / "redis", appendonly=False).start()
        try:
            rounds = [run_round(redis, workdir, n, args) for n in COUNTS]
            syncs = sync_rounds(workdir, redis, args) if args.sync_rows else []
        finally:
            redis.stop()
    print(table(rounds, args))
    if syncs:
        print()
        print(sync_table(syncs))


if __name__ == "__main__":
    main()
