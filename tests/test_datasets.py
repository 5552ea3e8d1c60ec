"""Dataset syncs through the service functions the HTTP route calls, against the BigQuery
emulator with the real google-cloud-bigquery client: validation, both sides of the threshold,
the inline sync's output, chunk delays, NDJSON, BigQuery errors; cutting a read stream into
chunks, a read that ends short, and a resumed sync whose new read delivers the rows in another
order."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from google.api_core import exceptions as gexc

from heavylift.datasets import service
from heavylift.datasets.chunking import rechunk
from heavylift.datasets.clients import BigQueryClients, open_clients
from heavylift.datasets.engine import DatasetSync, run_blocking
from heavylift.datasets.errors import (
    SourceAccessError,
    SourceConflictError,
    SourceError,
    SourceNotFoundError,
    SourceQueryError,
    SourceUnavailableError,
    bigquery_errors,
)
from heavylift.datasets.request import SyncRequestError, parse_request
from heavylift.datasets.source import result_table_ref
from heavylift.datasets.stream import with_idle_deadline
from heavylift.queue import BlockingQueues, QueueName
from heavylift.resources import Resources
from heavylift.settings import Settings
from local.launch import free_port
from tests.dataset_checks import (
    DATASET,
    FULL_RANGE,
    checksum,
    filter_rows,
    read_manifest,
    read_parts,
    storage_root,
)
from tests.faults import TcpRelay

# The emulator fixtures (bq_settings, source_actuals...).
pytest_plugins = ("tests.bq_emulator",)

QUARTER = {"startDate": "2024-01-01", "endDate": "2024-03-31"}


def body(**overrides: Any) -> dict[str, Any]:
    return {"datasetId": DATASET, "environment": "production", "volumeType": "inbound",
            "jobType": "actuals", **QUARTER, **overrides}


# --- cutting a stream into chunks (no BigQuery needed) --------------------------------------------

def numbered_batches(*sizes: int) -> list[pa.RecordBatch]:
    starts = list(itertools.accumulate(sizes, initial=0))
    return [pa.record_batch({"v": pa.array(range(a, a + n), pa.int64())})
            for a, n in zip(starts, sizes, strict=False)]


@pytest.mark.parametrize("sizes", [(7, 0, 14, 4), (25,), (1,) * 25, (10, 10, 5), (3, 20, 2)])
def test_batches_of_any_size_are_cut_into_whole_chunks(sizes: tuple[int, ...]) -> None:
    chunks = list(rechunk(numbered_batches(*sizes), 10))
    assert [c["v"].to_pylist() for c in chunks] == [
        list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]


def test_no_batches_no_chunks() -> None:
    assert list(rechunk([], 10)) == []
    assert [c.num_rows for c in rechunk(numbered_batches(10, 10), 10)] == [10, 10]


class ListStream:
    """A stream of `items` (an exception among them is raised there), cancel() recorded."""

    def __init__(self, *items: object) -> None:
        self.items, self.cancelled = items, False

    def __iter__(self) -> Iterator[object]:
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            yield item

    def cancel(self) -> None:
        self.cancelled = True


def test_only_waiting_for_the_stream_counts_against_its_idle_deadline() -> None:
    """A consumer busy for longer than the deadline between messages (encoding, writing parts)
    is no stall."""
    stream = ListStream(1, 2, 3)
    got = []
    for item in with_idle_deadline(stream, 0.2, lambda: "reading"):
        got.append(item)
        time.sleep(0.5)
    assert got == [1, 2, 3] and stream.cancelled


def test_a_stream_error_reaches_the_reader_as_it_is() -> None:
    stream = ListStream(1, gexc.ServiceUnavailable("backend gone"))
    messages = with_idle_deadline(stream, 5.0, lambda: "reading")
    assert next(messages) == 1
    with pytest.raises(SourceUnavailableError, match="unavailable: backend gone"), \
            bigquery_errors("read t"):
        next(messages)
    assert stream.cancelled


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
    bq_settings: Settings, bq_resources: Resources, source_actuals: pa.Table
) -> None:
    spec = parse_request(body(totalCount=1), bq_settings)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           QUARTER["startDate"], QUARTER["endDate"]).num_rows
    assert service.count_rows(bq_resources.bigquery(), spec) == expected > 1


def test_below_threshold_syncs_inline_with_exactly_the_source_rows(
    bq_settings: Settings, bq_resources: Resources, queues: BlockingQueues, source_actuals: pa.Table
) -> None:
    spec = parse_request(body(chunkSize=1000), bq_settings)
    total = service.count_rows(bq_resources.bigquery(), spec)
    bq_resources.settings = bq_settings.model_copy(update={"sync_threshold": total + 1})

    answer = service.start_sync(bq_resources, queues, spec)

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
    bq_settings: Settings, bq_resources: Resources, queues: BlockingQueues
) -> None:
    spec = parse_request(body(chunkSize=1000), bq_settings)
    total = service.count_rows(bq_resources.bigquery(), spec)
    bq_resources.settings = bq_settings.model_copy(update={"sync_threshold": total})

    answer = service.start_sync(bq_resources, queues, spec)

    assert isinstance(answer, service.SyncQueued)
    assert (answer.totalCount, answer.chunkSize) == (total, 1000)
    assert answer.plannedChunks == service.plan(spec, total).chunkCount == -(-total // 1000)
    assert answer.plannedStreams == 1  # below SYNC_DISTRIBUTE_ROWS: one job reads it
    detail = queues.run(lambda q: q.detail(QueueName.DATASETS, answer.jobId))
    assert detail.state == "waiting" and detail.name == "sync"
    assert detail.data["datasetId"] == DATASET and detail.data["totalCount"] == total
    assert detail.data["chunkSize"] == 1000 and detail.data["format"] == "parquet"
    assert not (storage_root(bq_settings) / "datasets").exists()


def test_chunk_delay_is_honoured_between_parts(
    bq_settings: Settings, bq_resources: Resources
) -> None:
    spec = parse_request(
        body(chunkSize=1000, chunkDelayMs=250, startDate="2024-01-01", endDate="2024-06-30"),
        bq_settings,
    )
    result = service.run_inline(bq_resources, spec)
    manifest, _ = read_parts(bq_settings, result.manifest)
    written = [p.writtenAt for p in manifest.parts]
    assert len(written) >= 3
    gaps = [b - a for a, b in itertools.pairwise(written)]
    assert min(gaps) >= 250, gaps


def test_ndjson_parts_hold_one_json_object_per_row(
    bq_settings: Settings, bq_resources: Resources
) -> None:
    spec = parse_request(body(format="ndjson", startDate="2024-01-01", endDate="2024-01-20"),
                         bq_settings)
    result = service.run_inline(bq_resources, spec)
    manifest = read_manifest(bq_settings, result.manifest)
    lines = (storage_root(bq_settings) / manifest.parts[0].key).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == result.totalRows == service.count_rows(bq_resources.bigquery(), spec) > 0
    assert {r["environment"] for r in rows} == {"production"}
    assert all("2024-01-01" <= r["activity_date"] <= "2024-01-20" for r in rows)


def test_unknown_dataset_is_a_clear_not_found(
    bq_settings: Settings, bq_resources: Resources
) -> None:
    spec = parse_request(body(datasetId="no_such_dataset"), bq_settings)
    with pytest.raises(SourceNotFoundError, match="no_such_dataset"):
        service.count_rows(bq_resources.bigquery(), spec)


def test_a_result_table_left_by_a_killed_attempt_is_replaced(
    bq_settings: Settings, bq_resources: Resources, source_actuals: pa.Table
) -> None:
    """Killed after its query but before checkpoint.json: the table is there, the checkpoint is
    not. The next attempt must not fail with 409 Already Exists, nor read the stale rows."""
    spec = parse_request(body(chunkSize=1000), bq_settings)
    clients = bq_resources.bigquery()
    ref = result_table_ref(clients, "killed-before-checkpoint")
    clients.rest.create_dataset(f"{ref.project}.{ref.dataset}", exists_ok=True)
    source = f"`{bq_settings.bq_project}.{DATASET}.actuals`"
    clients.rest.query(f"CREATE TABLE {ref.quoted} AS SELECT * FROM {source} LIMIT 7").result()

    result = run_blocking(clients, bq_resources.store, spec, "killed-before-checkpoint")

    _, rows = read_parts(bq_settings, result.manifest)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           QUARTER["startDate"], QUARTER["endDate"])
    assert result.totalRows == rows.num_rows == expected.num_rows > 7
    assert checksum(rows) == checksum(expected)


def rewrite_result(sync: DatasetSync, select: str) -> None:
    """Replace the sync's result table under it, as BigQuery could."""
    table = sync.result.ref.quoted
    sync.clients.rest.query(f"CREATE OR REPLACE TABLE {table} AS {select.format(table=table)}"
                            ).result()


