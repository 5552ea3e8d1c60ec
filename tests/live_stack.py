"""The api function and a real worker on one Redis (file:// storage, auth on), started once per
test module for the live-progress and page tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from heavylift.queue import BlockingQueues, QueueName
from heavylift.settings import Settings
from local.launch import RedisServer, WorkerProcess, wait_for
from tests.api_server import Api, start_api


@dataclass
class Stack:
    api: Api
    worker: WorkerProcess
    queues: BlockingQueues
    redis: RedisServer

    def wait_state(self, queue: QueueName, job_id: str, state: str, timeout: float = 20) -> None:
        wait_for(lambda: self.queues.run(lambda q: q.view(queue, job_id)).state == state,
                 timeout, interval=0.1)


# Named apart from its fixture name so importing it into a test module shadows nothing.
@pytest.fixture(scope="module", name="stack")
def stack_fixture(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("live")
    redis_server.flush()
    env = {"REDIS_URL": redis_server.url, "STORAGE_URL": f"file://{workdir / 'objects'}",
           "SSE_HEARTBEAT_S": "1", "SSE_COUNTS_INTERVAL_S": "0.2", "BACKOFF_BASE_MS": "200"}
    api = start_api(env, workdir)
    worker = WorkerProcess(redis_server.url, STORAGE_URL=env["STORAGE_URL"],
                           BACKOFF_BASE_MS="200").wait_ready()
    queues = BlockingQueues(Settings(redis_url=redis_server.url, backoff_base_ms=200))
    yield Stack(api, worker, queues, redis_server)
    queues.close()
    worker.stop()
    api.stop()
