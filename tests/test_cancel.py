"""Issue 15, cancel: `POST /api/queues/<queue>/jobs/<id>/cancel` and `heavylift cancel` over a
socket, against real workers (two of them: the API reaches whichever holds the job) and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from heavylift.documents.job import UploadOptions
from heavylift.queue import BlockingQueues, Priority
from heavylift.settings import Settings
from heavylift.storage import open_store
from local.launch import RedisServer, WorkerProcess
from tests.api_server import Api, run_cli, start_api
from tests.doc_jobs import DOCS, OUTPUTS, manifest, queue_document, wait_progress
from tests.jobs import DIAG, add, state
from tests.pdf_fixtures import real_manuals

BACKOFF_S = 0.3  # BACKOFF_BASE_MS in the settings fixture, inherited by the workers


@pytest.fixture(scope="module")
def api(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("cancel")
    server = start_api({"REDIS_URL": redis_server.url,
                        "STORAGE_URL": f"file://{workdir / 'objects'}"}, workdir)
    yield server
    server.stop()


def cancel(api: Api, job_id: str, queue: str = str(DIAG)) -> requests.Response:
    return api.session.post(api.url(f"/api/queues/{queue}/jobs/{job_id}/cancel"), timeout=30)


def view(queues: BlockingQueues, job_id: str) -> dict[str, Any]:
    return queues.run(lambda q: q.view(DIAG, job_id)).model_dump()


def holding(workers: list[WorkerProcess], job_id: str) -> WorkerProcess:
    """The worker that started the job (waits for one to)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.find("started", jobId=job_id):
                return worker
        time.sleep(0.05)
    raise AssertionError(f"no worker started job {job_id}")