@pytest.mark.parametrize("read_api", ["storage", "rest"])
def test_a_read_that_ends_short_is_a_transient_error(bq_settings: Settings, read_api: str) -> None:
    settings = bq_settings.model_copy(update={"bq_read_api": read_api})
    resources = Resources(settings)
    spec = parse_request(body(chunkSize=1000), settings)
    sync = DatasetSync(resources.bigquery(), resources.store, spec, f"short-{read_api}")
    try:
        sync.start(attempt=1)
        rewrite_result(sync, f"SELECT * FROM {{table}} LIMIT {sync.total_rows - 1}")
        with pytest.raises(SourceUnavailableError, match=r"ended after|expected") as raised:
            sync.copy(sync.chunks(0))
        assert not raised.value.permanent
    finally:
        resources.close()


def test_a_resumed_sync_whose_read_comes_in_another_order_rewrites_from_there(
    bq_settings: Settings, bq_resources: Resources, source_actuals: pa.Table
) -> None:
    spec = parse_request(body(chunkSize=1000, **FULL_RANGE), bq_settings)
    first = DatasetSync(bq_resources.bigquery(), bq_resources.store, spec, "reordered")
    first.start(attempt=1)
    rewrite_result(first, "SELECT * FROM {table} ORDER BY row_id")
    with closing(first.chunks(0)) as chunks:
        first.copy(itertools.islice(chunks, 5))  # then the worker dies
    # The next read gives the first two chunks' rows as before, then the rest reversed.
    cut = pq.read_table(storage_root(bq_settings) / first.manifest.parts[2].key)["row_id"][0]
    rewrite_result(first, f"SELECT * FROM {{table}} ORDER BY row_id >= {cut}, "
                          f"IF(row_id < {cut}, row_id, -row_id)")

    result = run_blocking(bq_resources.bigquery(), bq_resources.store, spec, "reordered")

    manifest, rows = read_parts(bq_settings, result.manifest)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           FULL_RANGE["startDate"], FULL_RANGE["endDate"])
    assert rows.num_rows == expected.num_rows and checksum(rows) == checksum(expected)
    assert [(run.firstChunk, run.reorderedAt) for run in manifest.runs] == [(0, None), (5, 2)]
    assert [p.rows for p in manifest.parts][:-1] == [1000] * (len(manifest.parts) - 1)


