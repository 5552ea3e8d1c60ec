"""Dataset syncs through the real worker (`python -m worker_service`), the BigQuery emulator and
file:// storage: 1M rows in 50K chunks land exactly once, also across a SIGKILL mid-sync; an
unknown table fails at once with a clear reason."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from heavylift.datasets import job, service
from heavylift.datasets.request import parse_request
from heavylift.queue import BlockingQueues, QueueName
from heavylift.resources import Resources
from heavylift.settings import Settings
from local.launch import WorkerProcess, wait_for
from tests.dataset_checks import (
    DATASET,
    FORECAST_ROWS,
    FULL_RANGE,
    checksum,
    read_parts,
    read_source,
    storage_root,
)

pytest_plugins = ("tests.bq_emulator",)

# A killed worker's job is back in ~2 s: lock expires after 2 s, stalled check every 1 s.
FAST_LOCKS = {"LOCK_DURATION_MS": "2000", "STALLED_INTERVAL_MS": "1000"}


def worker_env(settings: Settings) -> dict[str, str]:
    assert settings.bq_emulator_host and settings.bq_storage_emulator_host
    return {"STORAGE_URL": settings.storage_url, "BQ_PROJECT": settings.bq_project,
            "BQ_EMULATOR_HOST": settings.bq_emulator_host,
            "BQ_STORAGE_EMULATOR_HOST": settings.bq_storage_emulator_host, **FAST_LOCKS}


@pytest.fixture(scope="module")
def source_forecast(bq_seeded: Any) -> pa.Table:
    return read_source(bq_seeded, "forecast")


def forecast_spec(settings: Settings, **overrides: Any) -> Any:
    return parse_request({"datasetId": DATASET, "environment": "production",
                          "volumeType": "inbound", "jobType": "forecast", **FULL_RANGE,
                          **overrides}, settings)


def job_view(queues: BlockingQueues, job_id: str) -> dict[str, Any]:
    return queues.run(lambda q: q.view(QueueName.DATASETS, job_id)).model_dump()


def assert_exactly_the_source(settings: Settings, result: dict[str, Any], source: pa.Table) -> Any:
    manifest, rows = read_parts(settings, result["manifest"])
    assert manifest.status == "COMPLETED" and manifest.totalRows == FORECAST_ROWS
    assert rows.num_rows == FORECAST_ROWS
    assert pc.count_distinct(rows["row_id"]).as_py() == FORECAST_ROWS  # no duplicates
    assert checksum(rows) == checksum(source)  # no gaps, no altered values
    return manifest


def test_million_rows_sync_in_50k_chunks_through_the_worker(
    bq_resources: Resources, queues: BlockingQueues, start_worker: Any,
    source_forecast: pa.Table,
) -> None:
    bq_settings = bq_resources.settings
    spec = forecast_spec(bq_settings)
    total = service.count_rows(bq_resources.bigquery(), spec)
    assert total == FORECAST_ROWS
    job_id = queues.run(lambda q: job.enqueue(q, spec, total))
    worker = start_worker(**worker_env(bq_settings))

    worker.wait_event("completed", jobId=job_id, timeout=120)

    view = job_view(queues, job_id)
    assert view["state"] == "completed" and view["progress"] == 100
    result = view["result"]
    assert result == {"syncId": job_id, "datasetId": DATASET, "jobType": "forecast",
                      "status": "COMPLETED", "totalRows": FORECAST_ROWS, "parts": 20,
                      "format": "parquet", "manifest": f"datasets/{job_id}/manifest.json"}
    manifest = assert_exactly_the_source(bq_settings, result, source_forecast)
    assert [p.rows for p in manifest.parts] == [50_000] * 20
    assert [p.key for p in manifest.parts][:2] == [
        f"datasets/{job_id}/part-00000.parquet", f"datasets/{job_id}/part-00001.parquet"]
    assert not (storage_root(bq_settings) / "datasets" / job_id / "checkpoint.json").exists()
    assert worker.metric("heavylift_dataset_rows_total") == FORECAST_ROWS


def test_sigkilled_sync_resumes_at_the_first_unwritten_chunk(
    bq_settings: Settings, queues: BlockingQueues, start_worker: Any, source_forecast: pa.Table
) -> None:
    spec = forecast_spec(bq_settings, chunkDelayMs=300)
    job_id = queues.run(lambda q: job.enqueue(q, spec, FORECAST_ROWS))
    folder = storage_root(bq_settings) / "datasets" / job_id
    first: WorkerProcess = start_worker(**worker_env(bq_settings))
    # The checkpoint (not the part files: one can land just before it) says what is written.
    wait_for(lambda: checkpointed_parts(folder) >= 3, timeout=60)

    first.process.send_signal(signal.SIGKILL)
    first.wait_exit()
    killed_at = time.time()  # compared with log record times
    second: WorkerProcess = start_worker(**worker_env(bq_settings))
    second.wait_event("completed", jobId=job_id, timeout=120)

    started = second.wait_event("started", jobId=job_id)
    assert started["_t"] - killed_at < 10, "recovery took longer than the lock settings allow"
    manifest = assert_exactly_the_source(bq_settings, job_view(queues, job_id)["result"],
                                         source_forecast)
    assert len(manifest.parts) == 20
    assert [run.firstChunk for run in manifest.runs][:1] == [0]
    assert len(manifest.runs) == 2 and manifest.runs[1].firstChunk >= 3, manifest.runs
    assert manifest.runs[1].reorderedAt is None  # the new read checked out: nothing rewritten


def checkpointed_parts(folder: Path) -> int:
    try:
        return len(json.loads((folder / "checkpoint.json").read_text())["parts"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_unknown_table_fails_at_once_with_a_clear_reason(
    bq_settings: Settings, queues: BlockingQueues, start_worker: Any
) -> None:
    spec = forecast_spec(bq_settings, datasetId="no_such_dataset")
    job_id = queues.run(lambda q: job.enqueue(q, spec, 100_000))
    worker = start_worker(**worker_env(bq_settings))

    worker.wait_event("failed", jobId=job_id, timeout=60)

    wait_for(lambda: job_view(queues, job_id)["state"] == "failed", timeout=10)
    view = job_view(queues, job_id)
    assert view["attemptsMade"] == 1
    assert "no_such_dataset" in view["failedReason"]
    assert "not found" in view["failedReason"].lower()
    assert [e["willRetry"] for e in worker.find("failed", jobId=job_id)] == [False]
