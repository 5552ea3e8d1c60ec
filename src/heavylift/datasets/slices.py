"""One slice of a distributed sync, as its child job copies it (every method blocks).

The parent planned the sync (`DatasetSync`: the result table, the slices, the read session's
schema) in `checkpoint.json`; a child reads that plan, copies its slice's rows into parts
`part-s<k>-<n>` and records each part in `slices/s<k>.json` before the next. A retried or
recovered child resumes at the rows recorded: a Storage Read stream from that offset (the
stream's rows are fixed for the session's life), a REST slice from that row. A part written just
before a crash but not recorded is written again under the same name with the same rows: each row
lands exactly once.
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa

from heavylift.datasets.clients import BigQueryClients
from heavylift.datasets.errors import SourceUnavailableError
from heavylift.datasets.sink import (
    CHECKPOINT,
    MANIFEST,
    PartSink,
    RunInfo,
    SliceInfo,
    SliceState,
    SyncManifest,
    now_ms,
)
from heavylift.datasets.source import (
    Chunks,
    ResultTable,
    find_result,
    read_slice,
    result_table_ref,
)
from heavylift.memory import release_memory
from heavylift.storage import ObjectStore

log = logging.getLogger("heavylift.datasets")

# As DatasetSync: freed pages go back to the system every so many parts.
RELEASE_EVERY = 10


class PlanMissingError(RuntimeError):
    """The parent's plan is gone (the sync was planned again, or finished): nothing to copy."""


class SliceSync:
    """The steps of one child; `start` first."""

    def __init__(
        self, clients: BigQueryClients, store: ObjectStore, sync_id: str, index: int
    ) -> None:
        self.clients = clients
        self.objects = store
        self.sync_id = sync_id
        self.index = index
        self._plan: SyncManifest | None = None
        self._result: ResultTable | None = None
        self._state: SliceState | None = None
        self._sink: PartSink | None = None
        self._encode_timing = threading.Lock()
        self.encode_ms = 0

    @property
    def plan(self) -> SyncManifest:
        if self._plan is None:
            raise RuntimeError("SliceSync.start() was not called")
        return self._plan

    @property
    def state(self) -> SliceState:
        if self._state is None:
            raise RuntimeError("SliceSync.start() was not called")
        return self._state

    @property
    def sink(self) -> PartSink:
        if self._sink is None:
            raise RuntimeError("SliceSync.start() was not called")
        return self._sink

    @property
    def slice(self) -> SliceInfo:
        return self.plan.slices[self.index]

    def start(self, plan_id: str, attempt: int) -> bool:
        """Load the plan and this slice's record; False when the slice is already done."""
        probe = PartSink(self.objects, self.sync_id, "parquet")
        plan = probe.load(CHECKPOINT, SyncManifest) or probe.load(MANIFEST, SyncManifest)
        if plan is None or plan.planId != plan_id or self.index >= len(plan.slices):
            raise PlanMissingError(f"sync {self.sync_id} has no plan {plan_id} any more")
        self._plan = plan
        self._sink = sink = PartSink(self.objects, self.sync_id, plan.format)
        state = sink.load(sink.slice_name(self.index), SliceState)
        self._state = state = state or SliceState(slice=self.index)
        if state.done or plan.status == "COMPLETED":
            return False
        self._result = find_result(self.clients, result_table_ref(self.clients, self.sync_id))
        if self._result is None:
            raise SourceUnavailableError(f"result table {plan.resultTable} is gone")
        state.runs.append(RunInfo(attempt=attempt, firstChunk=len(state.parts),
                                  startedAt=now_ms()))
        if state.parts:
            log.info("dataset slice resumed", extra={
                "event": "slice_resumed", "syncId": self.sync_id, "slice": self.index,
                "firstChunk": len(state.parts), "offset": state.rowsWritten})
        return True

    def chunks(self) -> Chunks:
        """(index in the slice, chunk) from the first unrecorded row on."""
        if self._result is None:
            raise RuntimeError("SliceSync.start() found nothing to read")
        return read_slice(self.clients, self._result, self.slice, self.plan.arrowSchema,
                          self.state.rowsWritten, self.plan.chunkSize)

    @property
    def rows_written(self) -> int:
        return self.state.rowsWritten

    def encode(self, table: pa.Table) -> bytes:
        started = time.monotonic()
        data = self.sink.encode(table)
        with self._encode_timing:
            self.encode_ms += int((time.monotonic() - started) * 1000)
        return data

    def store(self, index: int, data: bytes, rows: int) -> int:
        """Write part `index` of the slice and record it; in order. Returns the rows written."""
        state = self.state
        if index != len(state.parts):
            raise RuntimeError(f"slice {self.index}: part {index} out of order "
                               f"({len(state.parts)} written)")
        if index > state.runs[-1].firstChunk:  # the request's throttle, within the slice
            time.sleep(int(self.plan.request.get("chunkDelayMs") or 0) / 1000)
        state.parts.append(self.sink.write_part(index, data, rows, self.index))
        state.rowsWritten += rows
        self.sink.save(self.sink.slice_name(self.index), state)
        if len(state.parts) % RELEASE_EVERY == 0:
            release_memory()
        return rows

    def finish(self) -> None:
        self.state.done = True
        self.sink.save(self.sink.slice_name(self.index), self.state)

    def mark_cancelled(self) -> None:
        """As a cancelled sync: its parts stay, `manifest.json` says CANCELLED."""
        if self._plan is not None and self._plan.status != "COMPLETED":
            self.sink.save(MANIFEST, self._plan.model_copy(update={"status": "CANCELLED"}))
