"""The `datasets` job's processor: a `DatasetSync` (see `datasets.engine`) driven as a pipeline.
The next chunk is read while two encode and finished parts are stored, in order."""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from heavylift.datasets.engine import DatasetSync, SyncResult
from heavylift.datasets.errors import SourceError
from heavylift.datasets.request import SyncSpec
from heavylift.datasets.source import Chunks
from heavylift.memory import release_memory
from heavylift.runtime import metrics
from heavylift.runtime.context import JobContext, PermanentJobError

# Chunks encoded at once by a queued sync: with the read, that keeps two cores busy.
ENCODERS = 2


async def sync_dataset(ctx: JobContext) -> dict[str, Any]:
    """The `datasets` job: progress is rows written / total; permanent BigQuery errors fail the
    job at once, transient ones fail this attempt (BullMQ retries it, resuming)."""
    try:
        spec = SyncSpec.model_validate(ctx.data)
    except ValidationError as error:
        raise PermanentJobError(f"invalid sync request: {error.errors()[0]['msg']}") from None
    clients = await asyncio.to_thread(ctx.resources.bigquery)
    sync = DatasetSync(clients, ctx.resources.store, spec, ctx.id)
    try:
        result = await _drive(ctx, sync)
    except SourceError as error:
        if error.permanent:
            raise PermanentJobError(str(error)) from error
        raise
    except asyncio.CancelledError:
        if ctx.cancelled:
            await asyncio.to_thread(sync.mark_cancelled)
        raise
    finally:
        await asyncio.to_thread(release_memory)  # the chunks' pages, for the next job
    return result.model_dump()


async def _drive(ctx: JobContext, sync: DatasetSync) -> SyncResult:
    first = await asyncio.to_thread(sync.start, ctx.attempt)
    if first < sync.chunk_count:
        await _copy_chunks(ctx, sync, sync.chunks(first))
    result = await asyncio.to_thread(sync.finish)
    ctx.set_progress(100)
    return result


async def _copy_chunks(ctx: JobContext, sync: DatasetSync, chunks: Chunks) -> None:
    """Read, encode and store the chunks as a pipeline: the next chunk is read while up to
    ENCODERS chunks encode (pyarrow releases the GIL) and finished parts are stored, in order.
    At most ENCODERS + 2 chunks are in memory."""
    # One thread owns the chunk stream: reads run in order, and close() queues behind a read
    # still in progress (a blocking read cannot be interrupted).
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-read")
    encoders = ThreadPoolExecutor(max_workers=ENCODERS, thread_name_prefix="dataset-encode")
    loop = asyncio.get_running_loop()
    encoding: deque[tuple[int, int, asyncio.Future[bytes]]] = deque()

    def read_next() -> asyncio.Future[tuple[int, pa.Table] | None]:
        return loop.run_in_executor(reader, next, chunks, None)

    async def store_oldest() -> None:
        index, rows, data = encoding.popleft()
        metrics.DATASET_ROWS.inc(await asyncio.to_thread(sync.store, index, await data, rows))
        ctx.set_progress(100 * sync.rows_written / max(1, sync.total_rows))

    pending = read_next()
    try:
        while (item := await pending) is not None:
            pending = read_next()
            index, table = item
            encoding.append((index, table.num_rows, loop.run_in_executor(
                encoders, sync.encode, table)))
            del item, table
            if len(encoding) == ENCODERS:
                await store_oldest()
        while encoding:
            await store_oldest()
    finally:
        pending.cancel()  # a no-op once it is done
        for _, _, data in encoding:
            data.cancel()
        reader.submit(chunks.close)  # cancels the read stream, once the reader is idle
        reader.shutdown(wait=False)
        encoders.shutdown(wait=False)
