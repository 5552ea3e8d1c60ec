"""A dataset sync, source -> sink, and its two drivers: the `datasets` job processor (async, with
the next chunk read while the current one is written) and `run_blocking` (inline HTTP syncs).

Resumption: the checkpoint lists the parts written so far, in order, and names the result table
they were read from. An attempt that finds both resumes at the first unwritten chunk; an attempt
that finds the table gone starts over (the rows would be numbered anew). A part written just
before a crash but not yet in the checkpoint is simply written again under the same name.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
    Manifest,
    PartSink,
    RunInfo,
    Timings,
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
from heavylift.settings import Settings, load_settings
from heavylift.storage import open_store

log = logging.getLogger("heavylift.datasets")

JOB_NAME = "sync"


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
        self.manifest: Manifest | None = None
        self._result: ResultTable | None = None

    @property
    def chunk_count(self) -> int:
        return self._state.chunk_count

    @property
    def total_rows(self) -> int:
        return self._state.totalRows

    @property
    def _state(self) -> Manifest:
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

    def _begin(self) -> Manifest:
        self.sink.clear()
        started = now_ms()
        ref = result_table_ref(self.clients, self.sync_id)
        self._result = result = materialize(self.clients, self.spec, ref)
        manifest = Manifest(
            syncId=self.sync_id, request=self.spec.job_data(), resultTable=ref.table_id,
            format=self.spec.format, chunkSize=self.spec.chunkSize, totalRows=result.rows,
            schema_=[FieldInfo(name=f.name, type=f.field_type, mode=f.mode) for f in result.schema],
            timings=Timings(startedAt=started, materializeMs=now_ms() - started),
        )
        self.sink.save(CHECKPOINT, manifest)
        return manifest

    def chunks(self, first: int) -> Chunks:
        """Chunks `first`.. in order, read through one stream where the source allows it."""
        if self._result is None:
            raise RuntimeError("DatasetSync.start() was not called")
        source = read_chunks(self.clients, self._result, first, self._state.chunkSize)
        try:
            while True:
                started = time.monotonic()
                table = next(source, None)
                self._state.timings.readMs += int((time.monotonic() - started) * 1000)
                if table is None:
                    return
                yield table
        finally:
            source.close()

    def write(self, index: int, table: pa.Table) -> int:
        """Store chunk `index` and checkpoint it; returns the rows written so far."""
        state = self._state
        if index != len(state.parts):
            raise RuntimeError(f"chunk {index} out of order: {len(state.parts)} parts written")
        started = time.monotonic()
        state.parts.append(self.sink.write_part(index, table))
        state.rowsWritten += table.num_rows
        state.timings.writeMs += int((time.monotonic() - started) * 1000)
        self.sink.save(CHECKPOINT, state)
        return state.rowsWritten

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
        with closing(sync.chunks(first)) as chunks:
            for index, table in enumerate(chunks, start=first):
                if index > first and spec.chunkDelayMs:
                    time.sleep(spec.chunkDelayMs / 1000)
                sync.write(index, table)
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
        result = await _drive(ctx, sync, spec)
    except SourceError as error:
        if error.permanent:
            raise PermanentJobError(str(error)) from error
        raise
    finally:
        await asyncio.to_thread(sync.close)
    return result.model_dump()


async def _drive(ctx: JobContext, sync: DatasetSync, spec: SyncSpec) -> SyncResult:
    first = await asyncio.to_thread(sync.start, ctx.attempt)
    count = sync.chunk_count
    chunks = sync.chunks(first)
    # One thread owns the chunk stream: reads run in order, and close() queues behind a read
    # still in progress (a blocking read cannot be interrupted).
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-read")
    loop = asyncio.get_running_loop()

    def read_next() -> asyncio.Future[pa.Table | None]:
        return loop.run_in_executor(reader, next, chunks, None)

    pending: asyncio.Future[pa.Table | None] | None = read_next() if first < count else None
    try:
        for index in range(first, count):
            if index > first and spec.chunkDelayMs:
                await asyncio.sleep(spec.chunkDelayMs / 1000)
            assert pending is not None
            table = await pending
            if table is None:
                raise RuntimeError(f"the source ended before chunk {index} of {count}")
            # Read the next chunk while this one is encoded and stored: two chunks in memory.
            pending = read_next() if index + 1 < count else None
            written = await asyncio.to_thread(sync.write, index, table)
            metrics.DATASET_ROWS.inc(table.num_rows)
            del table
            ctx.set_progress(100 * written / max(1, sync.total_rows))
    finally:
        if pending is not None:
            pending.cancel()
        reader.submit(chunks.close)  # cancels the read stream, once the reader is idle
        reader.shutdown(wait=False)
    result = await asyncio.to_thread(sync.finish)
    ctx.set_progress(100)
    return result


PROCESSORS: dict[str, Processor] = {JOB_NAME: sync_dataset}
