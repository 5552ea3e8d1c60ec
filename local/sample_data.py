"""Load realistic sample data into BigQuery (the emulator, normally): `forecast` and `actuals`
tables with rows across environments, volume types, sites, SKUs and two years of dates. Dev
tooling for the local stack, the tests and the benchmarks; not shipped.

    python -m local.sample_data --rows 5000000 [--dataset heavylift] [--tables forecast]

Settings come from the environment (BQ_EMULATOR_HOST, BQ_PROJECT, BQ_DATASET...). Rows are made
with numpy in batches and loaded with Parquet load jobs (one per batch): 5M rows take seconds.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence
from datetime import date
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from google.cloud import bigquery

from heavylift.datasets.clients import BigQueryClients, open_clients
from heavylift.datasets.errors import bigquery_errors
from heavylift.datasets.request import JobType
from heavylift.settings import load_settings

ENVIRONMENTS = ("production", "staging", "development")
ENVIRONMENT_WEIGHTS = (0.6, 0.25, 0.15)
VOLUME_TYPES = ("inbound", "outbound", "returns", "transfers")
LAST_DATE = date(2025, 12, 31)
DAYS = 730
SITES = 40
SKUS = 2_000
BATCH_ROWS = 500_000

SCHEMAS: dict[JobType, list[bigquery.SchemaField]] = {
    "forecast": [
        bigquery.SchemaField("row_id", "INT64", mode="REQUIRED"),
        bigquery.SchemaField("environment", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("volume_type", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("forecast_date", "DATE", mode="REQUIRED"),
        bigquery.SchemaField("site_id", "STRING"),
        bigquery.SchemaField("sku", "STRING"),
        bigquery.SchemaField("forecast_units", "FLOAT64"),
        bigquery.SchemaField("lower_bound", "FLOAT64"),
        bigquery.SchemaField("upper_bound", "FLOAT64"),
        bigquery.SchemaField("model_version", "STRING"),
        bigquery.SchemaField("generated_at", "TIMESTAMP"),
    ],
    "actuals": [
        bigquery.SchemaField("row_id", "INT64", mode="REQUIRED"),
        bigquery.SchemaField("environment", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("volume_type", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("activity_date", "DATE", mode="REQUIRED"),
        bigquery.SchemaField("site_id", "STRING"),
        bigquery.SchemaField("sku", "STRING"),
        bigquery.SchemaField("actual_units", "INT64"),
        bigquery.SchemaField("recorded_at", "TIMESTAMP"),
    ],
}


def _labels(prefix: str, count: int) -> pa.Array:
    return pa.array([f"{prefix}{i:04d}" for i in range(count)])


def _pick(
    rng: np.random.Generator, values: Sequence[str], size: int,
    weights: Sequence[float] | None = None,
) -> pa.Array:
    """Dictionary-encoded picks: cheap to make and to load, read back as plain STRING."""
    indices = rng.choice(len(values), size=size, p=weights).astype(np.int32)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values))


def make_batch(
    job_type: JobType, first_row: int, size: int, rng: np.random.Generator,
    environments: Sequence[str], volume_types: Sequence[str],
) -> pa.Table:
    """`size` rows of `job_type`, row ids from `first_row`, dates over the last two years."""
    weights = ENVIRONMENT_WEIGHTS if tuple(environments) == ENVIRONMENTS else None
    day_offsets = rng.integers(0, DAYS, size)
    days = (np.datetime64(LAST_DATE) - np.timedelta64(DAYS - 1, "D")) + day_offsets
    seconds = rng.integers(0, 86_400, size).astype("timedelta64[s]")
    stamps = (days.astype("datetime64[s]") + seconds).astype("datetime64[us]")
    sites = _labels("site-", SITES).take(pa.array(rng.integers(0, SITES, size)))
    skus = _labels("sku-", SKUS).take(pa.array(rng.zipf(1.3, size) % SKUS))
    base = rng.gamma(2.0, 60.0, size)
    columns: dict[str, pa.Array | np.ndarray] = {
        "row_id": np.arange(first_row, first_row + size, dtype=np.int64),
        "environment": _pick(rng, environments, size, weights),
        "volume_type": _pick(rng, volume_types, size),
    }
    if job_type == "forecast":
        spread = base * rng.uniform(0.05, 0.3, size)
        columns |= {
            "forecast_date": pa.array(days.astype("datetime64[D]"), pa.date32()),
            "site_id": sites, "sku": skus,
            "forecast_units": np.round(base, 2),
            "lower_bound": np.round(base - spread, 2),
            "upper_bound": np.round(base + spread, 2),
            "model_version": _pick(rng, ("prophet-3.1", "arima-2.4", "lgbm-1.9"), size),
            "generated_at": pa.array(stamps - np.timedelta64(7, "D"), pa.timestamp("us", "UTC")),
        }
    else:
        columns |= {
            "activity_date": pa.array(days.astype("datetime64[D]"), pa.date32()),
            "site_id": sites, "sku": skus,
            "actual_units": rng.poisson(base).astype(np.int64),
            "recorded_at": pa.array(stamps, pa.timestamp("us", "UTC")),
        }
    return pa.table(columns)


def load_table(
    clients: BigQueryClients, dataset: str, job_type: JobType, rows: int, *,
    environments: Sequence[str] = ENVIRONMENTS, volume_types: Sequence[str] = VOLUME_TYPES,
    seed: int = 7, on_rows: Callable[[int], None] | None = None,
) -> None:
    """Replace `dataset.<job_type>` with `rows` generated rows (deterministic for a seed)."""
    rest = clients.rest
    table_id = f"{clients.settings.bq_project}.{dataset}.{job_type}"
    rng = np.random.default_rng(seed)
    with bigquery_errors(f"seed {table_id}"):
        rest.create_dataset(f"{clients.settings.bq_project}.{dataset}", exists_ok=True)
        rest.delete_table(table_id, not_found_ok=True)
        # The emulator loads only into existing tables.
        rest.create_table(bigquery.Table(table_id, schema=SCHEMAS[job_type]))
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        )
        for first in range(0, rows, BATCH_ROWS):
            size = min(BATCH_ROWS, rows - first)
            batch = make_batch(job_type, first, size, rng, environments, volume_types)
            buffer = io.BytesIO()
            pq.write_table(batch, buffer)
            buffer.seek(0)
            rest.load_table_from_file(buffer, table_id, job_config=config).result()
            if on_rows is not None:
                on_rows(size)


def main(argv: list[str] | None = None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table")
    parser.add_argument("--dataset", default=settings.bq_dataset)
    parser.add_argument("--tables", default="forecast,actuals", help="comma-separated")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same rows each run)")
    args = parser.parse_args(argv)
    tables: list[JobType] = []
    for name in args.tables.split(","):
        if name not in SCHEMAS:
            parser.error(f"unknown table {name!r}; choose from {', '.join(SCHEMAS)}")
        tables.append(name)
    clients = open_clients(settings)
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with Progress(*columns) as progress:
            for job_type in tables:
                task = progress.add_task(f"{args.dataset}.{job_type}", total=args.rows)
                load_table(clients, args.dataset, job_type, args.rows, seed=args.seed,
                           on_rows=partial(progress.advance, task))
    finally:
        clients.close()


if __name__ == "__main__":
    main()
