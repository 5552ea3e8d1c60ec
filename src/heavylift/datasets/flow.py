"""A distributed sync: one `datasets` job as the parent of a BullMQ flow, one child job per slice
of its read, so every worker serving the queue copies part of it.

The parent (the sync's own job, so its id, status route and manifest stay those of any sync):
1. plans: the query into the result table and the read split into slices (`DatasetSync`,
   saved in `checkpoint.json` with a plan id);
2. adds one `sync-slice` child per slice (job id `<syncId>-<planId>-s<k>`: adding it again is a
   no-op, so a parent that dies here just adds them again) and moves itself to BullMQ's
   `waiting-children` (`WaitingChildrenError`): it holds no worker while the children run;
3. runs again when the last child completes (BullMQ moves it back to waiting) and merges the
   children's records into `manifest.json` (`DatasetSync.finish`).

Children are added with `continueParentOnFailure`: a child that fails for good (its own attempts
used up, or cancelled) wakes the parent at once, which cancels the other children and fails the
sync naming that slice. Retrying the failed sync retries its failed children, which resume where
they stopped. Each child resumes at its recorded offset after a crash (`datasets.slices`).

Progress: each child records its rows in a hash beside the parent's job and sets the parent's
progress to the sum over the total (`PARENT_PROGRESS`, one script: monotonic, one event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bullmq import WaitingChildrenError
from pydantic import BaseModel

from heavylift.datasets.copy import copy_chunks, sync_job_errors
from heavylift.datasets.engine import DatasetSync, SyncResult
from heavylift.datasets.job import QUEUE, SLICE_KIND
from heavylift.datasets.sink import SliceInfo
from heavylift.datasets.slices import PlanMissingError, SliceSync
from heavylift.queue import Priority, Queues, own_key
from heavylift.queue.client import JobNotFoundError, JobStateError
from heavylift.runtime.context import JobContext, PermanentJobError
from heavylift.settings import Settings

log = logging.getLogger("heavylift.datasets")

# KEYS: the sync's rows hash, the parent's job hash, the queue's events stream and meta hash.
# ARGV: slice index, its rows written, the sync's total rows, the parent's id. Sets the parent's
# progress to sum(rows) / total when that moves it forward, with the event BullMQ's own
# updateProgress writes (one script, so two children's updates cannot overtake each other).
PARENT_PROGRESS = """
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("EXPIRE", KEYS[1], 604800)
if redis.call("EXISTS", KEYS[2]) == 0 then return false end
local sum = 0
for _, rows in ipairs(redis.call("HVALS", KEYS[1])) do sum = sum + tonumber(rows) end
local percent = math.min(100, math.floor(sum * 1000 / math.max(1, tonumber(ARGV[3]))) / 10)
local shown = tonumber(redis.call("HGET", KEYS[2], "progress") or "0") or 0
if percent <= shown then return false end
local max_events = redis.call("HGET", KEYS[4], "opts.maxLenEvents") or 10000
redis.call("HSET", KEYS[2], "progress", tostring(percent))
redis.call("XADD", KEYS[3], "MAXLEN", "~", max_events, "*", "event", "progress",
           "jobId", ARGV[4], "data", tostring(percent))
return tostring(percent)
"""


class SliceJob(BaseModel):
    """A child's data: which sync, which plan, which slice; `tenant` scopes its status route."""

    syncId: str
    planId: str
    slice: int
    tenant: str


def child_id(sync_id: str, plan_id: str, index: int) -> str:
    return f"{sync_id}-{plan_id}-s{index:03d}"


@asynccontextmanager
async def _queues(settings: Settings) -> AsyncIterator[Queues]:
    queues = Queues(settings)
    try:
        yield queues
    finally:
        await queues.close()


# --- the parent ------------------------------------------------------------------------------


async def run_parent(ctx: JobContext, sync: DatasetSync) -> SyncResult:
    """Plan, add the children and wait for them; once they are done, merge and finish."""
    await asyncio.to_thread(sync.start, ctx.attempt)
    unfinished = [] if sync.completed else await asyncio.to_thread(sync.unfinished_slices)
    if unfinished:
        async with _queues(ctx.settings) as queues:
            try:
                await _fail_if_a_child_failed(ctx, queues, sync)
                await _add_children(ctx, queues, sync, unfinished)
                if await ctx.job.moveToWaitingChildren(ctx.token, {}):
                    raise WaitingChildrenError()
            except asyncio.CancelledError:
                if ctx.cancelled:
                    await _cancel_children(queues, sync)
                raise
    ctx.set_stage("merge")
    result = await asyncio.to_thread(sync.finish)
    async with _queues(ctx.settings) as queues:
        await queues.redis.delete(_rows_key(ctx.settings, sync.sync_id))
    ctx.set_progress(100)
    return result


