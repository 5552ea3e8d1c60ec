"""Distributed syncs (issue 15) through real workers, the BigQuery emulator and file:// storage:
a sync of SYNC_DISTRIBUTE_ROWS or more becomes a BullMQ flow, one child job per read stream,
spread over every worker; the parts hold each source row exactly once, also across a SIGKILL
mid-slice, a cancel, and a result table that vanished."""

from __future__ import annotations

import itertools
import json
import signal
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from heavylift.datasets import job, service
from heavylift.datasets.clients import open_clients
from heavylift.datasets.engine import DatasetSync
from heavylift.datasets.request import parse_request
from heavylift.datasets.sink import CHECKPOINT
from heavylift.datasets.slices import SliceSync
from heavylift.datasets.source import result_table_ref
from heavylift.queue import BlockingQueues, QueueName
from heavylift.resources import Resources
from heavylift.settings import Settings
from local.launch import WorkerProcess, wait_for
from tests.dataset_checks import (
    DATASET,
    FORECAST_ROWS,
    FULL_RANGE,
    checksum,
    filter_rows,
    read_parts,
    read_source,
    storage_root,
)
from tests.test_datasets_worker import (
    assert_exactly_the_source,
    forecast_spec,
    job_view,
    worker_env,
)

pytest_plugins = ("tests.bq_emulator",)

STREAMS = 4  # the emulator gives 250K-row streams of the 1M-row forecast table: 5 parts each


