"""The `heavylift` CLI as a user runs it: a subprocess against the real api function and worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from heavylift.queue import QueueName, SyncQueues
from heavylift.settings import Settings
from tests.api_server import API_KEY, Api, start_api
from tests.jobs import add
from tests.servers import RedisServer, child_env, free_port

SAMPLE = Path(__file__).resolve().parent.parent / "local" / "samples" / "large-document.pdf"


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("cli")
    api = start_api({"REDIS_URL": redis_server.url,
                     "STORAGE_URL": f"file://{workdir / 'objects'}"}, workdir)
    yield api
    api.http.stop()
    api.events.stop()


@pytest.fixture
def cli(stack: Api, redis_url: str, start_worker) -> Api:
    start_worker(STORAGE_URL=stack.env["STORAGE_URL"])
    return stack


def run(api: Api | None, *args: str, key: str | None = API_KEY) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("heavylift", path=str(Path(sys.executable).parent))
    assert binary is not None
    env = {"HEAVYLIFT_URL": api.http.url if api else f"http://127.0.0.1:{free_port()}",
           "COLUMNS": "200"}
    if key:
        env["HEAVYLIFT_API_KEY"] = key
    return subprocess.run([binary, *args], env=child_env(**env), capture_output=True, text=True,
                          timeout=180)


def test_submit_wait_status_watch(cli: Api, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\n- queues are fast\n- workers are many\n" * 20)
    result = run(cli, "submit", str(SAMPLE), str(notes), "--embeddings", "--wait",
                 "--signed-above", "4096")
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [j["filename"] for j in jobs] == ["large-document.pdf", "notes.md"]
    assert all(j["view"]["state"] == "completed" for j in jobs)
    assert jobs[0]["view"]["result"]["status"] == "COMPLETED"
    assert "large-document.pdf" in result.stderr  # the progress bars

    status = run(cli, "status", jobs[1]["jobId"])
    assert status.returncode == 0
    assert json.loads(status.stdout)["state"] == "completed"
    watched = run(cli, "watch", jobs[0]["jobId"])
    assert watched.returncode == 0 and json.loads(watched.stdout)["progress"] == 100


def test_failed_job_exit_code_and_one_line_errors(cli: Api, tmp_path: Path) -> None:
    queues = SyncQueues(Settings(redis_url=cli.env["REDIS_URL"], job_attempts=1))
    job_id = add(queues, "fail", message="broken on purpose")
    queues.close()
    watched = run(cli, "watch", job_id, "--queue", str(QueueName.DIAGNOSTICS), "--timeout", "30")
    assert watched.returncode == 1
    assert json.loads(watched.stdout)["failedReason"] == "broken on purpose"

    missing = run(cli, "status", "999999")
    assert missing.returncode == 4
    assert missing.stderr.strip().count("\n") == 0 and "404" in missing.stderr
    denied = run(cli, "status", "1", key="wrong")
    assert denied.returncode == 5 and "API key" in denied.stderr
    down = run(None, "stats")
    assert down.returncode == 3 and "cannot reach" in down.stderr
    bad = run(cli, "clean", "--state", "failed", "--older-than", "tomorrow")
    assert bad.returncode == 2 and "bad duration" in bad.stderr
    absent = run(cli, "submit", str(tmp_path / "nope.pdf"))
    assert absent.returncode == 2
