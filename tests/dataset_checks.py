"""Helpers for dataset tests: the seeded dataset's shape, reading a sync's output back, and an
order-independent checksum to compare it with what BigQuery holds.

Seeded dataset `hl_test` (tests/bq_emulator.py):
- `forecast`: FORECAST_ROWS rows, all production/inbound over two years (one request = all);
- `actuals`: ACTUALS_ROWS rows across environments and volume types.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from google.cloud.bigquery_storage_v1 import types

from heavylift.datasets.clients import BigQueryClients, open_clients
from heavylift.datasets.sink import SyncManifest
from heavylift.datasets.source import arrow_table
from heavylift.settings import Settings
from local.bq_emulator import BigQueryEmulator

DATASET = "hl_test"
FORECAST_ROWS = 1_000_000
ACTUALS_ROWS = 60_000
FULL_RANGE = {"startDate": "2024-01-01", "endDate": "2025-12-31"}


def emulator_settings(emulator: BigQueryEmulator) -> Settings:
    return Settings(
        bq_emulator_host=emulator.rest_host, bq_storage_emulator_host=emulator.grpc_host,
        bq_project=emulator.project,
    )


def storage_root(settings: Settings) -> Path:
    return Path(settings.storage_url.removeprefix("file://"))


def read_table(clients: BigQueryClients, dataset: str, table: str) -> pa.Table:
    """A whole table through one Storage Read API session, straight from the client library."""
    project = clients.settings.bq_project
    session = clients.storage.create_read_session(
        parent=f"projects/{project}",
        read_session=types.ReadSession(
            table=f"projects/{project}/datasets/{dataset}/tables/{table}",
            data_format=types.DataFormat.ARROW,
        ),
        max_stream_count=1,
    )
    return arrow_table(session, clients.storage.read_rows(session.streams[0].name))


def read_source(emulator: BigQueryEmulator, table: str) -> pa.Table:
    """A whole seeded table."""
    clients = open_clients(emulator_settings(emulator))
    try:
        return read_table(clients, DATASET, table)
    finally:
        clients.close()


def read_manifest(settings: Settings, manifest_key: str) -> SyncManifest:
    return SyncManifest.model_validate_json((storage_root(settings) / manifest_key).read_bytes())


def read_parts(settings: Settings, manifest_key: str) -> tuple[SyncManifest, pa.Table]:
    """The manifest and every Parquet part it lists, concatenated."""
    manifest = read_manifest(settings, manifest_key)
    tables = [pq.read_table(storage_root(settings) / part.key) for part in manifest.parts]
    return manifest, pa.concat_tables(tables)


def _splitmix(values: np.ndarray) -> np.ndarray:
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _column_hashes(column: pa.ChunkedArray) -> np.ndarray:
    column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_dictionary(column.type):
        encoded = column.dictionary_encode() if pa.types.is_string(column.type) else column
        words = [hashlib.blake2b(str(v).encode(), digest_size=8).digest()
                 for v in encoded.dictionary.to_pylist()]
        lookup = np.frombuffer(b"".join(words), dtype=np.uint64)
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]
    if pa.types.is_floating(column.type):
        return column.to_numpy(zero_copy_only=False).astype(np.float64).view(np.uint64)
    if pa.types.is_date(column.type):
        column = column.cast(pa.int32())
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64)


def checksum(table: pa.Table) -> tuple[int, int]:
    """(rows, sum of per-row hashes mod 2**64): equal for the same rows in any order."""
    rows = np.zeros(table.num_rows, dtype=np.uint64)
    for name in sorted(table.column_names):
        rows = _splitmix(rows ^ _column_hashes(table.column(name)))
    return table.num_rows, int(rows.sum(dtype=np.uint64))


def filter_rows(table: pa.Table, environment: str, volume_type: str, date_column: str,
                start: str, end: str) -> pa.Table:
    mask = pc.and_(
        pc.and_(pc.equal(table["environment"], environment),
                pc.equal(table["volume_type"], volume_type)),
        pc.and_(pc.greater_equal(table[date_column], pa.scalar(date.fromisoformat(start))),
                pc.less_equal(table[date_column], pa.scalar(date.fromisoformat(end)))),
    )
    return table.filter(mask)