def test_rest_reads_give_the_same_rows_as_the_storage_api(
    bq_settings: Settings, source_actuals: pa.Table
) -> None:
    settings = bq_settings.model_copy(update={"bq_read_api": "rest"})
    spec = parse_request(body(chunkSize=1000), settings)
    with closing(Resources(settings)) as resources:
        result = service.run_inline(resources, spec)
    _, rows = read_parts(settings, result.manifest)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           QUARTER["startDate"], QUARTER["endDate"])
    assert checksum(rows) == checksum(expected)


class StallingReadStream:
    """A ReadRows stream that delivers `messages` of a real one, then never answers again
    (a server that stopped sending without closing the stream); cancel() releases it."""

    def __init__(self, real: Any, messages: int) -> None:
        self.real, self.messages = real, messages
        self.rows = 0  # delivered
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        for message in itertools.islice(self.real, self.messages):
            self.rows += message.row_count
            yield message
        self.cancelled.wait()

    def cancel(self) -> None:
        self.cancelled.set()
        self.real.cancel()


class StallingReadClient:
    """Google's BigQueryReadClient with read_rows swapped for a StallingReadStream."""

    def __init__(self, real: Any, messages: int) -> None:
        self.real, self.messages = real, messages
        self.streams: list[StallingReadStream] = []

    def create_read_session(self, **kwargs: Any) -> Any:
        return self.real.create_read_session(**kwargs)

    def read_rows(self, name: str, **kwargs: Any) -> StallingReadStream:
        self.streams.append(StallingReadStream(self.real.read_rows(name, **kwargs), self.messages))
        return self.streams[-1]


