"""The sync queries: one `.sql` file per job type, with named parameters for every value.

Only identifiers reach the SQL text, and only after validation against BigQuery's identifier
rules and backtick quoting (`TableRef.quoted`); user values are always query parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

from google.cloud import bigquery

from heavylift.datasets.request import JobType, SyncSpec
from heavylift.settings import BQ_NAME_PATTERN, BQ_PROJECT_PATTERN

_PROJECT = re.compile(BQ_PROJECT_PATTERN)
_DATASET_OR_TABLE = re.compile(BQ_NAME_PATTERN)


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    def __post_init__(self) -> None:
        if not _PROJECT.match(self.project):
            raise ValueError(f"invalid BigQuery project id {self.project!r}")
        for part in (self.dataset, self.table):
            if not _DATASET_OR_TABLE.match(part):
                raise ValueError(f"invalid BigQuery dataset or table id {part!r}")

    @property
    def table_id(self) -> str:
        """`project.dataset.table`, as the client library takes it."""
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def quoted(self) -> str:
        return f"`{self.table_id}`"

    @property
    def storage_path(self) -> str:
        """The resource name the Storage Read API takes."""
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{self.table}"


def source_table(project: str, spec: SyncSpec) -> TableRef:
    """Each job type reads the table of the same name in the requested dataset."""
    return TableRef(project, spec.datasetId, spec.jobType)


@cache
def _template(job_type: JobType) -> Template:
    text = resources.files(__package__).joinpath(f"{job_type}.sql").read_text("utf-8")
    return Template(text)


def select_sql(spec: SyncSpec, table: TableRef) -> str:
    return _template(spec.jobType).substitute(table=table.quoted)


def count_sql(spec: SyncSpec, table: TableRef) -> str:
    return f"SELECT COUNT(*) AS n FROM (\n{select_sql(spec, table)}\n)"  # noqa: S608


def materialize_sql(spec: SyncSpec, table: TableRef, target: TableRef) -> str:
    """Write the sync's rows to `target`, a table of the sync's own that a resumed job reads.

    OR REPLACE: an attempt killed after the query but before its checkpoint left the table
    behind, and a plain CREATE TABLE then fails with 409 on every later attempt."""
    return f"CREATE OR REPLACE TABLE {target.quoted} AS\n{select_sql(spec, table)}"


def query_parameters(spec: SyncSpec) -> list[bigquery.ScalarQueryParameter]:
    return [
        bigquery.ScalarQueryParameter("environment", "STRING", spec.environment),
        bigquery.ScalarQueryParameter("volume_type", "STRING", spec.volumeType),
        bigquery.ScalarQueryParameter("start_date", "DATE", spec.startDate),
        bigquery.ScalarQueryParameter("end_date", "DATE", spec.endDate),
    ]
