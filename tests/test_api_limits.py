"""Issue 13, input limits: what an outside attacker test found, each over a real socket
(functions-framework under gunicorn) unless the in-process app is the point."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from starlette.testclient import TestClient

from heavylift.api.services import reset_services
from heavylift.settings import Settings, load_settings
from local.launch import RedisServer
from tests.api_server import Api, csp_directives, start_api

UPLOAD = "/api/documents/async-upload"
UPLOAD_URL = "/api/documents/upload-url"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def limits_api(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("api-limits")
    server = start_api({"REDIS_URL": redis_server.url,
                        "STORAGE_URL": f"file://{workdir / 'objects'}"}, workdir)
    yield server
    server.stop()


@pytest.fixture
def api(limits_api: Api, redis_url: str) -> Api:
    return limits_api


def raw_exchange(api: Api, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send `head` (+ `body`) over a plain socket; what the server answers until it closes or
    stops sending (a streamed answer on a kept-alive connection does not close)."""
    with socket.create_connection(("127.0.0.1", api.http.port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        try:
            while b"\r\n0\r\n\r\n" not in answer and not answer.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_long_url_is_414_before_routing(api: Api) -> None:
    under = api.session.get(api.url(UPLOAD), params={"x": "a" * 7000}, timeout=10)
    assert under.status_code == 200
    # An unknown route without a key: 414 still, so no routing or auth work came first.
    over = requests.get(api.url("/api/nope"), params={"x": "a" * 9000}, timeout=10)
    assert over.status_code == 414 and over.json()["code"] == "uri_too_long"
    # 1 MB and 10 MB request lines: uvicorn's own parser refuses them (400) before our code.
    for size in (1_000_000, 10_000_000):
        started = time.monotonic()
        huge = raw_exchange(api, f"GET /api/nope?x={'a' * size} HTTP/1.1\r\nHost: t\r\n"
                            "Connection: close\r\n\r\n")
        assert status_of(huge) in (400, 414) and time.monotonic() - started < 2


def test_long_url_is_414_in_process(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import functions_framework

    monkeypatch.setenv("AUTH_DISABLED", "true")
    monkeypatch.setenv("MAX_URL_BYTES", "2048")
    load_settings.cache_clear()
    reset_services()
    try:
        app = functions_framework.create_app(target="api", source="functions/main.py")
        with TestClient(app) as client:
            assert client.get(UPLOAD, params={"x": "a" * 1900}).status_code == 200
            over = client.get(UPLOAD, params={"x": "a" * 2100})
            assert over.status_code == 414 and over.json()["code"] == "uri_too_long"
            deep = client.post(UPLOAD_URL, content=b"[" * 5000 + b"]" * 5000, headers=JSON)
            assert deep.status_code == 400 and deep.json()["code"] == "json_too_deep"
    finally:
        reset_services()


def test_deep_json_is_400_and_logs_no_traceback(api: Api) -> None:
    for body in (b"[" * 1000 + b"]" * 1000, b'{"a":' * 100_000, b"[" * 10_000_000):
        response = api.session.post(api.url(UPLOAD_URL), data=body, timeout=30, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "json_too_deep"
    # 32 levels, brackets inside strings not counted: parsed, then refused as a bad field.
    nested: object = {"filename": "[[[[{{{{" * 20}
    for _ in range(31):
        nested = [nested]
    parsed = api.session.post(api.url(UPLOAD_URL), data=json.dumps(nested), timeout=10,
                             headers=JSON)
    assert parsed.status_code == 422, parsed.text
    time.sleep(0.2)  # the log writer thread flushes every 50 ms
    log = api.http.log.read_text()
    assert "Traceback" not in log and "RecursionError" not in log


def test_reserved_job_ids_are_404(api: Api) -> None:
    # A queued job first: the queue's own `events` stream and `meta` hash keys then exist.
    signed = api.session.post(api.url(UPLOAD_URL), json={
        "filename": "n.txt", "size": 5, "contentType": "text/plain"}, timeout=10).json()
    job_id = requests.put(signed["url"], data=b"hello", headers=signed["headers"],
                          timeout=10).json()["jobId"]
    assert job_id.startswith("upl-")  # our own ids still pass
    view = api.session.get(api.url(UPLOAD), params={"jobId": job_id}, timeout=10)
    assert view.status_code == 200 and view.json()["id"] == job_id
    for path, params in [(UPLOAD, {"jobId": "events"}), (UPLOAD, {"jobId": "meta"}),
                         (UPLOAD, {"jobId": "wait"}), ("/api/datasets/sync", {"jobId": "id"}),
                         ("/api/queues/documents/jobs/events", {}),
                         ("/api/jobs/events/events", {})]:
        response = api.session.get(api.url(path), params=params, timeout=10)
        assert response.status_code == 404, (path, params, response.text)
        assert response.json()["code"] == "not_found"
    retry = api.session.post(api.url("/api/queues/documents/jobs/events/retry"), timeout=10)
    assert retry.status_code == 404


def test_out_of_range_paging_is_422_naming_the_field(api: Api) -> None:
    jobs = api.url("/api/queues/documents/jobs")
    for params in [{"page": "1000000000000000"}, {"page": "1e15"},
                   {"page": "20000", "pageSize": "100"}, {"page": "0"}]:
        response = api.session.get(jobs, params={"state": "waiting", **params}, timeout=10)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["field"] == "page"
    ok = api.session.get(jobs, params={"state": "waiting", "page": "10000", "pageSize": "100"},
                         timeout=10)
    assert ok.status_code == 200 and ok.json()["jobs"] == []


def test_unauthenticated_body_is_refused_unread(api: Api) -> None:
    # 50 MB announced, 10 bytes sent: a 401 that waited for the body would never come.
    head = (f"POST {UPLOAD} HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; "
            f"boundary=x\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n")
    started = time.monotonic()
    answer = raw_exchange(api, head, b"--x\r\nabcd", timeout=3)
    assert answer, "no answer before the body was sent"
    assert status_of(answer) == 401 and b"unauthorized" in answer
    assert time.monotonic() - started < 2
    wrong_key = raw_exchange(api, head.replace("Host: t", "Host: t\r\nAuthorization: Bearer no"),
                             b"--x", timeout=3)
    assert wrong_key and status_of(wrong_key) == 401


def test_security_headers_on_every_response(api: Api) -> None:
    answers = [api.session.get(api.url(UPLOAD), timeout=10),
               requests.get(api.url(UPLOAD), timeout=10),  # 401
               api.session.get(api.url("/api/nope"), timeout=10),
               api.session.get(api.url("/web/app.css"), timeout=10),
               api.session.get(api.url("/admin/queues"), timeout=10)]
    assert [a.status_code for a in answers] == [200, 401, 404, 200, 200]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
    for answer in answers[:3]:
        assert answer.headers["Content-Security-Policy"] == "default-src 'none'; " \
            "frame-ancestors 'none'"
    page_policy = csp_directives(answers[4].headers["Content-Security-Policy"])
    assert page_policy["script-src"] == ["'self'"]  # the pages' own policy: see test_pages.py


def test_redis_down_opens_the_breaker(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    server = start_api({"REDIS_URL": redis.url, "STORAGE_URL": f"file://{tmp_path / 'objects'}",
                        "REDIS_OP_TIMEOUT_S": "2", "REDIS_BREAKER_S": "2"}, tmp_path)
    try:
        assert server.session.get(server.url(UPLOAD), timeout=10).status_code == 200
        redis.stop()
        first = server.session.get(server.url(UPLOAD), timeout=10)
        assert first.status_code == 503 and first.json()["code"] == "queue_unavailable"
        for _ in range(5):
            started = time.monotonic()
            again = server.session.get(server.url(UPLOAD), timeout=10)
            assert again.status_code == 503 and time.monotonic() - started < 0.1
        redis.start()
        back = time.monotonic()
        while server.session.get(server.url(UPLOAD), timeout=10).status_code != 200:
            assert time.monotonic() - back < 3, "still refused after breaker window + 1 s"
            time.sleep(0.05)
    finally:
        server.stop()
        redis.stop()

