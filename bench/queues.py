"""Queue benchmark: heavylift beside bare bullmq and a raw redis-py LPUSH/BRPOP loop, one run.

    python -m bench.queues [--jobs 3000] [--redis-url redis://...]

Without --redis-url a private redis-server is started on a free loopback port. Prints a table:
enqueue rate (single, bulk), no-op processing rate at concurrency 1 and 8 (best of --rounds,
contenders interleaved), and enqueue->start latency p50/p99 at a light steady rate (50 jobs/s).
The same job options (3 attempts, backoff, priority, bounded history) are used for heavylift and
bare bullmq, so the difference is our layer.
"""

from __future__ import annotations

# isort: off
# isort: on
import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue, Worker

from heavylift.logs import configure_logging
from heavylift.queue import Priority, QueueName, Queues, bull_options, job_options
from heavylift.runtime.context import JobContext
from heavylift.runtime.runner import WorkerRuntime
from heavylift.settings import Settings
from local.launch import RedisServer, free_port

LATENCY_RATE = 50  # jobs/s
LATENCY_SECONDS = 4


async def flush(url: str) -> None:
    client = aioredis.from_url(url)
    await client.flushall()
    await client.aclose()


async def wait_drained(queue: Queue) -> None:
    """Completed jobs are trimmed to KEEP_COMPLETED, so count what is left to do instead."""
    while sum((await queue.getJobCounts("waiting", "prioritized", "active")).values()):
        await asyncio.sleep(0.02)


# --- producers -----------------------------------------------------------------------------


async def enqueue_bullmq(settings: Settings, jobs: int, bulk: bool) -> float:
    queue = Queue(QueueName.DIAGNOSTICS, bull_options(settings))
    opts = job_options(settings, Priority.REGULAR)
    started = time.perf_counter()
    if bulk:
        await queue.addBulk([{"name": "noop", "data": {}, "opts": opts}] * jobs)
    else:
        for _ in range(jobs):
            await queue.add("noop", {}, opts)
    elapsed = time.perf_counter() - started
    await queue.close()
    return jobs / elapsed


async def enqueue_heavylift(settings: Settings, jobs: int, bulk: bool) -> float:
    queues = Queues(settings)
    started = time.perf_counter()
    if bulk:
        await queues.add_bulk(QueueName.DIAGNOSTICS, "noop", [{}] * jobs, Priority.REGULAR)
    else:
        for _ in range(jobs):
            await queues.add(QueueName.DIAGNOSTICS, "noop", {}, Priority.REGULAR)
    elapsed = time.perf_counter() - started
    await queues.close()
    return jobs / elapsed


async def enqueue_raw(settings: Settings, jobs: int, bulk: bool) -> float:
    client = aioredis.from_url(settings.redis_connection_url())
    started = time.perf_counter()
    if bulk:
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(jobs):
                pipe.lpush("raw", b"{}")
            await pipe.execute()
    else:
        for _ in range(jobs):
            await client.lpush("raw", b"{}")
    elapsed = time.perf_counter() - started
    await client.aclose()
    return jobs / elapsed


# --- consumers -----------------------------------------------------------------------------

Handler = Callable[[dict[str, Any]], None]


def worker_opts(settings: Settings, concurrency: int) -> dict[str, Any]:
    return {**bull_options(settings), "concurrency": concurrency, "drainDelay": 1}


Stop = Callable[[], Awaitable[Any]]


async def start_bullmq(settings: Settings, concurrency: int, handle: Handler) -> Stop:
    async def process(job: Any, token: str) -> None:
        handle(job.data)

    worker = Worker(QueueName.DIAGNOSTICS, process, worker_opts(settings, concurrency))
    return worker.close


async def start_heavylift(settings: Settings, concurrency: int, handle: Handler) -> Stop:
    async def process(ctx: JobContext) -> None:
        handle(ctx.data)

    tuned = settings.model_copy(update={"job_concurrency": concurrency, "port": free_port(),
                                        "drain_delay_s": 1})
    runtime = WorkerRuntime(tuned, {QueueName.DIAGNOSTICS: {"noop": process}})
    await runtime.start()
    return runtime.stop


async def process_rate(settings: Settings, start: Any, jobs: int, concurrency: int) -> float:
    """Jobs wait in a paused queue while the worker starts, so start-up is not timed."""
    queue = Queue(QueueName.DIAGNOSTICS, bull_options(settings))
    await queue.pause()
    await enqueue_bullmq(settings, jobs, bulk=True)
    stop = await start(settings, concurrency, lambda data: None)
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    await queue.resume()
    await wait_drained(queue)
    elapsed = time.perf_counter() - started
    await stop()
    await queue.close()
    return jobs / elapsed