def _children(sync: DatasetSync) -> list[str]:
    plan = sync.plan
    return [child_id(sync.sync_id, plan.planId or "", part.index) for part in plan.slices]


async def _add_children(
    ctx: JobContext, queues: Queues, sync: DatasetSync, slices: list[SliceInfo]
) -> None:
    """A child for each of `slices` (the unfinished ones: a finished slice's child may be gone
    from Redis, KEEP_COMPLETED), at the parent's priority; children that failed in an earlier
    run of the parent (the sync was retried) are retried, resuming."""
    plan = sync.plan
    priority = Priority(int(ctx.job.opts.get("priority", Priority.REGULAR)))
    for part in slices:
        job_id = child_id(sync.sync_id, plan.planId or "", part.index)
        data = SliceJob(syncId=sync.sync_id, planId=plan.planId or "", slice=part.index,
                        tenant=sync.spec.tenant)
        await queues.add(QUEUE, SLICE_KIND.name, data.model_dump(), priority, job_id=job_id,
                         parent_id=ctx.id)
        if (await queues.view(QUEUE, job_id)).state == "failed":
            await queues.retry(QUEUE, job_id)


async def _fail_if_a_child_failed(ctx: JobContext, queues: Queues, sync: DatasetSync) -> None:
    """A child that failed for good woke the parent (continueParentOnFailure): stop the others
    and fail the sync, naming the slice. The failure is consumed: a retry of the sync adds the
    children again and retries the failed ones."""
    job_key = f"{queues.bull(QUEUE).keys['']}{ctx.id}"
    failures: dict[str, str] = await queues.redis.hgetall(f"{job_key}:failed")
    if not failures:
        return
    # Let go of the children first: those cancelled now must not record failures that a retry
    # of the sync would read as fresh ones (the retry adds them again).
    await queues.redis.delete(f"{job_key}:failed", f"{job_key}:dependencies")
    await _cancel_children(queues, sync)
    child_key, reason = sorted(failures.items())[0]
    raise PermanentJobError(f"slice job {child_key.rsplit(':', 1)[-1]} failed: {reason}")


async def _cancel_children(queues: Queues, sync: DatasetSync) -> None:
    for job_id in _children(sync):
        with contextlib.suppress(JobNotFoundError, JobStateError):
            await queues.cancel(QUEUE, job_id)


# --- a child ---------------------------------------------------------------------------------


async def sync_slice(ctx: JobContext) -> dict[str, Any]:
    """The `sync-slice` job: copy one slice, resuming at its recorded rows."""
    job = SliceJob.model_validate(ctx.data)
    clients = await asyncio.to_thread(ctx.resources.bigquery)
    part = SliceSync(clients, ctx.resources.store, job.syncId, job.slice)
    async with sync_job_errors(ctx, part.mark_cancelled), _queues(ctx.settings) as queues:
        try:
            todo = await asyncio.to_thread(part.start, job.planId, ctx.attempt)
        except PlanMissingError as error:
            raise PermanentJobError(str(error)) from error

        async def progress() -> None:
            share = part.plan.totalRows / max(1, len(part.plan.slices))
            ctx.set_progress(100 * part.rows_written / max(1.0, share))
            await _report_rows(queues, job, part)

        if todo:
            await copy_chunks(part, part.chunks(), progress)
            await asyncio.to_thread(part.finish)
        await progress()
    ctx.set_progress(100)
    return {"syncId": job.syncId, "slice": job.slice, "rows": part.rows_written,
            "parts": len(part.state.parts)}


def _rows_key(settings: Settings, sync_id: str) -> str:
    return own_key(settings, "sync-rows", sync_id)


async def _report_rows(queues: Queues, job: SliceJob, part: SliceSync) -> None:
    """The parent's progress: the rows of all its slices over its total (best effort)."""
    keys = queues.bull(QUEUE).keys
    try:
        await queues.redis.eval(
            PARENT_PROGRESS, 4, _rows_key(queues.settings, job.syncId),
            f"{keys['']}{job.syncId}", keys["events"], keys["meta"],
            job.slice, part.rows_written, part.plan.totalRows, job.syncId)
    except Exception as error:  # a lost update is caught up by the next one or the merge
        log.warning("sync progress not recorded", extra={
            "event": "progress_lost", "jobId": job.syncId, "reason": str(error)})