@pytest.mark.parametrize("messages", [0, 1])
def test_a_read_stream_that_stops_answering_fails_the_attempt_in_time(
    bq_settings: Settings, bq_resources: Resources, messages: int
) -> None:
    """No read may hang the job: a stream silent for BQ_CALL_TIMEOUT_S fails the attempt as
    transient (BullMQ retries it), naming the chunk it was reading, and is cancelled."""
    settings = bq_settings.model_copy(update={"bq_call_timeout_s": 1.0})
    real = bq_resources.bigquery()
    storage = StallingReadClient(real.storage, messages)
    clients = BigQueryClients(settings, real.rest, storage)
    spec = parse_request(body(chunkSize=1000, **FULL_RANGE), settings)
    sync = DatasetSync(clients, bq_resources.store, spec, f"stalled-{messages}")
    sync.start(attempt=1)

    started = time.monotonic()
    with pytest.raises(SourceUnavailableError) as raised, closing(sync.chunks(0)) as chunks:
        sync.copy(chunks)
    waited = time.monotonic() - started

    chunk = storage.streams[0].rows // 1000  # the one it was reading when the stream fell silent
    assert (chunk > 0) is (messages > 0)
    assert not raised.value.permanent
    assert re.match(rf"reading chunk {chunk} of \S+: no data for 1 s$", str(raised.value))
    assert 1.0 <= waited < 3.0
    assert len(sync.manifest.parts) == chunk
    assert storage.streams[0].cancelled.is_set()


def test_by_default_a_minute_long_outage_is_ridden_out_inside_a_call() -> None:
    """The last try before BQ_TIMEOUT_S can start a call timeout plus a backoff after the outage
    ended, so the budget must cover all three."""
    settings = Settings()
    slack = settings.bq_timeout_s - settings.bq_call_timeout_s - settings.bq_retry_max_delay_s
    assert slack >= 60
    retry = BigQueryClients(settings, None, None).retry  # type: ignore[arg-type]
    assert retry.timeout == settings.bq_timeout_s
    assert retry._maximum == settings.bq_retry_max_delay_s  # no public accessor


OUTAGE_S = 4.0


@pytest.mark.parametrize(("budget_s", "survives"), [(20.0, True), (2.0, False)])
def test_a_bigquery_outage_is_ridden_out_within_the_retry_budget(
    bq_settings: Settings, bq_resources: Resources, budget_s: float, survives: bool
) -> None:
    """BigQuery unreachable for OUTAGE_S (connections refused), then back: a call retries with
    backoff until it answers, if BQ_TIMEOUT_S lasts that long; otherwise it fails, transient."""
    assert bq_settings.bq_emulator_host is not None
    relay = TcpRelay(free_port(), int(bq_settings.bq_emulator_host.rsplit(":", 1)[1]))
    settings = bq_settings.model_copy(update={
        "bq_emulator_host": f"127.0.0.1:{relay.port}", "bq_timeout_s": budget_s,
        "bq_retry_max_delay_s": 1.0})
    spec = parse_request(body(), settings)
    expected = service.count_rows(bq_resources.bigquery(), spec)
    back = threading.Timer(OUTAGE_S, relay.start)
    back.start()
    clients = open_clients(settings)
    started = time.monotonic()
    try:
        if survives:
            assert service.count_rows(clients, spec) == expected
            assert OUTAGE_S <= time.monotonic() - started < OUTAGE_S + 3
        else:
            with pytest.raises(SourceUnavailableError, match="gave up retrying") as raised:
                service.count_rows(clients, spec)
            assert not raised.value.permanent
            assert time.monotonic() - started < OUTAGE_S
    finally:
        back.join()
        clients.close()
        relay.stop()


def api_error(code: int, message: str, reason: str | None = None) -> gexc.GoogleAPICallError:
    """The exception google-api-core builds from an HTTP answer with this status (and reason)."""
    errors = [{"reason": reason, "message": message}] if reason else []
    return gexc.from_http_status(code, message, errors=errors)