async def process_raw(settings: Settings, jobs: int, concurrency: int) -> float:
    await enqueue_raw(settings, jobs, bulk=True)
    url = settings.redis_connection_url()
    clients = [aioredis.from_url(url) for _ in range(concurrency)]
    done = 0
    started = time.perf_counter()

    async def consume(client: aioredis.Redis) -> None:
        nonlocal done
        while done < jobs:
            if await client.brpop(["raw"], timeout=0.2):
                done += 1

    await asyncio.gather(*(consume(c) for c in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.aclose()
    return jobs / elapsed


# --- latency -------------------------------------------------------------------------------


async def latency_queue(settings: Settings, start: Any, produce: Any) -> tuple[float, float]:
    samples: list[float] = []
    stop = await start(settings, 1, lambda data: samples.append(time.time() - data["t"]))
    await asyncio.sleep(1.5)  # the worker is idle and blocking, as in production
    total = LATENCY_RATE * LATENCY_SECONDS
    for _ in range(total):
        await produce({"t": time.time()})
        await asyncio.sleep(1 / LATENCY_RATE)
    while len(samples) < total:
        await asyncio.sleep(0.05)
    await stop()
    return percentiles(samples)


async def latency_raw(settings: Settings) -> tuple[float, float]:
    url = settings.redis_connection_url()
    producer, consumer = aioredis.from_url(url), aioredis.from_url(url)
    samples: list[float] = []
    total = LATENCY_RATE * LATENCY_SECONDS

    async def consume() -> None:
        while len(samples) < total:
            item = await consumer.brpop(["lat"], timeout=1)
            if item:
                samples.append(time.time() - float(item[1]))

    task = asyncio.ensure_future(consume())
    for _ in range(total):
        await producer.lpush("lat", repr(time.time()))
        await asyncio.sleep(1 / LATENCY_RATE)
    await task
    await producer.aclose()
    await consumer.aclose()
    return percentiles(samples)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


async def run(settings: Settings, jobs: int, rounds: int) -> list[tuple[str, dict[str, float]]]:
    """Each rate is the best of `rounds`, with the contenders interleaved round by round, so a
    burst of load from elsewhere on the machine does not land on one contender only."""
    url = settings.redis_connection_url()
    queues = Queues(settings)
    bull_queue = Queue(QueueName.DIAGNOSTICS, bull_options(settings))
    opts = job_options(settings, Priority.REGULAR)

    async def produce_heavylift(data: dict[str, Any]) -> None:
        await queues.add(QueueName.DIAGNOSTICS, "noop", data, Priority.REGULAR)

    async def produce_bullmq(data: dict[str, Any]) -> None:
        await bull_queue.add("noop", data, opts)

    Measure = Callable[[], Awaitable[float]]

    def measures(enqueue: Any, start: Any) -> dict[str, Measure]:
        return {
            "single": lambda: enqueue(settings, jobs, False),
            "bulk": lambda: enqueue(settings, jobs, True),
            "c1": lambda: process_rate(settings, start, jobs, 1),
            "c8": lambda: process_rate(settings, start, jobs, 8),
        }

    contenders: dict[str, dict[str, Measure]] = {
        "heavylift": measures(enqueue_heavylift, start_heavylift),
        "bare bullmq": measures(enqueue_bullmq, start_bullmq),
        "raw LPUSH/BRPOP": {
            "single": lambda: enqueue_raw(settings, jobs, False),
            "bulk": lambda: enqueue_raw(settings, jobs, True),
            "c1": lambda: process_raw(settings, jobs, 1),
            "c8": lambda: process_raw(settings, jobs, 8),
        },
    }
    rows: dict[str, dict[str, float]] = {name: {} for name in contenders}
    for round_number in range(rounds):
        # Alternate who goes first, so neither side always runs on a warmer or colder Redis.
        order = list(contenders.items())[:: -1 if round_number % 2 else 1]
        for metric in ("single", "bulk", "c1", "c8"):
            for name, measure in order:
                await flush(url)
                value = await measure[metric]()
                rows[name][metric] = max(value, rows[name].get(metric, 0.0))
        print(f"  round {round_number + 1}/{rounds} done", file=sys.stderr)
    for name, start, produce in (("heavylift", start_heavylift, produce_heavylift),
                                 ("bare bullmq", start_bullmq, produce_bullmq)):
        await flush(url)
        rows[name]["p50"], rows[name]["p99"] = await latency_queue(settings, start, produce)
    rows["raw LPUSH/BRPOP"]["p50"], rows["raw LPUSH/BRPOP"]["p99"] = await latency_raw(settings)
    await queues.close()
    await bull_queue.close()
    return list(rows.items())


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    header = ("| | enqueue single (jobs/s) | enqueue bulk (jobs/s) | process c=1 (jobs/s) "
              "| process c=8 (jobs/s) | latency p50 (ms) | latency p99 (ms) |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows:
        lines.append(
            f"| {name} | {row['single']:,.0f} | {row['bulk']:,.0f} | {row['c1']:,.0f} "
            f"| {row['c8']:,.0f} | {row['p50']:.2f} | {row['p99']:.2f} |"
        )
    base = dict(rows)["bare bullmq"]
    ours = dict(rows)["heavylift"]
    ratios = " ".join(f"{k}={ours[k] / base[k]:.2f}x" for k in ("single", "bulk", "c1", "c8"))
    lines.append(f"\nheavylift / bare bullmq: {ratios}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per rate measurement")
    parser.add_argument("--rounds", type=int, default=3, help="best of N, contenders interleaved")
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    args = parser.parse_args()
    # heavylift logs every job as JSON in production; pay that cost here too.
    configure_logging("INFO", open(os.devnull, "w"))  # noqa: SIM115
    server = None
    url = args.redis_url
    if url is None:
        server = RedisServer(Path(tempfile.mkdtemp()))
        server.start()
        url = server.url
    try:
        settings = Settings(redis_url=url)
        print(table(asyncio.run(run(settings, args.jobs, args.rounds))))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
