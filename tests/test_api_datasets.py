"""`POST /api/datasets/sync` over a real socket (functions-framework) against the BigQuery
emulator: inline below SYNC_THRESHOLD, queued at or above it, strict validation, clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from heavylift.datasets import service
from heavylift.datasets.request import parse_request
from heavylift.resources import Resources
from heavylift.settings import Settings
from local.bq_emulator import BigQueryEmulator
from local.launch import RedisServer
from tests.api_server import A_READ, A_SUBMIT, B_SUBMIT, Api, run_cli, start_api
from tests.dataset_checks import DATASET

pytest_plugins = ("tests.bq_emulator",)

SYNC = "/api/datasets/sync"
MONTH = {"startDate": "2024-01-01", "endDate": "2024-01-31"}
TWO_YEARS = {"startDate": "2024-01-01", "endDate": "2025-12-31"}


def body(**overrides: Any) -> dict[str, Any]:
    return {"datasetId": DATASET, "environment": "production", "volumeType": "inbound",
            "jobType": "actuals", **MONTH, **overrides}


@pytest.fixture(scope="module")
def counts(bq_seeded: BigQueryEmulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    settings = Settings(**{k.lower(): v for k, v in bq_seeded.env().items()})
    with closing(Resources(settings)) as resources:
        return {name: service.count_rows(resources.bigquery(),
                                         parse_request(body(**dates), settings))
                for name, dates in (("month", MONTH), ("two_years", TWO_YEARS))}


@pytest.fixture(scope="module")
def api(
    redis_server: RedisServer, bq_seeded: BigQueryEmulator, counts: dict[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    assert counts["month"] < counts["two_years"]
    workdir = tmp_path_factory.mktemp("api-datasets")
    threshold = (counts["month"] + counts["two_years"]) // 2
    server = start_api({"REDIS_URL": redis_server.url, **bq_seeded.env(),
                        "STORAGE_URL": f"file://{workdir / 'objects'}",
                        "SYNC_THRESHOLD": str(threshold)}, workdir)
    yield server
    server.stop()


@pytest.fixture
def fresh(api: Api, redis_url: str) -> Api:
    return api


def test_small_sync_runs_inline(fresh: Api, counts: dict[str, int]) -> None:
    answer = fresh.session.post(fresh.url(SYNC), json=body(totalCount=999_999_999), timeout=120)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["success"] is True and data["mode"] == "inline"
    assert data["totalCount"] == counts["month"]  # counted, not trusted from the request
    assert data["result"]["status"] == "COMPLETED"
    assert data["result"]["totalRows"] == counts["month"]


def test_large_sync_is_queued_with_its_plan(fresh: Api, counts: dict[str, int]) -> None:
    answer = fresh.session.post(fresh.url(SYNC), json=body(**TWO_YEARS, chunkSize=5000),
                                timeout=60)
    assert answer.status_code == 202, answer.text
    data = answer.json()
    assert data["totalCount"] == counts["two_years"]
    assert data["plannedChunks"] == -(-counts["two_years"] // 5000)
    view = fresh.session.get(fresh.url(SYNC), params={"jobId": data["jobId"]}, timeout=10).json()
    assert view["id"] == data["jobId"] and view["state"] == "waiting"
    queue = fresh.session.get(fresh.url(SYNC), timeout=10).json()
    assert queue == {"waiting": 1, "active": 0, "completed": 0, "failed": 0, "delayed": 0}


def test_syncs_belong_to_their_tenant(fresh: Api) -> None:
    queued = fresh.as_key(A_SUBMIT).post(fresh.url(SYNC), json=body(**TWO_YEARS), timeout=60)
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["jobId"]
    assert fresh.as_key(A_READ).get(fresh.url(SYNC), params={"jobId": job_id},
                                    timeout=10).status_code == 200
    other = fresh.as_key(B_SUBMIT).get(fresh.url(SYNC), params={"jobId": job_id}, timeout=10)
    assert other.status_code == 404 and other.json()["code"] == "not_found"
    # B's allow-list does not hold the dataset; A's read key may not sync at all.
    refused = fresh.as_key(B_SUBMIT).post(fresh.url(SYNC), json=body(), timeout=10)
    assert refused.status_code == 403 and refused.json()["code"] == "dataset_forbidden"
    read = fresh.as_key(A_READ).post(fresh.url(SYNC), json=body(), timeout=10)
    assert read.status_code == 403 and read.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"datasetId": "x`; DROP TABLE y; --"}, 400, "datasetId"),
        ({"jobType": "everything"}, 400, "jobType"),
        ({"startDate": "2024-02-01", "endDate": "2024-01-31"}, 422, "endDate"),
        ({"startDate": "2019-01-01", "endDate": "2025-12-31"}, 422, "endDate"),
    ],
)
def test_bad_requests_name_the_field(
    fresh: Api, overrides: dict[str, Any], status: int, field: str
) -> None:
    answer = fresh.session.post(fresh.url(SYNC), json=body(**overrides), timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    assert fresh.session.get(fresh.url(SYNC), timeout=10).json()["waiting"] == 0


def test_unknown_dataset_and_malformed_json(fresh: Api) -> None:
    missing = fresh.session.post(fresh.url(SYNC), json=body(datasetId="no_such_dataset"),
                                 timeout=60)
    assert missing.status_code == 404 and missing.json()["code"] == "source_not_found"
    malformed = fresh.session.post(fresh.url(SYNC), data=b"{nope", timeout=10,
                                   headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["code"] == "malformed_json"
    unknown = fresh.session.get(fresh.url(SYNC), params={"jobId": "ds-nope"}, timeout=10)
    assert unknown.status_code == 404


def test_cli_datasets_sync_waits_for_the_queued_job(
    fresh: Api, bq_seeded: BigQueryEmulator, counts: dict[str, int], start_worker
) -> None:
    start_worker(STORAGE_URL=fresh.env["STORAGE_URL"], **bq_seeded.env())
    synced = run_cli(fresh, "datasets", "sync", "--dataset-id", DATASET,
                     "--environment", "production", "--volume-type", "inbound",
                     "--start-date", TWO_YEARS["startDate"], "--end-date", TWO_YEARS["endDate"],
                     "--job-type", "actuals", "--wait")
    assert synced.returncode == 0, synced.stderr
    answer = json.loads(synced.stdout)
    assert answer["mode"] == "queued" and answer["view"]["state"] == "completed"
    assert answer["view"]["result"]["totalRows"] == counts["two_years"]
