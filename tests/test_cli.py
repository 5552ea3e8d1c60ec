"""The `heavylift` CLI as a user runs it: a subprocess against the real api function and worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from heavylift.queue import BlockingQueues, QueueName
from heavylift.settings import Settings
from local.launch import RedisServer
from tests.api_server import Api, run_cli, start_api
from tests.jobs import add

SAMPLE = Path(__file__).resolve().parent.parent / "local" / "samples" / "large-document.pdf"


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("cli")
    api = start_api({"REDIS_URL": redis_server.url,
                     "STORAGE_URL": f"file://{workdir / 'objects'}"}, workdir)
    yield api
    api.stop()


@pytest.fixture
def cli(stack: Api, redis_url: str, start_worker) -> Api:
    start_worker(STORAGE_URL=stack.env["STORAGE_URL"])
    return stack


def test_submit_wait_status_watch(cli: Api, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\n- queues are fast\n- workers are many\n" * 20)
    result = run_cli(cli, "submit", str(SAMPLE), str(notes), "--embeddings", "--wait",
                 "--signed-above", "4096")
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [j["filename"] for j in jobs] == ["large-document.pdf", "notes.md"]
    assert all(j["view"]["state"] == "completed" for j in jobs)
    assert jobs[0]["view"]["result"]["status"] == "COMPLETED"
    assert "large-document.pdf" in result.stderr  # the progress bars

    status = run_cli(cli, "status", jobs[1]["jobId"])
    assert status.returncode == 0
    assert json.loads(status.stdout)["state"] == "completed"
    watched = run_cli(cli, "watch", jobs[0]["jobId"])
    assert watched.returncode == 0 and json.loads(watched.stdout)["progress"] == 100


def test_failed_job_exit_code_and_one_line_errors(cli: Api, tmp_path: Path) -> None:
    queues = BlockingQueues(Settings(redis_url=cli.env["REDIS_URL"], job_attempts=1))
    job_id = add(queues, "fail", message="broken on purpose")
    queues.close()
    watched = run_cli(cli, "watch", job_id, "--queue", str(QueueName.DIAGNOSTICS),
                      "--timeout", "30")
    assert watched.returncode == 1
    assert json.loads(watched.stdout)["failedReason"] == "broken on purpose"

    missing = run_cli(cli, "status", "999999")
    assert missing.returncode == 4
    assert missing.stderr.strip().count("\n") == 0 and "404" in missing.stderr
    denied = run_cli(cli, "status", "1", key="wrong")
    assert denied.returncode == 5 and "API key" in denied.stderr
    down = run_cli(None, "stats")
    assert down.returncode == 3 and "cannot reach" in down.stderr
    bad = run_cli(cli, "clean", "--state", "failed", "--older-than", "tomorrow")
    assert bad.returncode == 2 and "bad duration" in bad.stderr
    absent = run_cli(cli, "submit", str(tmp_path / "nope.pdf"))
    assert absent.returncode == 2


def test_stats_jobs_retry_and_clean(cli: Api) -> None:
    once = BlockingQueues(Settings(redis_url=cli.env["REDIS_URL"], job_attempts=1))
    failed = [add(once, "fail", message=f"boom {n}") for n in range(3)]
    diag = str(QueueName.DIAGNOSTICS)
    for job_id in failed:
        run_cli(cli, "watch", job_id, "--queue", diag, "--timeout", "30")

    stats = run_cli(cli, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    counts = {q["name"]: q["counts"] for q in json.loads(stats.stdout)["queues"]}
    assert counts[diag]["failed"] == 3
    table = run_cli(cli, "stats")
    assert "diagnostics" in table.stdout and "failed" in table.stdout

    listed = json.loads(run_cli(cli, "jobs", "--queue", diag, "--state", "failed").stdout)
    assert listed["total"] == 3 and {j["failedReason"] for j in listed["jobs"]} == {
        "boom 0", "boom 1", "boom 2"}

    one = run_cli(cli, "retry", failed[0], "--queue", diag)
    assert one.returncode == 0 and json.loads(one.stdout)["success"] is True
    run_cli(cli, "watch", failed[0], "--queue", diag, "--timeout", "30")
    both = run_cli(cli, "retry", "--all-failed", "--queue", diag)
    assert both.returncode == 0 and json.loads(both.stdout)["retried"] >= 2
    neither = run_cli(cli, "retry", "--queue", diag)
    assert neither.returncode == 2 and "JOB id or --all-failed" in neither.stderr
    for job_id in failed:
        run_cli(cli, "watch", job_id, "--queue", diag, "--timeout", "30")

    kept = run_cli(cli, "clean", "--queue", diag, "--state", "failed", "--older-than", "1d")
    assert json.loads(kept.stdout)["removed"] == 0
    cleaned = run_cli(cli, "clean", "--queue", diag, "--state", "failed")
    assert json.loads(cleaned.stdout)["removed"] == 3
    assert once.run(lambda q: q.counts(QueueName.DIAGNOSTICS)).failed == 0
    once.close()
