"""Issue 12: a finished job's result stays findable after BullMQ's removeOnComplete /
removeOnFail bounds drop the job (queue.records), through the real api function and worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from heavylift.queue import BlockingQueues, QueueName, own_key
from heavylift.settings import Settings
from local.launch import wait_for
from tests.api_server import B_SUBMIT, Api, start_api
from tests.jobs import DIAG, add

DOCS = QueueName.DOCUMENTS


def _get(api: Api, path: str, **params: str) -> Any:
    response = api.session.get(api.url(path), params=params, timeout=10)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def _wait_finished(api: Api, status_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job: dict[str, Any] = _get(api, status_url)
        if job["state"] in ("completed", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{status_url} did not finish: {job}")


def test_results_outlive_bullmq_history(
    redis_url: str, tmp_path: Path, start_worker: Any
) -> None:
    storage = f"file://{tmp_path / 'objects'}"
    # BullMQ keeps 2 completed jobs and no failed one; RESULT_TTL_S keeps every record.
    env = {"REDIS_URL": redis_url, "STORAGE_URL": storage, "KEEP_COMPLETED": "2",
           "KEEP_FAILED": "0", "BACKOFF_BASE_MS": "100"}
    api = start_api(env, tmp_path)
    queues = BlockingQueues(Settings(redis_url=redis_url, keep_failed=0, job_attempts=2,
                                     backoff_base_ms=100))
    try:
        start_worker(STORAGE_URL=storage)
        entries = []
        for n in range(4):
            text = f"# Note {n}\n\nqueues hand heavy work to workers, number {n}.\n" * 5
            response = api.session.post(
                api.url("/api/documents/async-upload"),
                files=[("files", (f"note-{n}.md", text.encode()))], timeout=30)
            assert response.status_code == 202, response.text
            body = response.json()
            assert set(body) == {"success", "message", "jobs", "queueStatus"}
            (entry,) = body["jobs"]
            assert {"jobId", "filename", "size", "documentId", "statusUrl"} <= set(entry)
            assert entry["documentId"].startswith("doc_")
            assert entry["statusUrl"] == f"/api/documents/async-upload?jobId={entry['jobId']}"
            # One at a time, so the first job is surely among those BullMQ dropped.
            assert _wait_finished(api, entry["statusUrl"])["state"] == "completed"
            entries.append(entry)

        first = entries[0]
        assert queues.run(lambda q: q.bull(DOCS).getJob(first["jobId"])) is None, \
            "BullMQ still has the first job: the test would not exercise the record"
        view = _get(api, "/api/documents/async-upload", jobId=first["jobId"])
        assert view["id"] == first["jobId"] and view["state"] == "completed"
        assert view["progress"] == 100 and view["attemptsMade"] == 1
        assert view["result"]["documentId"] == first["documentId"]
        assert view["result"]["chunks"] >= 1
        assert view["finishedAt"] >= view["processedAt"] >= view["createdAt"]
        detail = _get(api, f"/api/queues/documents/jobs/{first['jobId']}")
        assert detail["state"] == "completed" and detail["queue"] == "documents"
        assert detail["data"]["documentId"] == first["documentId"]
        # The newest job is still BullMQ's and is answered from there, the same shape.
        assert queues.run(lambda q: q.bull(DOCS).getJob(entries[-1]["jobId"])) is not None
        latest = _get(api, entries[-1]["statusUrl"])
        assert set(latest) == set(view)
        manifest = _get(api, f"/api/documents/{first['documentId']}")
        assert manifest["status"] == "COMPLETED" and manifest["tenant"] == "default"
        # The record and the manifest keep the job's tenant: another tenant's key gets the 404
        # of an unknown id, from BullMQ's history and long after it.
        assert detail["data"]["tenant"] == "default"
        other = api.as_key(B_SUBMIT)
        for path in (first["statusUrl"], entries[-1]["statusUrl"],
                     f"/api/documents/{first['documentId']}"):
            refused = other.get(api.url(path), timeout=10)
            assert refused.status_code == 404 and refused.json()["code"] == "not_found", path
        # The record, and which job serves the document, are both kept for RESULT_TTL_S (7 days).
        ttls = [queues.run(lambda q, key=key: q.redis.ttl(key)) for key in (
            own_key(queues.settings, "record", "documents", first["jobId"]),
            own_key(queues.settings, "doc", first["documentId"]))]
        assert all(6 * 86_400 < ttl <= 7 * 86_400 for ttl in ttls), ttls

        # A failure is recorded once no retry is left (KEEP_FAILED=0 drops the job at once).
        failed = add(queues, "fail", message="always")
        wait_for(lambda: queues.run(lambda q: q.view(DIAG, failed)).state == "failed", 15)
        assert queues.run(lambda q: q.bull(DIAG).getJob(failed)) is None
        record = _get(api, f"/api/queues/diagnostics/jobs/{failed}")
        assert record["failedReason"] == "always" and record["attemptsMade"] == 2
        assert record["stacktrace"] and "always" in record["stacktrace"][-1]
        unknown = api.session.get(api.url("/api/documents/async-upload"),
                                  params={"jobId": "999999"}, timeout=10)
        assert unknown.status_code == 404
    finally:
        queues.close()
        api.stop()
