"""Issue 13, connections cost no threads: slow clients and open event streams do not stop the
api (functions-framework's ASGI stack, over a real socket), and a stalled body gets 408."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests

from local.launch import RedisServer
from tests.api_server import API_KEY, Api, start_api
from tests.test_api_limits import raw_exchange, status_of

UPLOAD = "/api/documents/async-upload"


@pytest.fixture(scope="module")
def slow_api(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("slow-api")
    server = start_api({"REDIS_URL": redis_server.url, "BODY_IDLE_TIMEOUT_S": "1",
                        "STORAGE_URL": f"file://{workdir / 'objects'}"}, workdir)
    yield server
    server.stop()


@pytest.fixture
def api(slow_api: Api, redis_url: str) -> Api:
    return slow_api


def queued_job(api: Api) -> str:
    files = {"files": ("n.txt", b"hello\n", "text/plain")}
    answer = api.session.post(api.url(UPLOAD), files=files, timeout=10)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["jobs"][0]["jobId"])


def slow_header_client(stack: ExitStack, api: Api) -> None:
    """Connected, half a request line sent, never finishing."""
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", api.http.port), 10))
    sock.sendall(f"GET {UPLOAD} HTTP/1.1\r\nHost: t\r\nX-Slow: ".encode())


def slow_body_client(stack: ExitStack, api: Api) -> None:
    """Authorized, a 100 KB body announced, 10 bytes sent."""
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", api.http.port), 10))
    sock.sendall(f"POST /api/documents/upload-url HTTP/1.1\r\nHost: t\r\n"
                 f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
                 "Content-Length: 100000\r\n\r\n{\"filename".encode())


def open_stream(stack: ExitStack, api: Api, job_id: str) -> Iterator[bytes]:
    """An SSE stream that has delivered the job's state and stays open while the caller keeps
    the returned lines (a dropped line iterator closes the connection when it is collected)."""
    response = stack.enter_context(requests.get(
        api.url(f"/api/jobs/{job_id}/events"), stream=True, timeout=10,
        headers={"Authorization": f"Bearer {API_KEY}"}))
    assert response.status_code == 200
    lines = response.iter_lines()
    assert next(lines).startswith(b"id: ") and next(lines) == b"event: state"
    return lines


def test_normal_get_answers_while_slow_clients_and_streams_hold_connections(api: Api) -> None:
    job_id = queued_job(api)
    with ExitStack() as stack:
        for _ in range(30):
            slow_header_client(stack, api)
        # The gunicorn stack this replaced stopped answering with 8 of these, or 30 streams.
        streams = [open_stream(stack, api, job_id) for _ in range(60)]
        for _ in range(30):
            slow_body_client(stack, api)
        started = time.monotonic()
        status = api.session.get(api.url(UPLOAD), params={"jobId": job_id}, timeout=5)
        elapsed = time.monotonic() - started
        assert status.status_code == 200 and status.json()["id"] == job_id
        assert elapsed < 1.0, f"a normal GET took {elapsed:.2f}s under 120 held connections"
        assert _redis_clients(api) >= len(streams)  # every stream is still following


def test_stalled_body_gets_408_and_queues_nothing(api: Api) -> None:
    before = api.session.get(api.url(UPLOAD), timeout=10).json()
    head = (f"POST /api/documents/upload-url HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n")
    started = time.monotonic()
    answer = raw_exchange(api, head, b'{"filename": "x')  # then nothing: BODY_IDLE_TIMEOUT_S=1
    assert status_of(answer) == 408 and b'"code":"body_timeout"' in answer
    assert 0.9 < time.monotonic() - started < 5
    assert api.session.get(api.url(UPLOAD), timeout=10).json() == before


def test_chunked_body_is_read_whole(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"filename": "chunked.txt", '
        yield b'"size": 5, "contentType": "text/plain"}'

    answer = api.session.post(api.url("/api/documents/upload-url"), data=chunks(), timeout=10,
                              headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["url"]


def test_an_sse_stream_ends_when_its_client_goes(api: Api) -> None:
    """A closed stream gives its Redis connection back (no reader left blocking)."""
    job_id = queued_job(api)
    redis_clients = _redis_clients(api)
    with ExitStack() as stack:
        streams = [open_stream(stack, api, job_id) for _ in range(5)]
        assert _redis_clients(api) >= redis_clients + len(streams)
    deadline = time.monotonic() + 10
    while _redis_clients(api) > redis_clients and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _redis_clients(api) <= redis_clients


def _redis_clients(api: Api) -> int:
    import redis

    client = redis.Redis.from_url(api.env["REDIS_URL"])
    try:
        return len(client.client_list()) - 1  # not this one
    finally:
        client.close()

