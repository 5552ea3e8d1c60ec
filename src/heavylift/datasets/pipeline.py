"""A dataset sync, source -> sink, and its two drivers: the `datasets` job processor (async: the
next chunk is read while two encode and finished parts are stored) and `run_blocking` (inline
HTTP syncs, one chunk after the other).

Resumption: the checkpoint lists the parts written so far, in order, with their SHA-256, and
names the result table they were read from. An attempt that finds both reads that table again;
each chunk an earlier attempt wrote is encoded again and compared with its part (encoding is
deterministic), and writing resumes at the first unwritten chunk. Should the new read deliver
other rows at some chunk (BigQuery does not promise one order across read sessions), the parts
from that chunk on are written again: the parts always hold one read's rows, each exactly once.
An attempt that finds the table gone starts over. A part written just before a crash but not yet
in the checkpoint is simply written again under the same name.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from heavylift.datasets.clients import BigQueryClients, open_clients
from heavylift.datasets.errors import SourceError
from heavylift.datasets.request import SyncSpec
from heavylift.datasets.sink import (
    CHECKPOINT,
    MANIFEST,
    FieldInfo,
    PartSink,
    RunInfo,
    SyncManifest,
    Timings,
    digest,
    now_ms,
)
from heavylift.datasets.source import (
    Chunks,
    ResultTable,
    drop_result,
    find_result,
    materialize,
    read_chunks,
    result_table_ref,
)
from heavylift.runtime import metrics
from heavylift.runtime.context import JobContext, PermanentJobError, Processor
from heavylift.runtime.memory import release_memory
from heavylift.settings import Settings, load_settings
from heavylift.storage import open_store

log = logging.getLogger("heavylift.datasets")

JOB_NAME = "sync"
# Chunks encoded at once by a queued sync: with the read, that keeps two cores busy.
ENCODERS = 2
# Freed pages go back to the system every so many parts (a few ms each time): without it the
# allocators' free lists crept up by ~30 MB over a 5M-row sync.
RELEASE_EVERY = 10


class SyncResult(BaseModel):
    """A finished sync: the job's returnvalue and the body of an inline sync."""

    syncId: str
    datasetId: str
    jobType: str
    status: Literal["COMPLETED"] = "COMPLETED"
    totalRows: int
    parts: int
    format: str
    manifest: str


