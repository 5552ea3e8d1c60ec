"""Jobs of the `diagnostics` queue: health checks, tests and benchmarks exercise the runtime
with them (noop, sleep in the loop, a CPU burn off the loop, a failure, a hung call)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from heavylift.queue import JobKind, QueueName
from heavylift.runtime.context import JobContext
from heavylift.runtime.pool_child import Reporter


async def noop(ctx: JobContext) -> dict[str, Any]:
    return {"ok": True}


async def sleep(ctx: JobContext) -> dict[str, Any]:
    seconds = float(ctx.data.get("seconds", 1.0))
    steps = max(1, int(seconds * 10))
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        ctx.set_progress(100 * step / steps)
    return {"slept": seconds}


def burn_cpu(seconds: float, *, report: Reporter) -> int:
    """Busy-loop for `seconds` (would freeze an event loop; runs in a child process)."""
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    loops = 0
    last_reported = -1
    while (now := time.monotonic()) < deadline:
        loops += 1
        percent = int(100 * (now - start) / seconds)
        if percent != last_reported:
            report(percent / 100)
            last_reported = percent
    return loops


async def cpu(ctx: JobContext) -> dict[str, Any]:
    seconds = float(ctx.data.get("seconds", 1.0))
    limit = ctx.data.get("limitSeconds")
    loops = await ctx.offload(burn_cpu, seconds, span=(0, 100),
                              timeout_s=float(limit) if limit else None)
    return {"burned": seconds, "loops": loops, "attempt": ctx.attempt}


async def fail(ctx: JobContext) -> dict[str, Any]:
    raise RuntimeError(str(ctx.data.get("message", "diagnostic failure")))


async def flaky(ctx: JobContext) -> dict[str, Any]:
    """Fails its first `failures` starts (default 1), then succeeds. Counted in starts, which a
    retry (from the dashboard, say) does not reset, unlike attemptsMade."""
    failures = int(ctx.data.get("failures", 1))
    started = int(ctx.job.attemptsStarted)
    if started <= failures:
        raise RuntimeError(f"flaky failure {started} of {failures}")
    return {"ok": True, "starts": started}


async def hang(ctx: JobContext) -> dict[str, Any]:
    """A blocking call that does not return for `seconds` (default 600) and reports nothing, like
    a hung BigQuery read: exercises the SIGTERM deadline and the job watchdog."""
    seconds = float(ctx.data.get("seconds", 600.0))
    ctx.set_stage("hanging")
    await asyncio.to_thread(time.sleep, seconds)
    return {"hung": seconds}


KINDS = [JobKind(QueueName.DIAGNOSTICS, name, f"heavylift.diagnostics:{name}")
         for name in ("noop", "sleep", "cpu", "fail", "flaky", "hang")]