@pytest.mark.parametrize(("error", "kind"), [
    # Permanent: the request or our state, not the service.
    (gexc.NotFound("Not found: Table p:d.t"), SourceNotFoundError),
    (api_error(404, "Not found: Dataset p:d", "notFound"), SourceNotFoundError),
    (gexc.BadRequest("Syntax error"), SourceQueryError),
    (api_error(400, "Unrecognized name: x", "invalidQuery"), SourceQueryError),
    (gexc.InvalidArgument("bad read session"), SourceQueryError),
    (gexc.FailedPrecondition("table too new"), SourceQueryError),
    (api_error(412, "Precondition check failed"), SourceQueryError),
    (gexc.Forbidden("Access Denied", errors=[{"reason": "accessDenied"}]), SourceAccessError),
    (gexc.PermissionDenied("bigquery.tables.getData denied"), SourceAccessError),
    (gexc.Unauthorized("Request had invalid authentication credentials"), SourceAccessError),
    (api_error(409, "Already Exists: Table p:d.t", "duplicate"), SourceConflictError),
    (gexc.Conflict("Already Exists: Table p:d.t"), SourceConflictError),
    (gexc.AlreadyExists("Already Exists: Table p:d.t"), SourceConflictError),
    # Transient: the service failed; a later retry may work.
    (gexc.Forbidden("Exceeded rate limits", errors=[{"reason": "rateLimitExceeded"}]),
     SourceUnavailableError),
    (gexc.Forbidden("Quota exceeded: Your project exceeded quota for concurrent queries",
                    errors=[{"reason": "quotaExceeded"}]), SourceUnavailableError),
    (api_error(400, "The job encountered an internal error", "jobInternalError"),
     SourceUnavailableError),
    (gexc.TooManyRequests("slow down"), SourceUnavailableError),
    (gexc.ResourceExhausted("quota"), SourceUnavailableError),
    (api_error(408, "Request Timeout"), SourceUnavailableError),
    (gexc.Aborted("transaction aborted"), SourceUnavailableError),
    (gexc.InternalServerError("internal"), SourceUnavailableError),
    (gexc.BadGateway("bad gateway"), SourceUnavailableError),
    (gexc.ServiceUnavailable("backend"), SourceUnavailableError),
    (gexc.GatewayTimeout("gateway timeout"), SourceUnavailableError),
    (gexc.DeadlineExceeded("Deadline Exceeded"), SourceUnavailableError),
    (gexc.RetryError("Timeout of 180.0s exceeded", gexc.ServiceUnavailable("x")),
     SourceUnavailableError),
    (ConnectionResetError("reset"), SourceUnavailableError),
    (requests.exceptions.ConnectionError("Connection refused"), SourceUnavailableError),
    (requests.exceptions.ReadTimeout("Read timed out. (read timeout=60)"),
     SourceUnavailableError),
    (concurrent.futures.TimeoutError(), SourceUnavailableError),
])
def test_bigquery_errors_are_permanent_or_transient(
    error: Exception, kind: type[SourceError]
) -> None:
    with pytest.raises(SourceError) as raised, bigquery_errors("count rows"):
        raise error
    assert type(raised.value) is kind
    assert raised.value.permanent is (kind is not SourceUnavailableError)
    assert str(raised.value).startswith("count rows: ")
    assert raised.value.__cause__ is error


def test_creating_a_table_that_exists_is_a_conflict_not_an_outage(
    bq_settings: Settings, bq_resources: Resources
) -> None:
    """The 409 the emulator (like BigQuery) answers to a second CREATE TABLE."""
    rest = bq_resources.bigquery().rest
    table = f"`{bq_settings.bq_project}.{DATASET}.created_twice`"
    rest.query(f"CREATE OR REPLACE TABLE {table} AS SELECT 1 AS x").result()
    with pytest.raises(SourceConflictError, match=r"^query: already exists: .*created_twice"
                       ) as raised, bigquery_errors("query"):
        rest.query(f"CREATE TABLE {table} AS SELECT 1 AS x").result()
    assert raised.value.permanent
