"""Scale-out benchmark: I/O-bound jobs per second with 1, 2 and 4 worker processes, one run.

    python -m bench.scale [--seconds-per-job 0.5] [--concurrency 8] [--work-s 8]

One private redis-server; for each count N, N real workers (`python -m worker_service --queue
diagnostics`, `JOB_CONCURRENCY` fixed) drain N x concurrency x work_s / seconds_per_job
`diagnostics` `sleep` jobs (each waits `seconds_per_job` without CPU, standing for an OpenAI call).
Prints jobs/s beside the linear expectation (the 1-worker rate x N) and each worker's CPU
seconds over the drain. The target is >= 0.9x linear: workers share nothing but Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from heavylift.queue import Priority, QueueName, Queues
from heavylift.settings import Settings
from local.launch import RedisServer, WorkerProcess

COUNTS = (1, 2, 4)
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


def cpu_seconds(worker: WorkerProcess) -> float:
    """User + system CPU of the worker and any children it started."""
    process = psutil.Process(worker.process.pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        times = member.cpu_times()
        total += times.user + times.system
    return total


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
        before = [cpu_seconds(p) for p in procs]
        seconds = asyncio.run(enqueue_and_drain(Settings(redis_url=redis.url), jobs,
                                                args.seconds_per_job))
        cpu = [cpu_seconds(p) - b for p, b in zip(procs, before, strict=True)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds-per-job", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--work-s", type=float, default=8.0,
                        help="ideal drain time of each round (jobs scale with N)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir / "redis", appendonly=False).start()
        try:
            rounds = [run_round(redis, workdir, n, args) for n in COUNTS]
        finally:
            redis.stop()
    print(table(rounds, args))


if __name__ == "__main__":
    main()
