"""The BigQuery side of a sync: count, materialise the query once, read it back chunk by chunk.

Query results cannot be read through the Storage Read API everywhere (the emulator 404s), and a
resumed job must find the rows it wrote before. So the query runs once into a result table of the
sync's own (in BQ_SCRATCH_DATASET, expiring after a day), and chunk k is rows [k*size, (k+1)*size)
in the order a read of that fixed table delivers them:

- Storage Read API: one session with one stream over the whole table, its Arrow batches cut into
  chunks as they arrive. The order of a new session is not promised to repeat, so a resumed
  attempt reads from chunk 0 again and the pipeline checks the chunks it already wrote (see
  pipeline.py) instead of trusting positions;
- REST otherwise: `tabledata.list` pages from the chunk's first row, which is positional in the
  table's storage order; a resumed attempt starts at its first unwritten chunk.

A distributed sync (`datasets.flow`) reads in slices instead: the streams of one read session
of up to SYNC_MAX_STREAMS streams (`plan_slices`), each read by one child from its offset
(`read_slice`: a stream's rows and their order are fixed for the session's life, so an offset
resumes exactly), or REST row ranges.

No row numbers are added to the result: ROW_NUMBER() OVER () doubled the query's time on the
emulator, and on BigQuery it runs on a single slot (it fails with "resources exceeded" at scale).

Every call runs inside `bigquery_errors`, so callers see SourceErrors only, and has a deadline
(BQ_CALL_TIMEOUT_S per request or RPC, retried within BQ_TIMEOUT_S; BQ_QUERY_TIMEOUT_S for a
query job to finish; a Storage read stream must deliver its next message within
BQ_CALL_TIMEOUT_S): nothing waits forever. All functions block: the worker calls them through
`asyncio.to_thread`.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from heavylift.datasets.chunking import rechunk
from heavylift.datasets.clients import BigQueryClients
from heavylift.datasets.errors import SourceUnavailableError, bigquery_errors
from heavylift.datasets.request import SyncSpec
from heavylift.datasets.sink import SliceInfo
from heavylift.datasets.sql import (
    TableRef,
    count_sql,
    materialize_sql,
    query_parameters,
    source_table,
)
from heavylift.datasets.stream import with_idle_deadline

log = logging.getLogger("heavylift.datasets")

# (index, chunk) in order; close() it when stopping early: it may hold a read stream open.
Chunks = Generator[tuple[int, pa.Table], None, None]

# Result tables of syncs that died are left to expire.
RESULT_TABLE_TTL = timedelta(days=1)

# Between two polls of a running query job's state.
POLL_S = 0.5


@dataclass(frozen=True)
class ResultTable:
    """A materialised sync query: its rows never change (their order in a new read might)."""

    ref: TableRef
    rows: int
    schema: list[bigquery.SchemaField]

    @property
    def columns(self) -> list[str]:
        return [field.name for field in self.schema]


def result_table_ref(clients: BigQueryClients, sync_id: str) -> TableRef:
    settings = clients.settings
    name = "_heavylift_sync_" + re.sub(r"[^A-Za-z0-9_]", "_", sync_id)[:100]
    return TableRef(settings.bq_project, settings.bq_scratch_dataset, name)


def _describe(spec: SyncSpec) -> str:
    return f"{spec.jobType} rows of dataset {spec.datasetId}"


def count_rows(clients: BigQueryClients, spec: SyncSpec) -> int:
    """The number of rows the sync would write (a parameterised COUNT query)."""
    table = source_table(clients.settings.bq_project, spec)
    config = bigquery.QueryJobConfig(query_parameters=query_parameters(spec))
    what = f"count {_describe(spec)}"
    with bigquery_errors(what):
        rows = list(_run_query(clients, count_sql(spec, table), config, what))
    return int(rows[0]["n"])


def _run_query(
    clients: BigQueryClients, sql: str, config: bigquery.QueryJobConfig, what: str
) -> Any:
    """Start a query job and wait for it: polls of the job's state every POLL_S, each with the
    call deadline, until it is done or BQ_QUERY_TIMEOUT_S has passed; then its result (which
    raises the job's error, or re-runs a job that failed for a retryable reason)."""
    timeout = clients.call_timeout
    # job_retry=None here: with one, the library wraps jobs.insert in a retry of its own (10
    # minutes, around ours); result() below still re-runs a job that failed transiently.
    job = clients.rest.query(sql, job_config=config, retry=clients.retry, timeout=timeout,
                             job_retry=None)
    give_up = time.monotonic() + clients.settings.bq_query_timeout_s
    while not job.done(retry=clients.retry, timeout=timeout):
        if time.monotonic() > give_up:
            job.cancel(retry=clients.retry, timeout=timeout)
            raise SourceUnavailableError(f"{what}: query job {job.job_id} not done after "
                                         f"{clients.settings.bq_query_timeout_s:g} s")
        time.sleep(POLL_S)
    return job.result(retry=clients.retry, timeout=timeout, job_retry=clients.job_retry)


def materialize(clients: BigQueryClients, spec: SyncSpec, target: TableRef) -> ResultTable:
    """Run the sync query into `target` (replacing it) and describe the result."""
    settings = clients.settings
    rest = clients.rest
    what = f"query {_describe(spec)}"
    with bigquery_errors(what):
        # Also the clearest "dataset not found"; the scratch dataset must share its location.
        source = rest.get_dataset(f"{settings.bq_project}.{spec.datasetId}",
                                  retry=clients.retry, timeout=clients.call_timeout)
        scratch = bigquery.Dataset(f"{target.project}.{target.dataset}")
        scratch.location = source.location
        scratch.default_table_expiration_ms = int(RESULT_TABLE_TTL.total_seconds() * 1000)
        rest.create_dataset(scratch, exists_ok=True, retry=clients.retry,
                            timeout=clients.call_timeout)
        config = bigquery.QueryJobConfig(query_parameters=query_parameters(spec))
        table = source_table(settings.bq_project, spec)
        _run_query(clients, materialize_sql(spec, table, target), config, what)
    found = find_result(clients, target)
    if found is None:
        raise SourceUnavailableError(f"result table {target.table_id} vanished after its query")
    return found


def find_result(clients: BigQueryClients, ref: TableRef) -> ResultTable | None:
    """The result table of an earlier attempt, or None if there is none (any more)."""
    with bigquery_errors(f"look up result table {ref.table_id}"):
        try:
            table = clients.rest.get_table(ref.table_id, retry=clients.retry,
                                           timeout=clients.call_timeout)
        except NotFound:
            return None
    return ResultTable(ref, int(table.num_rows or 0), list(table.schema))


def drop_result(clients: BigQueryClients, ref: TableRef) -> None:
    with bigquery_errors(f"drop result table {ref.table_id}"):
        clients.rest.delete_table(ref.table_id, not_found_ok=True, retry=clients.retry,
                                  timeout=clients.call_timeout)


def read_chunks(
    clients: BigQueryClients, result: ResultTable, first: int, size: int
) -> Chunks:
    """(index, chunk) for every chunk from `first` (REST) or from 0 (Storage Read API) on, each
    an Arrow table without metadata; raises if the table yields fewer rows than it holds."""
    storage = clients.storage
    start = 0 if storage is not None else first
    if storage is not None:
        with bigquery_errors(f"read {result.ref.table_id}"):
            session = _session(storage, clients, result, streams=1)
        chunks = _stream_chunks(clients, result, session.streams[0].name,
                                session_schema(session), 0, size)
    else:
        chunks = _rest_chunks(clients, result, start * size, result.rows, size)
    yield from _counted(chunks, start, start * size, result.rows, result.ref.table_id)


def plan_slices(
    clients: BigQueryClients, result: ResultTable, slices: int, size: int
) -> tuple[list[SliceInfo], str | None]:
    """Up to `slices` slices of the result table and, for Storage reads, the session's Arrow
    schema (base64): one read session with that many streams at most (BigQuery may give fewer),
    or REST row ranges of whole chunks."""
    storage = clients.storage
    if storage is not None:
        with bigquery_errors(f"plan the read of {result.ref.table_id}"):
            session = _session(storage, clients, result, streams=slices)
        schema = base64.b64encode(session.arrow_schema.serialized_schema).decode()
        return [SliceInfo(index=k, stream=stream.name)
                for k, stream in enumerate(session.streams)], schema
    chunks = -(-result.rows // size)
    per_slice = max(1, -(-chunks // max(1, min(slices, chunks))))
    ranges = range(0, result.rows, per_slice * size)
    return [SliceInfo(index=k, start=start, end=min(result.rows, start + per_slice * size))
            for k, start in enumerate(ranges)], None


def read_slice(
    clients: BigQueryClients, result: ResultTable, part: SliceInfo, schema: str | None,
    offset: int, size: int,
) -> Chunks:
    """(index in the slice, chunk) from row `offset` of the slice on (a multiple of `size`);
    a REST slice that yields fewer rows than its range raises."""
    if part.stream is not None:
        if schema is None:
            raise SourceUnavailableError(f"slice {part.index}: the plan has no Arrow schema")
        arrow_schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(schema)))
        yield from enumerate(_stream_chunks(clients, result, part.stream, arrow_schema, offset,
                                            size), start=offset // size)
        return
    end = result.rows if part.end is None else part.end
    chunks = _rest_chunks(clients, result, part.start + offset, end, size)
    yield from _counted(chunks, offset // size, part.start + offset, end, result.ref.table_id)


def _counted(
    chunks: Iterable[pa.Table], first: int, rows: int, expected: int, table_id: str
) -> Chunks:
    """Number the chunks from `first`; raise if they end before row `expected`."""
    for index, table in enumerate(chunks, start=first):
        rows += table.num_rows
        yield index, table
    if rows != expected:
        raise SourceUnavailableError(f"{table_id}: the read ended after {rows} of {expected} rows")


def _stream_chunks(
    clients: BigQueryClients, result: ResultTable, stream_name: str, schema: pa.Schema,
    offset: int, size: int,
) -> Iterator[pa.Table]:
    """A read stream's rows from `offset` on, in chunks of `size`."""
    storage = clients.storage
    if storage is None:
        raise SourceUnavailableError(f"reading {stream_name} needs the Storage Read API")
    index = offset // size  # of the chunk being read

    def stage() -> str:
        return f"reading chunk {index} of {result.ref.table_id}"

    with bigquery_errors(f"read {result.ref.table_id}"):
        # No timeout: gRPC's is a deadline for the whole stream. The idle deadline bounds each
        # wait for a message instead (and ends the reconnect loop of a stream whose server is
        # gone); closing the generator cancels the stream.
        stream = storage.read_rows(stream_name, offset=offset, retry=clients.retry)
        responses = with_idle_deadline(stream, clients.call_timeout, stage)
        try:
            for table in rechunk(record_batches(schema, responses), size):
                yield _plain(table)
                index += 1
        finally:
            responses.close()
            stream.cancel()  # also if `responses` never started


def _rest_chunks(
    clients: BigQueryClients, result: ResultTable, start: int, end: int, size: int
) -> Iterator[pa.Table]:
    for position in range(start, end, size):
        count = min(size, end - position)
        with bigquery_errors(f"read rows {position}..{position + count} of {result.ref.table_id}"):
            rows = clients.rest.list_rows(
                result.ref.table_id, selected_fields=result.schema, start_index=position,
                max_results=count, retry=clients.retry, timeout=clients.call_timeout,
            )
            table = rows.to_arrow(create_bqstorage_client=False, progress_bar_type=None)
        if table.num_rows != count:  # the next chunk would start at the wrong row
            raise SourceUnavailableError(f"{result.ref.table_id}: read {table.num_rows} rows at "
                                         f"{position}, expected {count}")
        yield _plain(table)


def _plain(table: pa.Table) -> pa.Table:
    """Without the emulator's per-field DuckDB annotations and BigQuery's schema metadata."""
    plain = pa.schema([field.remove_metadata() for field in table.schema])
    return table.cast(plain).replace_schema_metadata(None)


def _session(storage: Any, clients: BigQueryClients, result: ResultTable, streams: int) -> Any:
    """An Arrow read session over the whole result table with up to `streams` streams (one
    stream: one order)."""
    from google.cloud.bigquery_storage_v1 import types

    session = storage.create_read_session(
        parent=f"projects/{clients.settings.bq_project}",
        read_session=types.ReadSession(
            table=result.ref.storage_path, data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(selected_fields=result.columns),
        ),
        max_stream_count=streams,
        retry=clients.retry,
        timeout=clients.call_timeout,
    )
    if not session.streams:
        raise SourceUnavailableError(f"{result.ref.table_id}: no read stream")
    return session


def session_schema(session: Any) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))


def record_batches(schema: pa.Schema, responses: Iterable[Any]) -> Iterator[pa.RecordBatch]:
    """Decode a stream's ReadRowsResponses (Arrow IPC record batches) as they arrive."""
    for response in responses:
        if response.row_count:
            yield pa.ipc.read_record_batch(
                pa.py_buffer(response.arrow_record_batch.serialized_record_batch), schema
            )


def arrow_table(session: Any, responses: Iterable[Any]) -> pa.Table:
    """Decode a stream's ReadRowsResponses (Arrow IPC record batches) into one table."""
    schema = session_schema(session)
    return pa.Table.from_batches(list(record_batches(schema, responses)), schema=schema)
