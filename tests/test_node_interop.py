"""Our queues are BullMQ's own Redis format: Node's bullmq produces for our worker, and Node's
bull-board (local/bull-board) shows and operates our queues."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from heavylift.queue import BlockingQueues
from heavylift.settings import Settings
from local.launch import child_env, free_port, port_open, wait_for
from tests.jobs import DIAG, add, state

BOARD = Path(__file__).resolve().parent.parent / "local" / "bull-board"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`npm install` once per machine (package-lock.json pins every version)."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is missing: apt-get install -y nodejs npm"
    if not (BOARD / "node_modules" / "bullmq").is_dir():
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=BOARD, check=True,
                       capture_output=True, timeout=600)
    return BOARD / "node_modules"


def test_job_added_by_node_bullmq_is_processed_by_our_worker(
    node_modules: Path, redis_url: str, queues: BlockingQueues, start_worker
) -> None:
    start_worker()
    produced = subprocess.run(
        ["node", "produce.js", str(DIAG), "sleep", json.dumps({"seconds": 0.3})],
        cwd=BOARD, env=child_env(REDIS_URL=redis_url), capture_output=True, text=True,
        timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    answer = json.loads(produced.stdout)
    assert answer["result"] == {"slept": 0.3}
    view = queues.run(lambda q: q.view(DIAG, answer["id"]))
    assert view.state == "completed" and view.result == {"slept": 0.3}


@pytest.fixture
def board(node_modules: Path, redis_url: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(["node", "server.js"], cwd=BOARD,
                               env=child_env(REDIS_URL=redis_url, PORT=str(port)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: port_open(port), 30)
    yield f"http://127.0.0.1:{port}/admin/queues"
    process.terminate()
    process.wait(10)


def test_bull_board_shows_and_retries_our_failed_jobs(
    board: str, settings: Settings, start_worker
) -> None:
    once = BlockingQueues(settings.model_copy(update={"job_attempts": 1}))
    failed = [add(once, "fail", message="node sees me") for _ in range(2)]
    worker = start_worker()
    for job_id in failed:
        worker.wait_event("failed", jobId=job_id)
    listing = requests.get(f"{board}/api/queues", params={"activeQueue": "diagnostics",
                                                          "status": "failed"}, timeout=10).json()
    diagnostics = next(q for q in listing["queues"] if q["name"] == "diagnostics")
    assert diagnostics["counts"]["failed"] == 2
    assert {job["failedReason"] for job in diagnostics["jobs"]} == {"node sees me"}

    retried = requests.put(f"{board}/api/queues/diagnostics/retry/failed", timeout=10)
    assert retried.status_code in (200, 204)
    for job_id in failed:  # back in our worker's hands: it fails again, attempts counted
        wait_for(lambda j=job_id: state(once, j) == "failed"
                 and once.run(lambda q: q.view(DIAG, j)).attemptsMade == 2, 15)
    once.close()
