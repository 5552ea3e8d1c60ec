"""Dataset syncs through the service functions the HTTP route calls, against the BigQuery
emulator with the real google-cloud-bigquery client: validation, both sides of the threshold,
the inline sync's output, chunk delays, NDJSON, BigQuery errors; cutting a read stream into
chunks and falling back when it stops short."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from google.api_core import exceptions as gexc

from heavylift.datasets import service, source
from heavylift.datasets.chunking import cut_chunks, in_sequence
from heavylift.datasets.errors import (
    SourceAccessError,
    SourceError,
    SourceNotFoundError,
    SourceQueryError,
    SourceUnavailableError,
    bigquery_errors,
)
from heavylift.datasets.request import SyncRequestError, parse_request
from heavylift.queue import QueueName, SyncQueues
from heavylift.settings import Settings
from tests.dataset_checks import (
    DATASET,
    checksum,
    filter_rows,
    read_manifest,
    read_parts,
    storage_root,
)

# The emulator fixtures (bq_settings, source_actuals...).
pytest_plugins = ("tests.bq_emulator",)

QUARTER = {"startDate": "2024-01-01", "endDate": "2024-03-31"}


def body(**overrides: Any) -> dict[str, Any]:
    return {"datasetId": DATASET, "environment": "production", "volumeType": "inbound",
            "jobType": "actuals", **QUARTER, **overrides}


# --- cutting a stream into chunks (no BigQuery needed) --------------------------------------------

def index_batches(*ranges: tuple[int, int]) -> list[pa.RecordBatch]:
    return [pa.record_batch({"_i": pa.array(range(a, b), pa.int64()),
                             "v": pa.array([f"r{i}" for i in range(a, b)])}) for a, b in ranges]


def test_batches_in_index_order_are_cut_at_chunk_boundaries() -> None:
    batches = index_batches((20, 27), (27, 27), (27, 41), (41, 45))
    chunks = list(cut_chunks(batches, "_i", 20, 10, 45))
    assert [c.column_names for c in chunks] == [["v"]] * 3
    assert [c["v"].to_pylist() for c in chunks] == [
        [f"r{i}" for i in range(a, min(a + 10, 45))] for a in (20, 30, 40)]


@pytest.mark.parametrize("ranges", [
    [(0, 10), (10, 15), (16, 25)],  # a gap
    [(0, 10), (5, 25)],  # a repeat
    [(0, 10), (20, 25), (10, 20)],  # out of order
    [(0, 10), (10, 26)],  # beyond the end
])
def test_the_cut_stops_before_the_first_chunk_out_of_sequence(
    ranges: list[tuple[int, int]]
) -> None:
    chunks = list(cut_chunks(index_batches(*ranges), "_i", 0, 10, 25))
    assert [c["v"].to_pylist() for c in chunks] == [[f"r{i}" for i in range(10)]]


def test_a_stream_ending_early_leaves_its_last_chunk_out() -> None:
    assert len(list(cut_chunks(index_batches((0, 10), (10, 24)), "_i", 0, 10, 25))) == 2
    reordered = [pa.record_batch({"_i": pa.array([1, 0], pa.int64())})]
    assert not in_sequence(reordered[0].column(0), 0)
    assert list(cut_chunks(reordered, "_i", 0, 10, 2)) == []


# --- validation (no BigQuery needed) -------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "field"), [
    ({"datasetId": "x`; DROP TABLE y; --"}, "datasetId"),
    ({"datasetId": "a.b"}, "datasetId"),
    ({"environment": "prod' OR '1'='1"}, "environment"),
    ({"jobType": "everything"}, "jobType"),
    ({"startDate": "2024-13-01"}, "startDate"),
    ({"startDate": "2024-01-01T00:00:00"}, "startDate"),
    ({"endDate": 20240101}, "endDate"),
    ({"startDate": "2024-02-01", "endDate": "2024-01-31"}, "endDate"),
    ({"startDate": "2020-01-01", "endDate": "2025-12-31"}, "endDate"),  # > SYNC_MAX_RANGE_DAYS
    ({"chunkSize": 10}, "chunkSize"),
    ({"chunkDelayMs": -1}, "chunkDelayMs"),
    ({"totalCount": "12"}, "totalCount"),
    ({"format": "csv"}, "format"),
    ({"sql": "SELECT 1"}, "sql"),
])
def test_invalid_requests_are_refused_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(SyncRequestError) as refused:
        parse_request(body(**overrides), Settings())
    assert refused.value.field == field, refused.value


def test_missing_field_is_named() -> None:
    payload = body()
    del payload["volumeType"]
    with pytest.raises(SyncRequestError) as refused:
        parse_request(payload, Settings())
    assert refused.value.field == "volumeType"


def test_optional_knobs_default_from_settings() -> None:
    spec = parse_request(body(), Settings(chunk_size=20_000, sync_format="ndjson"))
    assert (spec.chunkSize, spec.chunkDelayMs, spec.format) == (20_000, 0, "ndjson")
    assert parse_request(body(chunkSize=5000), Settings()).chunkSize == 5000


# --- against the emulator ------------------------------------------------------------------------

def test_count_is_a_parameterised_query_and_ignores_total_count(
    bq_settings: Settings, source_actuals: pa.Table
) -> None:
    spec = parse_request(body(totalCount=1), bq_settings)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           QUARTER["startDate"], QUARTER["endDate"]).num_rows
    assert service.count_rows(bq_settings, spec) == expected > 1


def test_below_threshold_syncs_inline_with_exactly_the_source_rows(
    bq_settings: Settings, queues: SyncQueues, source_actuals: pa.Table
) -> None:
    spec = parse_request(body(chunkSize=1000), bq_settings)
    total = service.count_rows(bq_settings, spec)
    settings = bq_settings.model_copy(update={"sync_threshold": total + 1})

    answer = service.start_sync(settings, queues, spec)

    assert isinstance(answer, service.SyncCompleted)
    assert answer.totalCount == total
    result = answer.result
    assert (result.status, result.totalRows) == ("COMPLETED", total)
    assert result.parts == -(-total // 1000)
    manifest, rows = read_parts(bq_settings, result.manifest)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           QUARTER["startDate"], QUARTER["endDate"])
    assert checksum(rows) == checksum(expected)
    assert [p.rows for p in manifest.parts][:-1] == [1000] * (result.parts - 1)
    assert manifest.totalRows == sum(p.rows for p in manifest.parts) == total
    assert [f.name for f in manifest.schema_][:4] == [
        "row_id", "environment", "volume_type", "activity_date"]
    # Finished syncs leave no checkpoint or temp files behind.
    folder = storage_root(bq_settings) / "datasets" / result.syncId
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".hl-"))
    assert names == ["manifest.json"] + [f"part-{i:05d}.parquet" for i in range(result.parts)]
    assert queues.run(lambda q: q.counts(QueueName.DATASETS)).waiting == 0


def test_at_threshold_the_sync_is_queued_with_its_plan(
    bq_settings: Settings, queues: SyncQueues
) -> None:
    spec = parse_request(body(chunkSize=1000), bq_settings)
    total = service.count_rows(bq_settings, spec)
    settings = bq_settings.model_copy(update={"sync_threshold": total})

    answer = service.start_sync(settings, queues, spec)

    assert isinstance(answer, service.SyncQueued)
    assert (answer.totalCount, answer.chunkSize) == (total, 1000)
    assert answer.plannedChunks == service.plan(spec, total).chunkCount == -(-total // 1000)
    detail = queues.run(lambda q: q.detail(QueueName.DATASETS, answer.jobId))
    assert detail.state == "waiting" and detail.name == "sync"
    assert detail.data["datasetId"] == DATASET and detail.data["totalCount"] == total
    assert detail.data["chunkSize"] == 1000 and detail.data["format"] == "parquet"
    assert not (storage_root(bq_settings) / "datasets").exists()


def test_chunk_delay_is_honoured_between_parts(bq_settings: Settings) -> None:
    spec = parse_request(
        body(chunkSize=1000, chunkDelayMs=250, startDate="2024-01-01", endDate="2024-06-30"),
        bq_settings,
    )
    result = service.run_inline(bq_settings, spec)
    manifest, _ = read_parts(bq_settings, result.manifest)
    written = [p.writtenAt for p in manifest.parts]
    assert len(written) >= 3
    gaps = [b - a for a, b in itertools.pairwise(written)]
    assert min(gaps) >= 250, gaps


def test_ndjson_parts_hold_one_json_object_per_row(bq_settings: Settings) -> None:
    spec = parse_request(body(format="ndjson", startDate="2024-01-01", endDate="2024-01-20"),
                         bq_settings)
    result = service.run_inline(bq_settings, spec)
    manifest = read_manifest(bq_settings, result.manifest)
    lines = (storage_root(bq_settings) / manifest.parts[0].key).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == result.totalRows == service.count_rows(bq_settings, spec) > 0
    assert {r["environment"] for r in rows} == {"production"}
    assert all("2024-01-01" <= r["activity_date"] <= "2024-01-20" for r in rows)


def test_unknown_dataset_is_a_clear_not_found(bq_settings: Settings) -> None:
    spec = parse_request(body(datasetId="no_such_dataset"), bq_settings)
    with pytest.raises(SourceNotFoundError, match="no_such_dataset"):
        service.count_rows(bq_settings, spec)


def test_a_stream_that_stops_short_falls_back_to_a_session_per_chunk(
    bq_settings: Settings, source_actuals: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_cut = source.cut_chunks

    def first_chunk_only(*args: Any) -> Iterator[pa.Table]:
        return itertools.islice(real_cut(*args), 1)  # as if the next batch were out of order

    monkeypatch.setattr(source, "cut_chunks", first_chunk_only)
    result = service.run_inline(bq_settings, parse_request(body(chunkSize=1000), bq_settings))
    manifest, rows = read_parts(bq_settings, result.manifest)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           QUARTER["startDate"], QUARTER["endDate"])
    assert checksum(rows) == checksum(expected)
    assert [p.rows for p in manifest.parts][:-1] == [1000] * (result.parts - 1)


def test_rest_reads_give_the_same_rows_as_the_storage_api(
    bq_settings: Settings, source_actuals: pa.Table
) -> None:
    settings = bq_settings.model_copy(update={"bq_read_api": "rest"})
    spec = parse_request(body(chunkSize=1000), settings)
    result = service.run_inline(settings, spec)
    _, rows = read_parts(settings, result.manifest)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           QUARTER["startDate"], QUARTER["endDate"])
    assert checksum(rows) == checksum(expected)


@pytest.mark.parametrize(("error", "kind", "permanent"), [
    (gexc.NotFound("Not found: Table p:d.t"), SourceNotFoundError, True),
    (gexc.BadRequest("Syntax error"), SourceQueryError, True),
    (gexc.Forbidden("Access Denied", errors=[{"reason": "accessDenied"}]), SourceAccessError, True),
    (gexc.Forbidden("Exceeded rate limits", errors=[{"reason": "rateLimitExceeded"}]),
     SourceUnavailableError, False),
    (gexc.TooManyRequests("slow down"), SourceUnavailableError, False),
    (gexc.ServiceUnavailable("backend"), SourceUnavailableError, False),
    (ConnectionResetError("reset"), SourceUnavailableError, False),
])
def test_bigquery_errors_are_permanent_or_transient(
    error: Exception, kind: type[SourceError], permanent: bool
) -> None:
    with pytest.raises(kind) as raised, bigquery_errors("count rows"):
        raise error
    assert raised.value.permanent is permanent
    assert str(raised.value).startswith("count rows: ")
