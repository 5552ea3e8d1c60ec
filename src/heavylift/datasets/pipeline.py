"""The `datasets` job's processor: a `DatasetSync` (see `datasets.engine`) driven as a pipeline.
The next chunk is read while two encode and finished parts are stored, in order
(`datasets.copy`). A sync planned with more than one stream runs as a flow (`datasets.flow`)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from heavylift.datasets import flow
from heavylift.datasets.copy import copy_chunks, sync_job_errors
from heavylift.datasets.engine import DatasetSync, SyncResult
from heavylift.datasets.request import SyncSpec
from heavylift.runtime.context import JobContext, PermanentJobError


async def sync_dataset(ctx: JobContext) -> dict[str, Any]:
    """The `datasets` job: progress is rows written / total; permanent BigQuery errors fail the
    job at once, transient ones fail this attempt (BullMQ retries it, resuming)."""
    try:
        spec = SyncSpec.model_validate(ctx.data)
    except ValidationError as error:
        raise PermanentJobError(f"invalid sync request: {error.errors()[0]['msg']}") from None
    clients = await asyncio.to_thread(ctx.resources.bigquery)
    sync = DatasetSync(clients, ctx.resources.store, spec, ctx.id)
    async with sync_job_errors(ctx, sync.mark_cancelled):
        result = await (flow.run_parent(ctx, sync) if spec.streams > 1 else _drive(ctx, sync))
    return result.model_dump()


async def _drive(ctx: JobContext, sync: DatasetSync) -> SyncResult:
    first = await asyncio.to_thread(sync.start, ctx.attempt)
    async def progress() -> None:
        ctx.set_progress(100 * sync.rows_written / max(1, sync.total_rows))

    if first < sync.chunk_count:
        await copy_chunks(sync, sync.chunks(first), progress)
    result = await asyncio.to_thread(sync.finish)
    ctx.set_progress(100)
    return result
