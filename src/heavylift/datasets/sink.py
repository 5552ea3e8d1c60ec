"""The storage side of a sync: one part file per chunk under `datasets/<syncId>/`, and the manifest.

Each part is encoded in memory (a few MB: one chunk, compressed), hashed, then stored with one
`put_bytes` (atomic in every backend: a reader sees a whole part or none). The manifest is saved
as `checkpoint.json` after every part while the sync runs; that is what a resumed attempt reads.
When the last part is in, it is saved as `manifest.json` (status COMPLETED) and the checkpoint is
removed. Memory is one chunk and its encoding.

A distributed sync (`datasets.flow`) reads its result table in slices, one child job each: slice
k's parts are `part-s<k>-<n>.<ext>`, its own record `slices/s<k>.json` (`SliceState`), and the
checkpoint lists the slices (`SliceInfo`); the manifest lists every part, slice by slice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AliasChoices, BaseModel, Field

from heavylift.datasets.job import sync_folder
from heavylift.datasets.request import SinkFormat
from heavylift.storage import ObjectNotFoundError, ObjectStore

CHECKPOINT = "checkpoint.json"
MANIFEST = "manifest.json"
SLICES = "slices"
_EXTENSIONS: dict[SinkFormat, str] = {"parquet": "parquet", "ndjson": "ndjson"}
_CONTENT_TYPES: dict[SinkFormat, str] = {
    "parquet": "application/vnd.apache.parquet",
    "ndjson": "application/x-ndjson",
}


def now_ms() -> int:
    return int(time.time() * 1000)


class FieldInfo(BaseModel):
    name: str
    type: str
    mode: str


class PartInfo(BaseModel):
    index: int  # in its slice, for a distributed sync
    slice: int | None = None
    key: str
    rows: int
    bytes: int
    sha256: str
    writtenAt: int  # epoch ms


class RunInfo(BaseModel):
    """One attempt at the sync: it writes from `firstChunk` (the parts written before it), after
    checking that its read gives those parts' rows again; `reorderedAt` is the first chunk whose
    rows differed (the parts from there on were written again)."""

    attempt: int
    firstChunk: int
    startedAt: int
    reorderedAt: int | None = None


class Timings(BaseModel):
    startedAt: int
    finishedAt: int | None = None
    materializeMs: int = 0
    readMs: int = 0  # waiting for chunks from BigQuery
    encodeMs: int = 0  # summed over chunks; a queued sync encodes two at once
    writeMs: int = 0  # storing parts and checkpoints


class SliceInfo(BaseModel):
    """One child's share of a distributed sync: a Storage Read API stream of the plan's read
    session (rows unknown until read), or REST rows [start, end) of the result table."""

    index: int
    stream: str | None = None
    start: int = 0
    end: int | None = None


class SliceState(BaseModel):
    """A slice's record (`slices/s<k>.json`), saved after every part: a resumed child reads
    its stream again from `rowsWritten` (BigQuery's stream offset), so no part is written twice."""

    slice: int
    rowsWritten: int = 0
    parts: list[PartInfo] = []
    done: bool = False
    runs: list[RunInfo] = []


class SyncManifest(BaseModel):
    """The sync's record: the checkpoint while it runs, `manifest.json` once COMPLETED."""

    syncId: str
    status: Literal["IN_PROGRESS", "COMPLETED", "CANCELLED"] = "IN_PROGRESS"
    request: dict[str, Any]
    resultTable: str
    format: SinkFormat
    chunkSize: int
    totalRows: int
    rowsWritten: int = 0
    schema_: list[FieldInfo] = Field(
        validation_alias=AliasChoices("schema", "schema_"), serialization_alias="schema"
    )
    parts: list[PartInfo] = []
    runs: list[RunInfo] = []
    timings: Timings
    # A distributed sync's plan: its id names the child jobs (a new plan, new children), the
    # slices, and the read session's Arrow schema (base64) that the children decode with.
    planId: str | None = None
    slices: list[SliceInfo] = []
    arrowSchema: str | None = None

    @property
    def chunk_count(self) -> int:
        return -(-self.totalRows // self.chunkSize)


Record = TypeVar("Record", bound=BaseModel)


class PartSink:
    """Part files and the manifest of one sync in an object store (blocking calls)."""

    def __init__(self, store: ObjectStore, sync_id: str, fmt: SinkFormat) -> None:
        self.store = store
        self.prefix = sync_folder(sync_id)
        self.format = fmt

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def part_key(self, index: int, slice_: int | None = None) -> str:
        sliced = "" if slice_ is None else f"s{slice_:03d}-"
        return self.key(f"part-{sliced}{index:05d}.{_EXTENSIONS[self.format]}")

    @staticmethod
    def slice_name(index: int) -> str:
        return f"{SLICES}/s{index:03d}.json"

    def encode(self, table: pa.Table) -> bytes:
        """A part's bytes, in memory (a few MB: one chunk, compressed): hashed and uploaded from
        there, with no temp file written and read back. The same table gives the same bytes."""
        return _ENCODERS[self.format](table)

    def write_part(
        self, index: int, data: bytes, rows: int, slice_: int | None = None
    ) -> PartInfo:
        info = self.store.put_bytes(
            self.part_key(index, slice_), data, content_type=_CONTENT_TYPES[self.format]
        )
        return PartInfo(index=index, slice=slice_, key=info.key, rows=rows, bytes=info.size,
                        sha256=digest(data), writtenAt=now_ms())

    def load(self, name: str, model: type[Record]) -> Record | None:
        try:
            with self.store.open_read(self.key(name)) as stream:
                return model.model_validate_json(stream.read())
        except ObjectNotFoundError:
            return None

    def save(self, name: str, record: BaseModel) -> str:
        data = record.model_dump_json(by_alias=True, indent=1).encode()
        return self.store.put_bytes(self.key(name), data).key

    def delete(self, name: str) -> None:
        self.store.delete(self.key(name))

    def clear(self) -> None:
        """Remove everything an earlier attempt left (its rows may be numbered differently)."""
        for info in list(self.store.list(self.prefix + "/")):
            self.store.delete(info.key)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parquet(table: pa.Table) -> bytes:
    out = pa.BufferOutputStream()
    # Dictionaries only where values repeat: on unique numbers and timestamps building one is
    # wasted work (it overflows and falls back to plain), a third of the encoding time.
    # Min/max statistics only where readers prune with them (numbers, dates, times): on strings
    # they cost a fifth of the encoding time.
    repeating = [field.name for field in table.schema if _repeats(field.type)]
    ranged = [field.name for field in table.schema if not _is_text(field.type)]
    pq.write_table(table, out, compression="snappy", use_dictionary=repeating,
                   write_statistics=ranged)
    data: bytes = out.getvalue().to_pybytes()
    return data


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_binary(kind))


def _repeats(kind: pa.DataType) -> bool:
    return _is_text(kind) or pa.types.is_date(kind)


def _ndjson(table: pa.Table) -> bytes:
    out = io.StringIO()
    for batch in table.to_batches(max_chunksize=5_000):
        for row in batch.to_pylist():
            out.write(json.dumps(row, default=_json_value, separators=(",", ":")))
            out.write("\n")
    return out.getvalue().encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


_ENCODERS = {"parquet": _parquet, "ndjson": _ndjson}