class DatasetSync:
    """One sync's steps; every method blocks (the worker runs them in threads)."""

    def __init__(self, settings: Settings, spec: SyncSpec, sync_id: str) -> None:
        self.spec = spec
        self.sync_id = sync_id
        self.clients: BigQueryClients = open_clients(settings)
        self.sink = PartSink(open_store(settings.storage_url, settings), sync_id, spec.format)
        self.manifest: SyncManifest | None = None
        self._result: ResultTable | None = None
        self._wrote_chunk = False  # in this attempt: CHUNK_DELAY_MS applies between chunks
        self._encode_timing = threading.Lock()  # encode() runs in several threads at once

    @property
    def chunk_count(self) -> int:
        return self._state.chunk_count

    @property
    def total_rows(self) -> int:
        return self._state.totalRows

    @property
    def _state(self) -> SyncManifest:
        if self.manifest is None:
            raise RuntimeError("DatasetSync.start() was not called")
        return self.manifest

    def start(self, attempt: int) -> int:
        """Resume or begin; returns the first chunk left to write (chunk_count when done)."""
        done = self.sink.load(MANIFEST)
        if done is not None and done.status == "COMPLETED":
            self.manifest = done
            return done.chunk_count
        checkpoint = self.sink.load(CHECKPOINT)
        if checkpoint is not None:
            self._result = find_result(self.clients, result_table_ref(self.clients, self.sync_id))
        if checkpoint is None or self._result is None:
            checkpoint = self._begin()
        first = len(checkpoint.parts)
        checkpoint.runs.append(RunInfo(attempt=attempt, firstChunk=first, startedAt=now_ms()))
        self.manifest = checkpoint
        if first:
            log.info("dataset sync resumed", extra={
                "event": "sync_resumed", "syncId": self.sync_id, "firstChunk": first})
        return first

    def _begin(self) -> SyncManifest:
        self.sink.clear()
        started = now_ms()
        ref = result_table_ref(self.clients, self.sync_id)
        self._result = result = materialize(self.clients, self.spec, ref)
        manifest = SyncManifest(
            syncId=self.sync_id, request=self.spec.job_data(), resultTable=ref.table_id,
            format=self.spec.format, chunkSize=self.spec.chunkSize, totalRows=result.rows,
            schema_=[FieldInfo(name=f.name, type=f.field_type, mode=f.mode) for f in result.schema],
            timings=Timings(startedAt=started, materializeMs=now_ms() - started),
        )
        self.sink.save(CHECKPOINT, manifest)
        return manifest

    @property
    def result(self) -> ResultTable:
        """The materialised query this attempt reads."""
        if self._result is None:
            raise RuntimeError("DatasetSync.start() was not called")
        return self._result

    def chunks(self, first: int) -> Chunks:
        """(index, chunk) in order up to the last one; chunks before `first` are for `store` to
        check against the parts already written."""
        source = read_chunks(self.clients, self.result, first, self._state.chunkSize)
        try:
            while True:
                started = time.monotonic()
                item = next(source, None)
                self._state.timings.readMs += int((time.monotonic() - started) * 1000)
                if item is None:
                    return
                yield item
        finally:
            source.close()

    @property
    def rows_written(self) -> int:
        return self._state.rowsWritten

    def encode(self, table: pa.Table) -> bytes:
        """A chunk's part file bytes; safe to run in several threads at once."""
        started = time.monotonic()
        data = self.sink.encode(table)
        with self._encode_timing:
            self._state.timings.encodeMs += int((time.monotonic() - started) * 1000)
        return data

    def store(self, index: int, data: bytes, rows: int) -> int:
        """Write encoded chunk `index` and checkpoint it, or check it against the part an earlier
        attempt wrote; returns the rows written (0: the part was there). In chunk order."""
        state = self._state
        if index > len(state.parts):
            raise RuntimeError(f"chunk {index} out of order: {len(state.parts)} parts written")
        if index < len(state.parts):
            if digest(data) == state.parts[index].sha256:
                return 0
            self._rewrite_from(index)
        elif self._wrote_chunk and self.spec.chunkDelayMs:
            time.sleep(self.spec.chunkDelayMs / 1000)  # the seed's throttle between chunks
        started = time.monotonic()
        state.parts.append(self.sink.write_part(index, data, rows))
        state.rowsWritten += rows
        self.sink.save(CHECKPOINT, state)
        if len(state.parts) % RELEASE_EVERY == 0:
            release_memory()
        state.timings.writeMs += int((time.monotonic() - started) * 1000)
        self._wrote_chunk = True
        return rows

    def copy(self, chunks: Iterable[tuple[int, pa.Table]]) -> None:
        """Encode and store chunks one after the other, in this thread."""
        for index, table in chunks:
            self.store(index, self.encode(table), table.num_rows)

    def _rewrite_from(self, index: int) -> None:
        state = self._state
        log.warning("dataset read gave other rows than the parts written: writing them again",
                    extra={"event": "sync_reordered", "syncId": self.sync_id, "chunk": index})
        del state.parts[index:]
        state.rowsWritten = sum(part.rows for part in state.parts)
        state.runs[-1].reorderedAt = index

    def finish(self) -> SyncResult:
        state = self._state
        if state.status != "COMPLETED":
            state.status = "COMPLETED"
            state.timings.finishedAt = now_ms()
            self.sink.save(MANIFEST, state)
            self.sink.delete(CHECKPOINT)
            drop_result(self.clients, result_table_ref(self.clients, self.sync_id))
        return SyncResult(
            syncId=self.sync_id, datasetId=self.spec.datasetId, jobType=self.spec.jobType,
            totalRows=state.rowsWritten, parts=len(state.parts), format=state.format,
            manifest=self.sink.key(MANIFEST),
        )

    def close(self) -> None:
        self.clients.close()


def run_blocking(settings: Settings, spec: SyncSpec, sync_id: str) -> SyncResult:
    """The whole sync in the calling thread (inline syncs below SYNC_THRESHOLD)."""
    sync = DatasetSync(settings, spec, sync_id)
    try:
        first = sync.start(attempt=1)
        if first < sync.chunk_count:
            with closing(sync.chunks(first)) as chunks:
                sync.copy(chunks)
        return sync.finish()
    finally:
        sync.close()


async def sync_dataset(ctx: JobContext) -> dict[str, Any]:
    """The `datasets` job: progress is rows written / total; permanent BigQuery errors fail the
    job at once, transient ones fail this attempt (BullMQ retries it, resuming)."""
    try:
        spec = SyncSpec.model_validate(ctx.data)
    except ValidationError as error:
        raise PermanentJobError(f"invalid sync request: {error.errors()[0]['msg']}") from None
    settings = load_settings()
    sync = await asyncio.to_thread(DatasetSync, settings, spec, ctx.id)
    try:
        result = await _drive(ctx, sync)
    except SourceError as error:
        if error.permanent:
            raise PermanentJobError(str(error)) from error
        raise
    finally:
        await asyncio.to_thread(sync.close)
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


PROCESSORS: dict[str, Processor] = {JOB_NAME: sync_dataset}
