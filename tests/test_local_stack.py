"""README command 1's launcher: the local stack comes up, a document and a queued dataset sync go
through the real HTTP API and the worker, and everything is stopped again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from local.launch import child_env, wait_for

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


def children_of_stack(storage: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if mine(p, storage)]


def start_stack(storage: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python local/stack.py up` with two workers (no emulator: quicker), until the api answers."""
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "local/stack.py", "up", "--no-bigquery", "--workers", "2"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env=child_env(STORAGE_URL=f"file://{storage}", AUTH_DISABLED="true"))
    # redis, the api and two workers, each started and ready
    wait_for(lambda: log.read_text().count("started ") == 4 or launcher.poll() is not None, 90)
    assert launcher.poll() is None, log.read_text()[-3000:]
    assert len(children_of_stack(storage)) >= 3  # api and workers carry STORAGE_URL
    return launcher


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_the_launcher_takes_every_child_with_it(tmp_path: Path, sig: signal.Signals) -> None:
    launcher = start_stack(tmp_path / "objects", tmp_path / "stack.log")
    redis = [p for p in psutil.Process(launcher.pid).children() if p.name() == "redis-server"]
    assert len(redis) == 1

    launcher.send_signal(sig)
    launcher.wait(30)

    # SIGTERM/SIGINT: stopped in order; SIGKILL: each child's PDEATHSIG stops it.
    wait_for(lambda: not children_of_stack(tmp_path / "objects") and not redis[0].is_running(),
             30)
    if sig != signal.SIGKILL:
        assert "stopped worker-2" in (tmp_path / "stack.log").read_text()


def test_worker_dev_mode_starts_and_stops(redis_url: str) -> None:
    from local.launch import WorkerProcess

    worker = WorkerProcess(redis_url, ARGS="--reload").wait_ready()
    worker.stop()
    assert worker.process.returncode is not None
