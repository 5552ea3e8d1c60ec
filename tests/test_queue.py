"""The queue layer against a real redis-server: shapes, counts, paging and admin operations."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from heavylift.queue import (
    BlockingQueues,
    JobNotFoundError,
    JobStateError,
    Priority,
    QueueUnavailableError,
)
from heavylift.settings import Settings
from local.launch import free_port, wait_for
from tests.jobs import DIAG, add


def test_new_job_has_the_seed_shape_and_counts_as_waiting(queues: BlockingQueues) -> None:
    job_id = add(queues, "noop", Priority.AI)
    view = queues.run(lambda q: q.view(DIAG, job_id)).model_dump()
    assert set(view) == {"id", "state", "progress", "result", "createdAt", "processedAt",
                         "finishedAt"}
    assert view["id"] == job_id and view["state"] == "waiting" and view["progress"] == 0
    assert view["result"] is None and view["processedAt"] is None
    counts = queues.run(lambda q: q.counts(DIAG)).model_dump()
    assert counts == {"waiting": 1, "active": 0, "completed": 0, "failed": 0, "delayed": 0}


def test_jobs_carry_the_product_defaults(queues: BlockingQueues, settings: Settings) -> None:
    job_id = add(queues, "noop", Priority.REPROCESSING)
    job = queues.run(lambda q: q.bull(DIAG).getJob(job_id))
    assert job.opts["attempts"] == 3
    assert job.opts["backoff"] == {"type": "exponential", "delay": settings.backoff_base_ms}
    assert job.priority == 3
    assert job.opts["removeOnComplete"] == {"count": settings.keep_completed}
    assert job.opts["removeOnFail"] == {"count": settings.keep_failed}


def test_same_job_id_is_added_once(queues: BlockingQueues) -> None:
    first = queues.run(lambda q: q.add(DIAG, "noop", {"n": 1}, Priority.REGULAR, job_id="x-1"))
    second = queues.run(lambda q: q.add(DIAG, "noop", {"n": 2}, Priority.REGULAR, job_id="x-1"))
    assert first == second == "x-1"
    assert queues.run(lambda q: q.counts(DIAG)).waiting == 1


def test_unknown_job_is_not_found(queues: BlockingQueues) -> None:
    with pytest.raises(JobNotFoundError):
        queues.run(lambda q: q.view(DIAG, "404"))


def test_paging_lists_newest_first(queues: BlockingQueues) -> None:
    ids = [add(queues, "noop", n=n) for n in range(5)]
    first = queues.run(lambda q: q.page(DIAG, "waiting", page=1, page_size=2))
    second = queues.run(lambda q: q.page(DIAG, "waiting", page=3, page_size=2))
    assert first.total == 5 and len(first.jobs) == 2
    assert len(second.jobs) == 1
    seen = [j.id for j in first.jobs] + [j.id for j in second.jobs]
    assert set(seen) <= set(ids)


def test_failed_job_retry_one_and_all_then_clean(settings: Settings, start_worker) -> None:
    queues = BlockingQueues(settings.model_copy(update={"job_attempts": 1}))
    failing = [add(queues, "fail", message="boom") for _ in range(3)]
    worker = start_worker()
    wait_for(lambda: queues.run(lambda q: q.counts(DIAG)).failed == 3, 15)
    view = queues.run(lambda q: q.view(DIAG, failing[0])).model_dump()
    assert view["state"] == "failed" and view["failedReason"] == "boom"
    assert view["attemptsMade"] == 1
    worker.stop()

    waiting = add(queues, "noop")
    with pytest.raises(JobStateError):
        queues.run(lambda q: q.retry(DIAG, waiting))
    retried = queues.run(lambda q: q.retry(DIAG, failing[0]))
    assert retried.state == "waiting"
    assert queues.run(lambda q: q.retry_all_failed(DIAG)) == 2
    counts = queues.run(lambda q: q.counts(DIAG))
    assert counts.failed == 0 and counts.waiting == 4

    worker = start_worker()
    wait_for(lambda: queues.run(lambda q: q.counts(DIAG)).failed == 3, 15)
    assert queues.run(lambda q: q.clean(DIAG, "failed", older_than_ms=60_000)) == 0
    assert queues.run(lambda q: q.clean(DIAG, "failed")) == 3
    assert queues.run(lambda q: q.counts(DIAG)).failed == 0
    queues.close()


def test_pause_stops_processing_until_resume(queues: BlockingQueues, start_worker) -> None:
    queues.run(lambda q: q.pause(DIAG))
    assert queues.run(lambda q: q.is_paused(DIAG))
    start_worker(DRAIN_DELAY_S="1")
    job_id = add(queues, "noop")
    assert queues.run(lambda q: q.view(DIAG, job_id)).state == "waiting"
    assert queues.run(lambda q: q.counts(DIAG)).waiting == 1
    queues.run(lambda q: q.resume(DIAG))
    wait_for(lambda: queues.run(lambda q: q.view(DIAG, job_id)).state == "completed", 10)


def test_facade_reuses_one_connection_across_threads(queues: BlockingQueues) -> None:
    def connections() -> int:
        return len(queues.run(lambda q: q.bull(DIAG).client.client_list()))

    before = connections()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: queues.run(lambda q: q.counts(DIAG)), range(64)))
    # the facade's one connection is reused; a connection per call would add dozens
    assert connections() == before


def test_redis_down_raises_unavailable_quickly(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = BlockingQueues(down, timeout_s=2)
    with pytest.raises(QueueUnavailableError):
        client.run(lambda q: q.counts(DIAG))
