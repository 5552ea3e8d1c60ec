"""The worker runtime as users run it: real `python -m worker_service` processes, real Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import requests

from heavylift.queue import BlockingQueues, Priority
from heavylift.settings import Settings
from local.launch import RedisServer, child_env, free_port
from tests.jobs import DIAG, add, state

FAST_LOCKS = {"LOCK_DURATION_MS": "1000", "STALLED_INTERVAL_MS": "500"}




def test_priority_order_is_honoured(queues: BlockingQueues, start_worker) -> None:
    reprocess = add(queues, "noop", Priority.REPROCESSING)
    regular = add(queues, "noop", Priority.REGULAR)
    ai = add(queues, "noop", Priority.AI)
    worker = start_worker(JOB_CONCURRENCY="1")
    for job_id in (reprocess, regular, ai):
        worker.wait_event("completed", jobId=job_id)
    order = [e["jobId"] for e in worker.find("started")]
    assert order == [ai, regular, reprocess]


def test_failing_job_is_tried_three_times_with_exponential_gaps(
    queues: BlockingQueues, start_worker
) -> None:
    job_id = add(queues, "fail", message="always")
    worker = start_worker()
    worker.wait_event("failed", jobId=job_id, attempt=3)
    starts = [e["_t"] for e in worker.find("started", jobId=job_id)]
    assert len(starts) == 3
    first_gap, second_gap = starts[1] - starts[0], starts[2] - starts[1]
    # BACKOFF_BASE_MS=300: 300 ms then 600 ms (plus scheduling slack)
    assert 0.29 <= first_gap < 1.0, first_gap
    assert 0.59 <= second_gap < 1.5, second_gap
    # Doubling, as scheduled (the gaps' ratio is at the mercy of a loaded machine's slack).
    assert [e["delayMs"] for e in worker.find("retrying", jobId=job_id)] == [300, 600]
    view = queues.run(lambda q: q.view(DIAG, job_id)).model_dump()
    assert view["state"] == "failed" and view["attemptsMade"] == 3
    assert view["failedReason"] == "always"
    assert [e["willRetry"] for e in worker.find("failed", jobId=job_id)] == [True, True, False]


def test_progress_set_in_the_worker_is_read_from_another_process(
    queues: BlockingQueues, start_worker
) -> None:
    start_worker()
    job_id = add(queues, "sleep", seconds=2)
    seen: list[float] = []
    deadline = time.monotonic() + 15
    while state(queues, job_id) != "completed" and time.monotonic() < deadline:
        seen.append(queues.run(lambda q: q.view(DIAG, job_id)).progress)  # type: ignore[arg-type]
        time.sleep(0.1)
    final = queues.run(lambda q: q.view(DIAG, job_id))
    assert final.state == "completed" and final.progress == 100
    assert final.result == {"slept": 2.0}
    middle = [p for p in seen if 0 < p < 100]
    assert len(set(middle)) >= 3, seen
    assert seen == sorted(seen), "progress went backwards"


def test_cpu_job_three_times_the_lock_duration_runs_once(
    queues: BlockingQueues, start_worker
) -> None:
    worker = start_worker(**FAST_LOCKS)
    job_id = add(queues, "cpu", seconds=3)
    worker.wait_event("completed", jobId=job_id, timeout=20)
    time.sleep(1.5)  # a stalled re-run would start within a stalled interval or two
    assert len(worker.find("started", jobId=job_id)) == 1
    assert not worker.find("stalled")
    assert queues.run(lambda q: q.view(DIAG, job_id)).result["attempt"] == 1  # type: ignore[index]


def test_sigkill_mid_job_another_worker_completes_it_once(
    queues: BlockingQueues, start_worker
) -> None:
    doomed = start_worker(**FAST_LOCKS)
    job_id = add(queues, "cpu", seconds=2)
    doomed.wait_event("started", jobId=job_id)
    doomed.process.kill()
    doomed.wait_exit()
    rescuer = start_worker(**FAST_LOCKS)
    rescuer.wait_event("completed", jobId=job_id, timeout=20)
    view = queues.run(lambda q: q.view(DIAG, job_id))
    assert view.state == "completed"
    completions = doomed.find("completed", jobId=job_id) + rescuer.find("completed", jobId=job_id)
    assert len(completions) == 1
    time.sleep(1.5)
    assert len(rescuer.find("started", jobId=job_id)) == 1


def test_sigterm_lets_a_short_job_finish(queues: BlockingQueues, start_worker) -> None:
    worker = start_worker(SHUTDOWN_GRACE_S="10")
    job_id = add(queues, "sleep", seconds=1.5)
    worker.wait_event("started", jobId=job_id)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert state(queues, job_id) == "completed"
    assert worker.find("completed", jobId=job_id)


def test_sigterm_hands_back_a_long_job_without_using_an_attempt(
    queues: BlockingQueues, start_worker
) -> None:
    worker = start_worker(SHUTDOWN_GRACE_S="0.5")
    job_id = add(queues, "cpu", seconds=4)
    worker.wait_event("started", jobId=job_id)
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert time.monotonic() - sent < 4, "shutdown waited for the job instead of handing it back"
    assert worker.find("handed_back", jobId=job_id)
    assert state(queues, job_id) in {"waiting", "delayed"}
    second = start_worker()
    second.wait_event("completed", jobId=job_id, timeout=20)
    view = queues.run(lambda q: q.view(DIAG, job_id))
    assert view.state == "completed"
    assert view.result["attempt"] == 1  # type: ignore[index]


def test_worker_survives_a_redis_restart(
    queues: BlockingQueues, redis_server: RedisServer, start_worker
) -> None:
    worker = start_worker(DRAIN_DELAY_S="1")
    before = add(queues, "noop")
    worker.wait_event("completed", jobId=before)
    redis_server.stop()
    worker.wait_event("redis_down", timeout=10)
    time.sleep(2)
    redis_server.start()
    worker.wait_event("redis_up", timeout=15)
    after = [add(queues, "noop", n=n) for n in range(5)]
    for job_id in after:
        worker.wait_event("completed", jobId=job_id, timeout=40)
    assert worker.process.poll() is None


def test_worker_exits_non_zero_when_redis_stays_down() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "worker_service"],
        env=child_env(REDIS_URL="redis://127.0.0.1:9/0", REDIS_MAX_OUTAGE_S="2",
                      PORT=str(free_port())),
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 3
    assert time.monotonic() - started < 15
    assert "redis unreachable, retrying" in result.stdout
    assert "redis unreachable at start-up" in result.stdout


def test_healthz_answers_for_cloud_run(start_worker) -> None:
    worker = start_worker()
    body = requests.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=5).json()
    assert body["status"] == "ok" and body["redis"] == "ok"
    assert "diagnostics" in body["queues"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"JOB_CONCURRENCY": "zero"}, "invalid setting JOB_CONCURRENCY: "),
        ({"REDIS_URL": "http://x"}, "invalid setting REDIS_URL: must start with redis://"),
        ({"REDIS_PORT": "70000"}, "invalid setting REDIS_PORT: "),
    ],
)
def test_bad_setting_stops_start_up_with_one_line(env: dict[str, str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker_service"], env=child_env(**env),
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_metrics_count_jobs_and_backlog(queues: BlockingQueues, start_worker) -> None:
    worker = start_worker()
    done = [add(queues, "noop") for _ in range(3)]
    failing = add(queues, "fail")
    for job_id in done:
        worker.wait_event("completed", jobId=job_id)
    worker.wait_event("failed", jobId=failing, attempt=3)
    queues.run(lambda q: q.pause(DIAG))
    for _ in range(4):
        add(queues, "noop", Priority.AI)
    assert worker.metric("heavylift_jobs_completed_total", queue="diagnostics") == 3
    assert worker.metric("heavylift_jobs_retried_total", queue="diagnostics") == 2
    assert worker.metric("heavylift_jobs_failed_total", queue="diagnostics", final="true") == 1
    assert worker.metric("heavylift_job_duration_seconds_count", queue="diagnostics") == 6
    # prioritized jobs in a paused queue: a wait-list-only scaler would see 0 here
    assert worker.metric("heavylift_queue_backlog", queue="diagnostics") == 4
    assert worker.metric("heavylift_queue_depth", queue="diagnostics", state="failed") == 1
    assert worker.metric("heavylift_queue_depth", queue="diagnostics", state="prioritized") == 4
    assert worker.metric("heavylift_active_jobs", queue="diagnostics") == 0


def test_cpu_time_limit_ends_only_the_job_that_overran(
    settings: Settings, start_worker
) -> None:
    once = BlockingQueues(settings.model_copy(update={"job_attempts": 1}))
    worker = start_worker(JOB_CONCURRENCY="2", CPU_WORKERS="2")
    neighbour = add(once, "cpu", seconds=3)
    overrun = add(once, "cpu", seconds=30, limitSeconds=1)
    failed = worker.wait_event("failed", jobId=overrun, timeout=15)
    assert "overran its time limit" in failed["reason"]
    worker.wait_event("completed", jobId=neighbour, timeout=20)
    assert once.run(lambda q: q.view(DIAG, neighbour)).result["attempt"] == 1  # type: ignore[index]
    once.close()