@pytest.fixture(autouse=True)
def distribute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syncs of 200K rows or more are queued as flows of up to STREAMS children."""
    monkeypatch.setenv("SYNC_DISTRIBUTE_ROWS", "200000")
    monkeypatch.setenv("SYNC_MAX_STREAMS", str(STREAMS))


@pytest.fixture(scope="module")
def source_forecast(bq_seeded: Any) -> pa.Table:
    return read_source(bq_seeded, "forecast")


def sync_folder(settings: Settings, sync_id: str) -> Path:
    return storage_root(settings) / "datasets" / sync_id


def progress_events(settings: Settings, queues: BlockingQueues, job_id: str) -> list[float]:
    """The parent's progress as its SSE subscribers saw it (the queue's event stream)."""
    stream = f"{settings.queue_prefix}:{QueueName.DATASETS}:events"
    entries = queues.run(lambda q: q.redis.xrange(stream))
    return [float(fields["data"]) for _, fields in entries
            if fields.get("event") == "progress" and fields.get("jobId") == job_id]


def recorded_parts(folder: Path, index: int) -> int:
    try:
        return len(json.loads((folder / "slices" / f"s{index:03d}.json").read_text())["parts"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_a_large_sync_is_spread_over_two_workers(
    bq_resources: Resources, queues: BlockingQueues, start_worker: Any,
    source_forecast: pa.Table,
) -> None:
    bq_settings = bq_resources.settings
    # Two slots each, slices of a second or more: neither worker can take all four.
    # KEEP_COMPLETED=1: finished children soon vanish from Redis; the parent must not add
    # them again when it wakes.
    workers = [start_worker(**worker_env(bq_settings), JOB_CONCURRENCY="2", KEEP_COMPLETED="1")
               for _ in range(2)]
    spec = forecast_spec(bq_settings, chunkDelayMs=250)
    answer = service.start_sync(bq_resources, queues, spec)
    assert isinstance(answer, service.SyncQueued)
    assert (answer.totalCount, answer.plannedChunks, answer.plannedStreams) == (
        FORECAST_ROWS, 20, STREAMS)
    job_id = answer.jobId

    wait_for(lambda: job_view(queues, job_id)["state"] == "completed", timeout=120)

    view = job_view(queues, job_id)
    assert view["progress"] == 100
    result = view["result"]
    assert result["totalRows"] == FORECAST_ROWS and result["parts"] == 20
    manifest = assert_exactly_the_source(bq_settings, result, source_forecast)
    assert [(p.slice, p.index, p.rows) for p in manifest.parts] == [
        (s, i, 50_000) for s in range(STREAMS) for i in range(5)]
    assert manifest.parts[0].key == f"datasets/{job_id}/part-s000-00000.parquet"
    # The storage folder holds the parts and the manifest, nothing else (no part twice).
    folder = sync_folder(bq_settings, job_id)
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                   if path.is_file() and not path.name.startswith(".hl-meta-"))
    assert files == sorted([p.key.rsplit("/", 1)[-1] for p in manifest.parts] + ["manifest.json"])
    # Every worker copied slices; the parent's own run holds no worker while they do.
    slices_by_worker = [len(w.find("completed", jobName="sync-slice")) for w in workers]
    assert sum(slices_by_worker) == STREAMS and min(slices_by_worker) >= 1, slices_by_worker
    # The request's chunkDelayMs throttles each slice: its parts are written 250 ms apart.
    gaps = [b.writtenAt - a.writtenAt for a, b in itertools.pairwise(manifest.parts)
            if a.slice == b.slice]
    assert len(gaps) == 16 and min(gaps) >= 250, gaps
    assert any(w.find("waiting_children", jobId=job_id) for w in workers)
    # The parent's progress is the children's rows summed: it only moves forward.
    seen = progress_events(bq_settings, queues, job_id)
    assert seen == sorted(seen) and len(seen) >= STREAMS and seen[-1] == 100, seen
    assert min(seen) < 50  # reported along the way, not only at the end


def test_a_killed_worker_costs_its_slice_time_not_rows(
    bq_settings: Settings, queues: BlockingQueues, start_worker: Any,
    source_forecast: pa.Table,
) -> None:
    spec = forecast_spec(bq_settings, chunkDelayMs=400)
    job_id = queues.run(lambda q: job.enqueue(q, spec, FORECAST_ROWS))
    folder = sync_folder(bq_settings, job_id)
    victim: WorkerProcess = start_worker(**worker_env(bq_settings), JOB_CONCURRENCY="4")
    wait_for(lambda: sum(recorded_parts(folder, k) >= 2 for k in range(STREAMS)) >= 2,
             timeout=90)

    victim.process.send_signal(signal.SIGKILL)
    victim.wait_exit()
    survivor: WorkerProcess = start_worker(**worker_env(bq_settings), JOB_CONCURRENCY="4")
    wait_for(lambda: job_view(queues, job_id)["state"] == "completed", timeout=120)

    manifest = assert_exactly_the_source(bq_settings, job_view(queues, job_id)["result"],
                                         source_forecast)
    assert len(manifest.parts) == 20
    resumed = survivor.find("slice_resumed", syncId=job_id)
    assert sum(r["firstChunk"] >= 2 for r in resumed) >= 2, resumed  # as recorded at the kill
    assert all(r["offset"] == 50_000 * r["firstChunk"] for r in resumed)


def test_cancelling_a_distributed_sync_stops_every_child_and_a_retry_resumes(
    bq_settings: Settings, queues: BlockingQueues, start_worker: Any,
    source_forecast: pa.Table,
) -> None:
    spec = forecast_spec(bq_settings, chunkDelayMs=1000)
    job_id = queues.run(lambda q: job.enqueue(q, spec, FORECAST_ROWS))
    folder = sync_folder(bq_settings, job_id)
    worker: WorkerProcess = start_worker(**worker_env(bq_settings), JOB_CONCURRENCY="2")
    wait_for(lambda: sum(recorded_parts(folder, k) >= 1 for k in range(STREAMS)) >= 2,
             timeout=90)

    queues.run(lambda q: q.cancel(QueueName.DATASETS, job_id))

    wait_for(lambda: job_view(queues, job_id)["state"] == "failed", timeout=5)
    assert job_view(queues, job_id)["failedReason"] == "cancelled"
    children = [f"{job_id}-{json.loads((folder / 'checkpoint.json').read_text())['planId']}"
                f"-s{k:03d}" for k in range(STREAMS)]
    wait_for(lambda: all(job_view(queues, c)["state"] == "failed" for c in children), timeout=5)
    assert {job_view(queues, c)["failedReason"] for c in children} == {"cancelled"}
    # The running ones were stopped by the worker holding them, not left to finish (its log
    # lines come in batches: they may follow the state by a moment).
    wait_for(lambda: len(worker.find("failed", jobName="sync-slice", reason="cancelled")) >= 2,
             timeout=5)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "CANCELLED"

    # Retrying the sync retries its cancelled children, which resume at their recorded rows.
    queues.run(lambda q: q.retry(QueueName.DATASETS, job_id))
    wait_for(lambda: job_view(queues, job_id)["state"] == "completed", timeout=120)
    assert_exactly_the_source(bq_settings, job_view(queues, job_id)["result"], source_forecast)
    assert len(worker.find("slice_resumed", syncId=job_id)) >= 2


def test_a_vanished_result_table_fails_the_sync_and_a_retry_plans_it_again(
    bq_settings: Settings, queues: BlockingQueues, start_worker: Any,
    source_forecast: pa.Table,
) -> None:
    spec = forecast_spec(bq_settings, chunkDelayMs=300)
    job_id = queues.run(lambda q: job.enqueue(q, spec, FORECAST_ROWS))
    folder = sync_folder(bq_settings, job_id)
    # One slice at a time: the later ones start after the table is gone.
    worker: WorkerProcess = start_worker(**worker_env(bq_settings), JOB_CONCURRENCY="1",
                                         BACKOFF_BASE_MS="100")
    wait_for(lambda: recorded_parts(folder, 0) >= 1, timeout=90)
    clients = open_clients(bq_settings)
    try:
        clients.rest.delete_table(result_table_ref(clients, job_id).table_id)
    finally:
        clients.close()

    wait_for(lambda: job_view(queues, job_id)["state"] == "failed", timeout=90)
    reason = job_view(queues, job_id)["failedReason"]
    assert "slice job" in reason and "is gone" in reason, reason

    queues.run(lambda q: q.retry(QueueName.DATASETS, job_id))
    wait_for(lambda: job_view(queues, job_id)["state"] == "completed", timeout=120)
    assert_exactly_the_source(bq_settings, job_view(queues, job_id)["result"], source_forecast)
    worker.wait_event("completed", jobId=job_id)  # its log lines come in batches


def test_rest_slices_are_row_ranges_of_whole_chunks(
    bq_settings: Settings, source_actuals: pa.Table
) -> None:
    """Without the Storage Read API the slices are row ranges: each child reads its own, from
    its recorded row on after an interruption."""
    settings = bq_settings.model_copy(update={"bq_read_api": "rest"})
    spec = parse_request({"datasetId": DATASET, "environment": "production",
                          "volumeType": "inbound", "jobType": "actuals", "chunkSize": 1000,
                          **FULL_RANGE}, settings).model_copy(update={"streams": 3})
    with closing(Resources(settings)) as resources:
        clients, store = resources.bigquery(), resources.store
        sync = DatasetSync(clients, store, spec, "rest-slices")
        sync.start(attempt=1)
        plan = sync.plan
        assert plan.planId and plan.arrowSchema is None
        ranges = [(part.start, part.end) for part in plan.slices]
        whole = -(-plan.totalRows // 1000)
        per = -(-whole // 3) * 1000
        assert ranges == [(k, min(plan.totalRows, k + per)) for k in range(0, plan.totalRows, per)]
        for part in plan.slices:
            interrupted = SliceSync(clients, store, "rest-slices", part.index)
            assert interrupted.start(plan.planId, attempt=1)
            with closing(interrupted.chunks()) as chunks:  # two parts, then the worker dies
                for index, table in itertools.islice(chunks, 2):
                    interrupted.store(index, interrupted.encode(table), table.num_rows)
            resumed = SliceSync(clients, store, "rest-slices", part.index)
            assert resumed.start(plan.planId, attempt=2)
            assert resumed.rows_written == 2000
            with closing(resumed.chunks()) as chunks:
                for index, table in chunks:
                    resumed.store(index, resumed.encode(table), table.num_rows)
            resumed.finish()
        result = sync.finish()

    manifest, rows = read_parts(settings, result.manifest)
    expected = filter_rows(source_actuals, "production", "inbound", "activity_date",
                           FULL_RANGE["startDate"], FULL_RANGE["endDate"])
    assert rows.num_rows == expected.num_rows == result.totalRows
    assert checksum(rows) == checksum(expected)
    assert {part.slice for part in manifest.parts} == {0, 1, 2}


def test_a_plan_older_than_its_read_session_is_planned_afresh(
    bq_settings: Settings, bq_resources: Resources
) -> None:
    """BigQuery read sessions expire after 6 hours: an attempt after 5.5 h does not hand the
    children streams that can no longer be read."""
    spec = parse_request({"datasetId": DATASET, "environment": "production",
                          "volumeType": "inbound", "jobType": "actuals", "chunkSize": 1000,
                          **FULL_RANGE}, bq_settings).model_copy(update={"streams": 2})
    clients, store = bq_resources.bigquery(), bq_resources.store
    first = DatasetSync(clients, store, spec, "old-plan")
    first.start(attempt=1)
    assert all(part.stream for part in first.plan.slices)
    fresh = DatasetSync(clients, store, spec, "old-plan")
    fresh.start(attempt=2)
    assert fresh.plan.planId == first.plan.planId  # young: the same plan, the same streams

    aged = first.plan.model_copy(deep=True)
    aged.timings.startedAt -= 6 * 3600 * 1000
    first.sink.save(CHECKPOINT, aged)
    again = DatasetSync(clients, store, spec, "old-plan")
    again.start(attempt=3)
    assert again.plan.planId != first.plan.planId
    assert [run.attempt for run in again.plan.runs] == [3]
