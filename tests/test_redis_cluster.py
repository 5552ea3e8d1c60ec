"""Issue 15, Redis Cluster: the api function and a real worker on a local 3-node `redis-server`
cluster (REDIS_CLUSTER=true, QUEUE_PREFIX={heavylift}): uploads, status, SSE, the dashboard's
JSON routes, records of removed jobs, duplicate detection; and the hash-tag rule."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from heavylift.queue import BlockingQueues, Priority, QueueName
from heavylift.settings import Settings, SettingsError, load_settings
from local.launch import RedisCluster, WorkerProcess, child_env, wait_for
from tests.api_server import Api, start_api
from tests.sse_client import messages, open_stream, read_until

DIAG = QueueName.DIAGNOSTICS
DOCS = QueueName.DOCUMENTS


@dataclass
class ClusterStack:
    cluster: RedisCluster
    api: Api
    worker: WorkerProcess
    queues: BlockingQueues

    def get(self, path: str, **params: str) -> Any:
        response = self.api.session.get(self.api.url(path), params=params, timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def post(self, path: str) -> Any:
        response = self.api.session.post(self.api.url(path), timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def upload(self, name: str, text: str) -> dict[str, Any]:
        response = self.api.session.post(
            self.api.url("/api/documents/async-upload"),
            files=[("files", (name, text.encode()))], timeout=30)
        assert response.status_code == 202, response.text
        entry: dict[str, Any] = response.json()["jobs"][0]
        return entry

    def wait_finished(self, status_url: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.get(status_url)
            if job["state"] in ("completed", "failed"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"{status_url} did not finish: {job}")

    def add(self, name: str, **data: object) -> str:
        return self.queues.run(lambda q: q.add(DIAG, name, dict(data), Priority.REGULAR))

    def wait_state(self, job_id: str, state: str) -> None:
        wait_for(lambda: self.queues.run(lambda q: q.view(DIAG, job_id)).state == state,
                 20, interval=0.1)

    def keys_by_node(self) -> dict[int, list[str]]:
        """Every key in the cluster, by the port of the node that holds it."""
        found = {}
        for node in self.cluster.nodes:
            client = redis.Redis(port=node.port, decode_responses=True)
            found[node.port] = list(client.scan_iter(count=1000))
            client.close()
        return found


@pytest.fixture(scope="module", name="stack")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    workdir = tmp_path_factory.mktemp("cluster")
    cluster = RedisCluster(workdir / "redis").start()
    storage = f"file://{workdir / 'objects'}"
    # KEEP_COMPLETED=1: BullMQ soon forgets a completed job, so its record must answer.
    env = {**cluster.env, "STORAGE_URL": storage, "SSE_HEARTBEAT_S": "1",
           "BACKOFF_BASE_MS": "200", "KEEP_COMPLETED": "1"}
    api = start_api(env, workdir)
    worker = WorkerProcess(cluster.url, **{k: v for k, v in env.items() if k != "REDIS_URL"})
    queues = BlockingQueues(Settings(redis_url=cluster.url, redis_cluster=True,
                                     queue_prefix=cluster.prefix, backoff_base_ms=200,
                                     keep_completed=1))
    try:
        worker.wait_ready()
        yield ClusterStack(cluster, api, worker, queues)
    finally:
        queues.close()
        worker.stop()
        api.stop()
        cluster.stop()


def test_upload_to_completed_with_every_key_in_one_slot(stack: ClusterStack) -> None:
    entry = stack.upload("cluster.md", "# Cluster\n\nheavy work on three nodes.\n" * 20)
    job = stack.wait_finished(entry["statusUrl"])
    assert job["state"] == "completed", job
    assert job["result"]["documentId"] == entry["documentId"] and job["result"]["chunks"] >= 1
    assert stack.get(f"/api/documents/{entry['documentId']}")["status"] == "COMPLETED"
    # Every key (BullMQ's and ours) carries the hash tag, so all live on one node of three.
    by_node = stack.keys_by_node()
    keys = [key for node_keys in by_node.values() for key in node_keys]
    assert keys and all(key.startswith("{heavylift}:") for key in keys), keys
    assert sum(1 for node_keys in by_node.values() if node_keys) == 1, by_node
    assert any(":heavylift:record:documents:" in key for key in keys)
    # The worker's /metrics reads the queue depth from the cluster.
    assert stack.worker.metric("heavylift_queue_depth", queue="documents",
                               state="completed") >= 1


def test_record_answers_after_bullmq_removed_the_job(stack: ClusterStack) -> None:
    first = stack.upload("first.md", "# First\n\nremoved from BullMQ, kept as a record.\n" * 5)
    assert stack.wait_finished(first["statusUrl"])["state"] == "completed"
    second = stack.upload("second.md", "# Second\n\npushes the first out of history.\n" * 5)
    assert stack.wait_finished(second["statusUrl"])["state"] == "completed"
    assert stack.queues.run(lambda q: q.bull(DOCS).getJob(first["jobId"])) is None
    view = stack.get("/api/documents/async-upload", jobId=first["jobId"])
    assert view["id"] == first["jobId"] and view["state"] == "completed"
    assert view["result"]["documentId"] == first["documentId"]


def test_duplicate_upload_returns_the_first_job(stack: ClusterStack) -> None:
    text = "# Twice\n\nthe same bytes and flags are one job.\n" * 5
    first = stack.upload("twice.md", text)
    again = stack.upload("twice.md", text)
    assert again["jobId"] == first["jobId"] and again["duplicate"] is True
    keyed = [stack.api.session.post(
        stack.api.url("/api/documents/async-upload"), headers={"Idempotency-Key": "k-1"},
        files=[("files", (f"keyed-{n}.md", f"# Keyed {n}\n\ntext.\n".encode()))], timeout=30)
        for n in range(2)]
    assert [r.status_code for r in keyed] == [202, 202]
    jobs = [r.json()["jobs"][0] for r in keyed]
    assert jobs[1]["jobId"] == jobs[0]["jobId"] and jobs[1]["duplicate"] is True


def test_job_stream_delivers_progress_and_completed(stack: ClusterStack) -> None:
    job_id = stack.add("sleep", seconds=1.0)
    url = stack.api.url(f"/api/jobs/{job_id}/events?queue=diagnostics")
    with open_stream(stack.api.session, url) as response:
        assert response.status_code == 200
        stream = messages(response)
        assert next(stream).event == "state"
        seen = read_until(stream, "completed", "failed")
    assert seen[-1].event == "completed" and seen[-1].data["result"] == {"slept": 1.0}
    progress = [m.data["progress"] for m in seen if m.event == "progress"]
    assert len(set(progress)) >= 2 and progress == sorted(progress)


def test_dashboard_stream_reads_every_queue_at_once(stack: ClusterStack) -> None:
    # One XREAD over the three queues' event streams: only possible in one slot.
    with open_stream(stack.api.session, stack.api.url("/api/queues/events")) as response:
        stream = messages(response)
        first = next(stream)
        assert first.event == "counts"
        # Long enough that a loaded api reads its progress before the end: each read sends
        # only the latest progress of a job (queue_live coalesces a burst).
        job_id = stack.add("sleep", seconds=3)
        seen = read_until(stream, "progress", timeout=15)
    progress = seen[-1].data
    assert progress["queue"] == "diagnostics" and progress["id"] == job_id, progress
    assert 0 < progress["progress"] < 100


def test_dashboard_json_routes(stack: ClusterStack) -> None:
    before = {q["name"]: q for q in stack.get("/api/queues")["queues"]}
    assert set(before) == {"documents", "datasets", "diagnostics"}
    assert before["documents"]["counts"]["completed"] >= 1
    failed = stack.add("flaky", failures=3)
    stack.wait_state(failed, "failed")
    page = stack.get("/api/queues/diagnostics/jobs", state="failed")
    assert failed in [job["id"] for job in page["jobs"]] and page["total"] >= 1
    assert stack.get("/api/queues")["queues"][2]["counts"]["failed"] >= 1
    retried = stack.post(f"/api/queues/diagnostics/jobs/{failed}/retry")
    assert retried["job"]["state"] in {"waiting", "active", "completed"}
    stack.wait_state(failed, "completed")
    assert stack.post("/api/queues/diagnostics/pause")["paused"] is True
    assert {q["name"]: q["paused"] for q in stack.get("/api/queues")["queues"]}["diagnostics"]
    held = stack.add("noop")
    time.sleep(1.0)
    assert stack.get(f"/api/queues/diagnostics/jobs/{held}")["state"] == "waiting"
    assert stack.post("/api/queues/diagnostics/resume")["paused"] is False
    stack.wait_state(held, "completed")


def test_prefix_without_hash_tag_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    monkeypatch.setenv("QUEUE_PREFIX", "bull")
    load_settings.cache_clear()
    with pytest.raises(SettingsError, match=r"QUEUE_PREFIX: 'bull' has no hash tag.*\{heavylift\}"):
        load_settings()
    load_settings.cache_clear()
    # "{}" is no hash tag to Redis (empty), so it is refused too; text around a tag is fine.
    for prefix in ("{}bull", "bull}{"):
        with pytest.raises(ValueError, match="no hash tag"):
            Settings(redis_cluster=True, queue_prefix=prefix)
    assert Settings(redis_cluster=True, queue_prefix="hl{q}").queue_prefix == "hl{q}"
    assert Settings(redis_cluster=False, queue_prefix="bull").queue_prefix == "bull"  # no rule


def test_worker_refuses_to_start_without_hash_tag(stack: ClusterStack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker_service"], capture_output=True, text=True, timeout=60,
        env=child_env(REDIS_URL=stack.cluster.url, REDIS_CLUSTER="true", QUEUE_PREFIX="bull"))
    assert result.returncode != 0
    assert "QUEUE_PREFIX" in result.stderr + result.stdout and "hash tag" in result.stderr + (
        result.stdout)


def test_cancel_reaches_the_worker_and_fails_a_waiting_job(stack: ClusterStack) -> None:
    """Cancel on a cluster: the mark and the pub/sub message reach the worker holding a running
    job; a waiting one is failed by the api's own script (its keys share the slot)."""
    running = stack.add("sleep", seconds=60)
    stack.wait_state(running, "active")
    stack.post("/api/queues/diagnostics/pause")
    waiting = stack.add("sleep", seconds=60)
    try:
        for job_id in (running, waiting):
            answer = stack.post(f"/api/queues/diagnostics/jobs/{job_id}/cancel")
            assert answer["job"]["state"] == "failed", answer
            assert answer["job"]["failedReason"] == "cancelled"
    finally:
        stack.post("/api/queues/diagnostics/resume")
    assert stack.queues.run(lambda q: q.view(DIAG, waiting)).attemptsMade == 0