def test_a_running_job_is_cancelled_on_the_worker_that_holds_it(
    api: Api, queues: BlockingQueues, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = start_worker(JOB_CONCURRENCY="1")
    busy = add(queues, "sleep", seconds=60)
    first.wait_event("started", jobId=busy)
    second = start_worker(JOB_CONCURRENCY="1")  # the first is full: this one takes the next job
    target = add(queues, "sleep", seconds=60)
    assert holding([first, second], target) is second

    sent = time.time()
    answer = cancel(api, target)
    answered = time.time() - sent
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    assert body["job"]["state"] == "failed" and body["job"]["failedReason"] == "cancelled"
    failed = second.wait_event("failed", jobId=target)
    stopped = failed["_t"] - sent
    print(f"cancel of a running job on worker 2: stopped {stopped * 1000:.0f} ms after the "
          f"POST, answered in {answered * 1000:.0f} ms")
    assert stopped < 5 and answered < 5, (stopped, answered)
    assert failed["reason"] == "cancelled" and failed["willRetry"] is False

    time.sleep(BACKOFF_S * 5)  # past any retry's backoff
    assert len(second.find("started", jobId=target)) == 1
    assert not first.find("started", jobId=target)
    final = view(queues, target)
    assert final["state"] == "failed" and final["failedReason"] == "cancelled"
    assert final["attemptsMade"] == 1  # the attempt that ran; none more
    assert state(queues, busy) == "active"  # the other worker's job is untouched

    after = add(queues, "noop")
    second.wait_event("completed", jobId=after)  # the worker goes on with other jobs
    assert cancel(api, busy).json()["job"]["failedReason"] == "cancelled"
    first.wait_event("failed", jobId=busy)


def test_a_waiting_or_delayed_job_is_failed_at_once_and_never_runs(
    api: Api, queues: BlockingQueues, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(JOB_CONCURRENCY="1")
    busy = add(queues, "sleep", seconds=60)
    worker.wait_event("started", jobId=busy)
    waiting = add(queues, "noop", Priority.AI)
    delayed = queues.run(lambda q: q.bull(DIAG).add("noop", {}, {"delay": 60_000}))
    assert state(queues, waiting) == "waiting" and state(queues, str(delayed.id)) == "delayed"

    for job_id in (waiting, str(delayed.id)):
        answer = cancel(api, job_id)
        assert answer.status_code == 200, answer.text
        job = answer.json()["job"]
        assert job["state"] == "failed" and job["failedReason"] == "cancelled"
        assert job["attemptsMade"] == 0 and job["processedAt"] is None

    counts = queues.run(lambda q: q.counts(DIAG))
    assert counts.failed == 2 and counts.waiting == 0 and counts.delayed == 0
    assert cancel(api, busy).status_code == 200
    later = add(queues, "noop")
    worker.wait_event("completed", jobId=later)
    assert not worker.find("started", jobId=waiting)
    assert not worker.find("started", jobId=str(delayed.id))

    # Still answered as cancelled once BullMQ has trimmed it (queue.records).
    queues.run(lambda q: q.bull(DIAG).remove(waiting))
    trimmed = view(queues, waiting)
    assert trimmed["state"] == "failed" and trimmed["failedReason"] == "cancelled"
    assert cancel(api, waiting).status_code == 409


def test_cancelling_a_cpu_pool_task_frees_the_pool_at_once(
    api: Api, queues: BlockingQueues, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(JOB_CONCURRENCY="2", CPU_WORKERS="1")
    burning = add(queues, "cpu", seconds=60)
    worker.wait_event("started", jobId=burning)
    time.sleep(1)  # its task is running in the only pool process
    queued = add(queues, "cpu", seconds=0.5)  # waits for that process
    worker.wait_event("started", jobId=queued)
    time.sleep(0.5)
    assert state(queues, queued) == "active" and view(queues, queued)["progress"] == 0

    sent = time.time()
    assert cancel(api, burning).status_code == 200
    done = worker.wait_event("completed", jobId=queued, timeout=30)
    print(f"pool freed: the queued pool job completed {done['_t'] - sent:.2f} s after the cancel")
    assert done["_t"] - sent < 10  # not after the 60 s the cancelled task had left
    result = view(queues, queued)["result"]
    assert result["attempt"] == 1 and result["burned"] == 0.5


def test_a_cancelled_document_leaves_no_partial_outputs(
    api: Api, queues: BlockingQueues, settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    store = open_store(api.env["STORAGE_URL"], settings)  # the API's: it serves the manifest
    worker = start_worker(STORAGE_URL=api.env["STORAGE_URL"], CPU_WORKERS="1")
    big = real_manuals() / "fullrefman.pdf"  # 2,415 pages: seconds of work
    job = queue_document(queues, store, settings, big, big.name,
                         options=UploadOptions(generateEmbeddings=True))
    wait_progress(queues, job.job_id, at_least=70)  # text extracted and stored: chunking
    folder = f"documents/{job.document_id}/"
    assert store.exists(folder + "pages.jsonl")

    answer = cancel(api, job.job_id, queue=str(DOCS))
    assert answer.status_code == 200, answer.text
    assert answer.json()["job"]["failedReason"] == "cancelled"
    worker.wait_event("failed", jobId=job.job_id)
    stored = manifest(store, job.document_id)
    assert stored["status"] == "CANCELLED" and stored["error"]["message"] == "cancelled"
    assert stored["files"] == {}
    left = sorted(info.key.removeprefix(folder) for info in store.list(folder))
    assert left == ["manifest.json"], left
    assert not set(left) & set(OUTPUTS)
    document = api.session.get(api.url(f"/api/documents/{job.document_id}"), timeout=30)
    assert document.status_code == 200 and document.json()["status"] == "CANCELLED"


def test_finished_and_unknown_jobs(
    api: Api, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    once = BlockingQueues(settings.model_copy(update={"job_attempts": 1}))
    worker = start_worker()
    completed, failed = add(once, "noop"), add(once, "fail", message="broken")
    worker.wait_event("completed", jobId=completed)
    worker.wait_event("failed", jobId=failed)
    for job_id, was in ((completed, "completed"), (failed, "failed")):
        answer = cancel(api, job_id)
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "conflict" and f"already {was}" in answer.json()["error"]
    assert once.run(lambda q: q.view(DIAG, completed)).state == "completed"
    assert cancel(api, "999999").status_code == 404
    assert cancel(api, "events").status_code == 404
    unknown_queue = cancel(api, completed, queue="nope")
    assert unknown_queue.status_code == 404 and unknown_queue.json()["code"] == "unknown_queue"
    once.close()


def test_cli_cancel(api: Api, queues: BlockingQueues,
                    start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker()
    job_id = add(queues, "sleep", seconds=60)
    worker.wait_event("started", jobId=job_id)
    result = run_cli(api, "cancel", job_id, "--queue", str(DIAG))
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "failed" and job["failedReason"] == "cancelled"
    again = run_cli(api, "cancel", job_id, "--queue", str(DIAG))
    assert again.returncode == 2 and "already failed" in again.stderr
    missing = run_cli(api, "cancel", "999999", "--queue", str(DIAG))
    assert missing.returncode == 4
