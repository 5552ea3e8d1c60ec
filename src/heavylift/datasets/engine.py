"""A dataset sync, source -> sink: `DatasetSync` holds one sync's steps (every method blocks),
`run_blocking` runs them one after the other (inline HTTP syncs); the `datasets` job drives the
same steps as a pipeline (`datasets.pipeline`).

Resumption: the checkpoint lists the parts written so far, in order, with their SHA-256, and
names the result table they were read from. An attempt that finds both reads that table again;
each chunk an earlier attempt wrote is encoded again and compared with its part (encoding is
deterministic), and writing resumes at the first unwritten chunk. Should the new read deliver
other rows at some chunk (BigQuery does not promise one order across read sessions), the parts
from that chunk on are written again: the parts always hold one read's rows, each exactly once.
An attempt that finds the table gone starts over. A part written just before a crash but not yet
in the checkpoint is simply written again under the same name.

A distributed sync (SyncSpec.streams > 1) plans here too: `_begin` also splits the read into
slices (`source.plan_slices`), the children copy them (`datasets.slices`), and `finish` merges
their records into the manifest.

Every step can run again after a crash: the query replaces the result table (one left by an
attempt that died before its checkpoint), parts and checkpoints are whole-object puts under
fixed names, and finishing deletes the checkpoint and the table even if the manifest was saved.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from contextlib import closing
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel

from heavylift.datasets.clients import BigQueryClients
from heavylift.datasets.request import SyncSpec
from heavylift.datasets.sink import (
    CHECKPOINT,
    MANIFEST,
    FieldInfo,
    PartSink,
    RunInfo,
    SliceInfo,
    SliceState,
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
    plan_slices,
    read_chunks,
    result_table_ref,
)
from heavylift.memory import release_memory
from heavylift.storage import ObjectStore

log = logging.getLogger("heavylift.datasets")

# Freed pages go back to the system every so many parts (a few ms each time): without it the
# allocators' free lists crept up by ~30 MB over a 5M-row sync.
RELEASE_EVERY = 10


# BigQuery read sessions expire 6 hours after they are created; a distributed sync's plan is
# read by its children only within this age (a retry after it plans the sync afresh).
READ_SESSION_MAX_AGE_MS = int(5.5 * 3600 * 1000)


def _session_expired(plan: SyncManifest) -> bool:
    return any(part.stream for part in plan.slices) and (
        now_ms() - plan.timings.startedAt > READ_SESSION_MAX_AGE_MS)


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

    def __init__(
        self, clients: BigQueryClients, store: ObjectStore, spec: SyncSpec, sync_id: str
    ) -> None:
        self.spec = spec
        self.sync_id = sync_id
        self.clients = clients
        self.sink = PartSink(store, sync_id, spec.format)
        self.manifest: SyncManifest | None = None
        self._result: ResultTable | None = None
        self._wrote_chunk = False  # in this attempt: CHUNK_DELAY_MS applies between chunks
        self._encode_timing = threading.Lock()  # encode() runs in several threads at once

    @property
    def chunk_count(self) -> int:
        return self._state.chunk_count

    @property
    def plan(self) -> SyncManifest:
        """The checkpoint (or the manifest, once done): a distributed sync's slices are in it."""
        return self._state

    @property
    def completed(self) -> bool:
        return self._state.status == "COMPLETED"

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
        done = self.sink.load(MANIFEST, SyncManifest)
        if done is not None and done.status == "COMPLETED":
            self.manifest = done
            return done.chunk_count
        checkpoint = self.sink.load(CHECKPOINT, SyncManifest)
        if checkpoint is not None and _session_expired(checkpoint):
            checkpoint = None  # its streams cannot be read any more: plan afresh
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
        if self.spec.streams > 1:
            manifest.slices, manifest.arrowSchema = plan_slices(
                self.clients, result, self.spec.streams, self.spec.chunkSize)
            manifest.planId = uuid.uuid4().hex[:8]
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

    def mark_cancelled(self) -> None:
        """A cancelled sync keeps its parts (a retry of the job resumes from them, as any
        attempt does); `manifest.json` says CANCELLED. Nothing to mark before `start` returned."""
        if self.manifest is not None:
            self.sink.save(MANIFEST, self.manifest.model_copy(update={"status": "CANCELLED"}))

    def _slice_records(self) -> list[SliceState | None]:
        return [self.sink.load(self.sink.slice_name(part.index), SliceState)
                for part in self._state.slices]

    def unfinished_slices(self) -> list[SliceInfo]:
        """A distributed sync's slices whose child has not recorded them done."""
        return [part for part, record in zip(self._state.slices, self._slice_records(),
                                             strict=True) if record is None or not record.done]

    def merge_slices(self) -> None:
        """A distributed sync's parts, slice by slice, from its children's records; raises if a
        slice is unfinished or the rows do not add up to the result table's."""
        state = self._state
        records = self._slice_records()
        unfinished = [part.index for part, record in zip(state.slices, records, strict=True)
                      if record is None or not record.done]
        if unfinished:
            raise RuntimeError(f"slices {unfinished} of sync {self.sync_id} are not finished")
        state.parts = [part for record in records if record for part in record.parts]
        state.rowsWritten = sum(part.rows for part in state.parts)
        if state.rowsWritten != state.totalRows:
            raise RuntimeError(f"sync {self.sync_id}: its slices hold {state.rowsWritten} rows, "
                               f"the result table {state.totalRows}")

    def finish(self) -> SyncResult:
        state = self._state
        if state.status != "COMPLETED":
            if state.slices:
                self.merge_slices()
            state.status = "COMPLETED"
            state.timings.finishedAt = now_ms()
            self.sink.save(MANIFEST, state)
        # Also when an earlier attempt saved the manifest and died before cleaning up.
        for part in state.slices:
            self.sink.delete(self.sink.slice_name(part.index))
        self.sink.delete(CHECKPOINT)
        drop_result(self.clients, result_table_ref(self.clients, self.sync_id))
        return SyncResult(
            syncId=self.sync_id, datasetId=self.spec.datasetId, jobType=self.spec.jobType,
            totalRows=state.rowsWritten, parts=len(state.parts), format=state.format,
            manifest=self.sink.key(MANIFEST),
        )

def run_blocking(
    clients: BigQueryClients, store: ObjectStore, spec: SyncSpec, sync_id: str
) -> SyncResult:
    """The whole sync in the calling thread (inline syncs below SYNC_THRESHOLD)."""
    sync = DatasetSync(clients, store, spec, sync_id)
    first = sync.start(attempt=1)
    if first < sync.chunk_count:
        with closing(sync.chunks(first)) as chunks:
            sync.copy(chunks)
    return sync.finish()
