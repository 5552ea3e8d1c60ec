"""Copying chunks into parts as a pipeline, for a sync's own read (`datasets.pipeline`) and for
one slice of a distributed sync (`datasets.flow`), and how a failure of either ends its job."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Protocol

import pyarrow as pa

from heavylift.datasets.errors import SourceError
from heavylift.datasets.source import Chunks
from heavylift.memory import release_memory
from heavylift.runtime import metrics
from heavylift.runtime.context import JobContext, PermanentJobError

# Chunks encoded at once by a queued sync: with the read, that keeps two cores busy.
ENCODERS = 2


class PartWriter(Protocol):
    """What the copy needs of a sync: `encode` may run in several threads at once, `store`
    runs in chunk order and returns the rows it wrote."""

    def encode(self, table: pa.Table) -> bytes: ...

    def store(self, index: int, data: bytes, rows: int) -> int: ...


@asynccontextmanager
async def sync_job_errors(
    ctx: JobContext, mark_cancelled: Callable[[], None]
) -> AsyncIterator[None]:
    """Permanent BigQuery errors fail the job at once, transient ones this attempt (BullMQ
    retries it, resuming); a job cancelled through the API marks its output (blocking
    `mark_cancelled`). The chunks' pages go back to the system for the next job."""
    try:
        yield
    except SourceError as error:
        if error.permanent:
            raise PermanentJobError(str(error)) from error
        raise
    except asyncio.CancelledError:
        if ctx.cancelled:
            await asyncio.to_thread(mark_cancelled)
        raise
    finally:
        await asyncio.to_thread(release_memory)


async def copy_chunks(
    sync: PartWriter, chunks: Chunks, on_stored: Callable[[], Awaitable[None]]
) -> None:
    """Read, encode and store the chunks as a pipeline: the next chunk is read while up to
    ENCODERS chunks encode (pyarrow releases the GIL) and finished parts are stored, in order.
    At most ENCODERS + 2 chunks are in memory. `on_stored` is awaited after each part is stored."""
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
        await on_stored()

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
