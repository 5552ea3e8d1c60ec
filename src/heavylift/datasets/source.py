"""The BigQuery side of a sync: count, materialise the query once, read it back chunk by chunk.

Query results cannot be read through the Storage Read API everywhere (the emulator 404s), and a
resumed job must read exactly the rows it has not written yet. So the query runs once into a
result table of the sync's own (in BQ_SCRATCH_DATASET) with a 0-based row index; chunk k is the
rows with index in [k*size, (k+1)*size) of that fixed table:

- Storage Read API: one read session (one stream) for every chunk left, restricted to index >=
  the first one's start, its Arrow batches cut into chunks while they arrive in index order (the
  emulator keeps it; BigQuery does not promise it). From the first chunk they do not: one session
  per chunk restricted to its index range (stream offsets are not honoured by the emulator; a
  range restriction is exact everywhere);
- REST otherwise: `tabledata.list` from the chunk's first position, in pages of at most 10 MB.

Every call runs inside `bigquery_errors`, so callers see SourceErrors only. All functions block:
the worker calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from heavylift.datasets.chunking import cut_chunks
from heavylift.datasets.clients import BigQueryClients
from heavylift.datasets.errors import SourceUnavailableError, bigquery_errors
from heavylift.datasets.request import SyncSpec
from heavylift.datasets.sql import (
    ROW_INDEX,
    TableRef,
    count_sql,
    materialize_sql,
    query_parameters,
    source_table,
)

log = logging.getLogger("heavylift.datasets")

# Chunks in order; close() it when stopping early: it may hold a read stream open.
Chunks = Generator[pa.Table, None, None]

# Result tables of syncs that died are left to expire.
RESULT_TABLE_TTL = timedelta(days=1)


@dataclass(frozen=True)
class ResultTable:
    """A materialised sync query: its rows never change, so chunk k is the same on every read."""

    ref: TableRef
    rows: int
    schema: list[bigquery.SchemaField]  # without the row index

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
    with bigquery_errors(f"count {_describe(spec)}"):
        job = clients.rest.query(
            count_sql(spec, table), job_config=config,
            retry=clients.retry, job_retry=clients.job_retry,
        )
        rows = list(job.result(retry=clients.retry))
    return int(rows[0]["n"])


def materialize(clients: BigQueryClients, spec: SyncSpec, target: TableRef) -> ResultTable:
    """Run the sync query into `target` (replacing it) and describe the result."""
    settings = clients.settings
    rest = clients.rest
    with bigquery_errors(f"query {_describe(spec)}"):
        # Also the clearest "dataset not found"; the scratch dataset must share its location.
        source = rest.get_dataset(f"{settings.bq_project}.{spec.datasetId}", retry=clients.retry)
        scratch = bigquery.Dataset(f"{target.project}.{target.dataset}")
        scratch.location = source.location
        scratch.default_table_expiration_ms = int(RESULT_TABLE_TTL.total_seconds() * 1000)
        rest.create_dataset(scratch, exists_ok=True, retry=clients.retry)
        config = bigquery.QueryJobConfig(query_parameters=query_parameters(spec))
        table = source_table(settings.bq_project, spec)
        job = rest.query(
            materialize_sql(spec, table, target), job_config=config,
            retry=clients.retry, job_retry=clients.job_retry,
        )
        job.result(retry=clients.retry)
    found = find_result(clients, target)
    if found is None:
        raise SourceUnavailableError(f"result table {target.table_id} vanished after its query")
    return found


def find_result(clients: BigQueryClients, ref: TableRef) -> ResultTable | None:
    """The result table of an earlier attempt, or None if there is none (any more)."""
    with bigquery_errors(f"look up result table {ref.table_id}"):
        try:
            table = clients.rest.get_table(ref.table_id, retry=clients.retry)
        except NotFound:
            return None
    schema = [field for field in table.schema if field.name != ROW_INDEX]
    return ResultTable(ref, int(table.num_rows or 0), schema)


def drop_result(clients: BigQueryClients, ref: TableRef) -> None:
    with bigquery_errors(f"drop result table {ref.table_id}"):
        clients.rest.delete_table(ref.table_id, not_found_ok=True, retry=clients.retry)


def read_chunks(
    clients: BigQueryClients, result: ResultTable, first: int, size: int
) -> Chunks:
    """Chunks first, first+1, ... of the result table, each as one Arrow table without metadata."""
    count = -(-result.rows // size)
    streamed = first
    if clients.storage is not None and first < count:
        for table in _stream_chunks(clients.storage, clients, result, first * size, size):
            yield table
            streamed += 1
        if streamed < count:
            # Rows came out of index order (or the stream ended early): slower, still exact.
            log.warning("read stream stopped short: one read session per chunk", extra={
                "event": "sync_stream_unordered", "table": result.ref.table_id,
                "chunk": streamed})
    for index in range(streamed, count):
        yield read_chunk(clients, result, index * size, size)


def _stream_chunks(
    storage: Any, clients: BigQueryClients, result: ResultTable, start: int, size: int
) -> Iterator[pa.Table]:
    """Whole chunks from one session over rows start.. for as long as they arrive in order."""
    with bigquery_errors(f"read rows {start}..{result.rows} of {result.ref.table_id}"):
        session = _session(storage, clients, result, [ROW_INDEX, *result.columns],
                           f"{ROW_INDEX} >= {start}")
        stream = storage.read_rows(session.streams[0].name, retry=clients.retry)
        try:
            batches = record_batches(session_schema(session), stream)
            for table in cut_chunks(batches, ROW_INDEX, start, size, result.rows):
                yield _plain(table)
        finally:
            stream.cancel()


def read_chunk(clients: BigQueryClients, result: ResultTable, start: int, size: int) -> pa.Table:
    """Rows [start, start + size) of the result table, as one Arrow table without metadata."""
    expected = max(0, min(size, result.rows - start))
    with bigquery_errors(f"read rows {start}..{start + expected} of {result.ref.table_id}"):
        if clients.storage is not None:
            session = _session(
                clients.storage, clients, result, result.columns,
                f"{ROW_INDEX} >= {start} AND {ROW_INDEX} < {start + expected}",
            )
            table = arrow_table(
                session, clients.storage.read_rows(session.streams[0].name, retry=clients.retry)
            )
        else:
            table = _read_rest(clients, result, start, expected)
    if table.num_rows != expected:
        raise SourceUnavailableError(
            f"{result.ref.table_id}: read {table.num_rows} rows at {start}, expected {expected}"
        )
    return _plain(table)


def _plain(table: pa.Table) -> pa.Table:
    """Without the emulator's per-field DuckDB annotations and BigQuery's schema metadata."""
    plain = pa.schema([field.remove_metadata() for field in table.schema])
    return table.cast(plain).replace_schema_metadata(None)


def _session(
    storage: Any, clients: BigQueryClients, result: ResultTable, fields: list[str],
    restriction: str,
) -> Any:
    """A one-stream Arrow read session; `restriction` holds only integers we computed."""
    from google.cloud.bigquery_storage_v1 import types

    session = storage.create_read_session(
        parent=f"projects/{clients.settings.bq_project}",
        read_session=types.ReadSession(
            table=result.ref.storage_path, data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(
                selected_fields=fields, row_restriction=restriction),
        ),
        max_stream_count=1,
        retry=clients.retry,
    )
    if not session.streams:
        raise SourceUnavailableError(f"{result.ref.table_id}: no read stream for {restriction}")
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


def _read_rest(clients: BigQueryClients, result: ResultTable, start: int, count: int) -> pa.Table:
    rows = clients.rest.list_rows(
        result.ref.table_id, selected_fields=result.schema, start_index=start,
        max_results=count, retry=clients.retry,
    )
    return rows.to_arrow(create_bqstorage_client=False, progress_bar_type=None)
