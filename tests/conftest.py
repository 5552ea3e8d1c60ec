from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from heavylift.queue import BlockingQueues
from heavylift.settings import Settings, load_settings
from local.launch import RedisServer, WorkerProcess
from tests.storage_servers import (  # noqa: F401 - session fixtures for every test module
    fake_gcs_server,
    gcs_bucket,
    gcs_service_account,
    moto_server,
    s3_bucket,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean Redis for each test."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def settings(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings pointing at the test Redis and a temp storage dir, as the environment says."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("STORAGE_URL", f"file://{tmp_path / 'storage'}")
    monkeypatch.setenv("BACKOFF_BASE_MS", "300")
    load_settings.cache_clear()
    yield load_settings()
    load_settings.cache_clear()


@pytest.fixture
def queues(settings: Settings) -> Iterator[BlockingQueues]:
    """The synchronous facade the HTTP functions use, on the test Redis."""
    client = BlockingQueues(settings)
    yield client
    client.close()


@pytest.fixture
def start_worker(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes (env overrides as keyword args); all stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(redis_url, **env)
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()
