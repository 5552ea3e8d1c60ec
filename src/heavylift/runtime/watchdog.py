"""The job watchdog: an attempt that reports nothing (no `set_progress`, no `set_stage`) for
`JOB_STALL_TIMEOUT_S` is failed as a transient error, so it retries with backoff.

BullMQ's own stall detection only sees dead workers (an expired lock); a job stuck on a call that
never returns keeps its lock renewed forever, and only this watchdog ends it.
"""

from __future__ import annotations

import asyncio
import time

from heavylift.runtime.context import JobContext


class JobStuckError(RuntimeError):
    """An attempt made no progress for too long (transient: the next attempt may get through)."""


def stuck_reason(ctx: JobContext, timeout_s: float) -> str:
    where = f" in stage {ctx.stage!r}" if ctx.stage else ""
    return f"job made no progress for {timeout_s:g}s{where}"


async def watch_progress(ctx: JobContext, timeout_s: float) -> None:
    """Cancel the job's task once it has been silent for `timeout_s`; `ctx.stuck` says why.
    Cancel this watcher when the job ends."""
    while True:
        idle = time.monotonic() - ctx.last_activity
        if idle >= timeout_s:
            ctx.stuck = stuck_reason(ctx, timeout_s)
            if ctx.task is not None and not ctx.returned:
                ctx.task.cancel()
            return
        await asyncio.sleep(timeout_s - idle)
