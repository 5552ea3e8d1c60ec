"""README command 1's launcher: the local stack comes up, a document and a queued dataset sync go
through the real HTTP API and the worker, and everything is stopped again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from tests.servers import child_env

ROOT = Path(__file__).resolve().parent.parent


def test_demo_pushes_the_sample_through_the_stack(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.process_iter()}
    result = subprocess.run(
        [sys.executable, "local/stack.py", "demo"], cwd=ROOT, capture_output=True, text=True,
        env=child_env(STORAGE_URL=f"file://{tmp_path}"), timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"message": "1 documents queued for processing"' in result.stdout
    assert '"status": "COMPLETED"' in result.stdout
    assert "stopped worker" in result.stderr and "stopped redis" in result.stderr
    manifests = list(tmp_path.glob("documents/*/manifest.json"))
    assert len(manifests) == 1
    assert json.loads(manifests[0].read_text())["status"] == "COMPLETED"
    (synced,) = tmp_path.glob("datasets/*/manifest.json")  # the demo's queued dataset sync
    dataset = json.loads(synced.read_text())
    assert dataset["status"] == "COMPLETED"
    assert dataset["totalRows"] == sum(part["rows"] for part in dataset["parts"]) >= 10_000
    assert not [p for p in psutil.process_iter() if p.pid not in before and mine(p, tmp_path)]


def mine(process: psutil.Process, storage: Path) -> bool:
    """A process the demo started (other tests may run workers at the same time)."""
    try:
        return process.environ().get("STORAGE_URL") == f"file://{storage}"
    except psutil.Error:
        return False


def test_worker_dev_mode_starts_and_stops(redis_url: str) -> None:
    from tests.worker_proc import WorkerProcess

    worker = WorkerProcess(redis_url, ARGS="--reload").wait_ready()
    worker.stop()
    assert worker.process.returncode is not None
