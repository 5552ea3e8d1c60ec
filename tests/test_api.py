"""The `api` and `on_upload_finalized` functions over a real socket (functions-framework) on
file://, gs:// (fake-gcs-server) and s3:// (moto), plus the same app in-process."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from starlette.testclient import TestClient

from heavylift.api.services import reset_services
from heavylift.queue import BlockingQueues, Priority, QueueName
from heavylift.schemas import JobView
from heavylift.settings import Settings
from heavylift.storage import ObjectStore, open_store
from local.launch import RedisServer, free_port
from tests.api_server import API_KEY, Api, backend_env, csp_directives, start_api
from tests.pdf_fixtures import text_pdf

DOCS = QueueName.DOCUMENTS
UPLOAD = "/api/documents/async-upload"
ZIP = b"PK\x03\x04" + b"\x00" * 64  # not a type we read (images are: see test_ocr.py)


@pytest.fixture(scope="module")
def sample_pdf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("pdf") / "large-document.pdf"
    return text_pdf(path, [["A large document", "about queues"], ["page two"]]).read_bytes()


@pytest.fixture(scope="module", params=["file", "gs", "s3"])
def api(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp(f"api-{request.param}")
    env = {"REDIS_URL": redis_server.url, **backend_env(request.param, request, workdir)}
    server = start_api(env, workdir)
    yield server
    server.stop()


@pytest.fixture
def fresh(api: Api, redis_url: str) -> Api:
    """The module's servers with an empty Redis."""
    return api


def store_of(api: Api) -> ObjectStore:
    """The api's own bucket, opened as the api opens it (from its environment)."""
    env = api.env
    settings = Settings(
        storage_url=env["STORAGE_URL"], s3_endpoint_url=env.get("S3_ENDPOINT_URL"),
        gcs_signing_credentials_file=env.get("GCS_SIGNING_CREDENTIALS_FILE"),
    )
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "STORAGE_EMU"))})
    try:
        return open_store(env["STORAGE_URL"], settings)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def upload(api: Api, *files: tuple[str, bytes], headers: dict[str, str] | None = None,
           **flags: str) -> requests.Response:
    return api.session.post(
        api.url(UPLOAD), files=[("files", (name, data)) for name, data in files],
        data=flags, headers=headers or {}, timeout=60,
    )


# --- the seed's flow, on every backend ------------------------------------------------------


def test_seed_upload_status_and_counts(fresh: Api, sample_pdf: bytes) -> None:
    response = upload(fresh, ("large-document.pdf", sample_pdf),
                      useAI="true", generateSummary="true", generateEmbeddings="true")
    assert response.status_code == 202
    body = response.json()
    document_id = body["jobs"][0]["documentId"]
    assert body == {
        "success": True,
        "message": "1 documents queued for processing",
        "jobs": [{"jobId": "1", "filename": "large-document.pdf", "size": len(sample_pdf),
                  "documentId": document_id,
                  "statusUrl": "/api/documents/async-upload?jobId=1"}],
        "queueStatus": {"waiting": 1, "active": 0, "completed": 0, "failed": 0},
    }
    assert fresh.session.get(fresh.url(f"/api/documents/{document_id}"),
                             timeout=10).json()["jobId"] == "1"
    view = fresh.session.get(fresh.url(UPLOAD), params={"jobId": "1"}, timeout=10).json()
    assert view["id"] == "1" and view["state"] == "waiting" and view["progress"] == 0
    assert set(view) == {"id", "state", "progress", "result", "createdAt", "processedAt",
                         "finishedAt"}
    counts = fresh.session.get(fresh.url(UPLOAD), timeout=10).json()
    assert counts == {"waiting": 1, "active": 0, "completed": 0, "failed": 0, "delayed": 0}

    store = store_of(fresh)
    stored = [info for info in store.list("uploads/") if info.key.endswith("/large-document.pdf")]
    assert len(stored) == 1
    with store.open_read(stored[0].key) as stream:
        assert stream.read() == sample_pdf
    info = store.info(stored[0].key)
    assert info.metadata["use-ai"] == "true" and info.metadata["generate-embeddings"] == "true"
    assert info.metadata["sha256"] == hashlib.sha256(sample_pdf).hexdigest()
    if not fresh.env["STORAGE_URL"].startswith("file://"):
        # On GCP the bucket also announces this object: its job is queued already.
        bucket, prefix = fresh.env["STORAGE_URL"].split("/")[2:4]
        event = fresh.post_event(bucket, f"{prefix}/{info.key}", info.etag_or_generation,
                                 info.size, info.metadata)
        assert event.status_code == 200
        again = fresh.session.get(fresh.url(UPLOAD), timeout=10).json()
        assert again["waiting"] == 1
    else:
        put = requests.put(fresh.url("/api/storage/upload?key=uploads/x/y.pdf&expires=1&sig=0"),
                           data=b"x", timeout=10)
        assert put.status_code == 401  # file:// only, and only with a valid signature


def test_upload_url_put_and_event_queue_once(fresh: Api, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024 if fresh.env["STORAGE_URL"].startswith("gs://") else 2 * 1024 * 1024
    body = b"%PDF-1.7\n" + os.urandom(size - 9)
    answer = fresh.session.post(fresh.url("/api/documents/upload-url"), json={
        "filename": "big.pdf", "size": size, "contentType": "application/pdf", "useAI": True,
    }, timeout=10)
    assert answer.status_code == 200, answer.text
    signed = answer.json()
    assert signed["method"] == "PUT" and signed["objectName"].endswith("/big.pdf")
    assert signed["objectName"].startswith(f"uploads/{signed['documentId']}/")
    put = requests.put(signed["url"], data=body, headers=signed["headers"], timeout=120)
    assert put.status_code in (200, 201), put.text

    store = store_of(fresh)
    info = store.info(signed["objectName"])
    assert info.size == size and info.metadata["use-ai"] == "true"
    if fresh.env["STORAGE_URL"].startswith("file://"):
        job_id = put.json()["jobId"]  # the local upload route stands in for the bucket event
    else:
        bucket = fresh.env["STORAGE_URL"].split("/")[2]
        name = fresh.env["STORAGE_URL"].split("/", 3)[3] + "/" + signed["objectName"]
        for _ in range(2):  # Eventarc delivers at least once
            delivered = fresh.post_event(bucket, name, info.etag_or_generation, size,
                                         info.metadata)
            assert delivered.status_code == 200, delivered.text
        job_id = None
    [job] = waiting_jobs(fresh)
    assert job_id is None or job.id == job_id
    assert job_of_document(fresh, signed["documentId"]) == job.id


def waiting_jobs(api: Api) -> list[JobView]:
    queues = BlockingQueues(Settings(redis_url=api.env["REDIS_URL"]))
    page = queues.run(lambda q: q.page(DOCS, "waiting"))
    queues.close()
    assert page.total == len(page.jobs)
    return page.jobs


def job_of_document(api: Api, document_id: str) -> str:
    status = api.session.get(api.url(f"/api/documents/{document_id}"), timeout=10)
    assert status.status_code == 202, status.text
    job_id: str = status.json()["jobId"]
    return job_id


def upload_url(api: Api, filename: str, size: int) -> dict[str, Any]:
    answer = api.session.post(api.url("/api/documents/upload-url"), json={
        "filename": filename, "size": size, "contentType": "application/pdf"}, timeout=10)
    assert answer.status_code == 200, answer.text
    signed: dict[str, Any] = answer.json()
    return signed


def stored_bytes(api: Api, key: str) -> bytes:
    with store_of(api).open_read(key) as stream:
        return stream.read()


def test_signed_put_url_works_once(fresh: Api) -> None:
    first, replay = (b"%PDF-1.7\n" + fill * 4096 for fill in (b"a", b"b"))
    signed = upload_url(fresh, "once.pdf", len(first))
    put = requests.put(signed["url"], data=first, headers=signed["headers"], timeout=30)
    assert put.status_code in (200, 201), put.text
    uploaded = store_of(fresh).info(signed["objectName"])

    again = requests.put(signed["url"], data=replay, headers=signed["headers"], timeout=30)
    backend = fresh.env["STORAGE_URL"].split(":")[0]
    if backend == "file":
        assert again.status_code == 409
        assert again.json()["code"] == "already_uploaded"
        assert "works once" in again.json()["error"]
    elif backend == "s3":
        assert again.status_code == 412 and "<Condition>If-None-Match</Condition>" in again.text
    else:
        # GCS refuses the replay with 412 (the URL signs x-goog-if-generation-match: 0);
        # fake-gcs-server ignores preconditions on signed PUTs and overwrites the object, which
        # leaves the replayed finalize event below to prove that no second job comes of it.
        assert signed["headers"]["x-goog-if-generation-match"] == "0"
        signed_headers = parse_qs(urlsplit(signed["url"]).query)["X-Goog-SignedHeaders"][0]
        assert "x-goog-if-generation-match" in signed_headers.split(";")
        assert again.status_code == 200
    assert stored_bytes(fresh, signed["objectName"]) == (replay if backend == "gs" else first)

    if backend != "file":
        bucket, prefix = fresh.env["STORAGE_URL"].split("/")[2:4]
        now = store_of(fresh).info(signed["objectName"]).etag_or_generation
        # The first upload's event, Eventarc's redelivery of it, then an event for a new
        # generation (the overwrite that got through, or one the store would have made).
        generations = [uploaded.etag_or_generation] * 2 + [
            now if now != uploaded.etag_or_generation else now + "1"]
        for generation in generations:
            delivered = fresh.post_event(bucket, f"{prefix}/{signed['objectName']}", generation,
                                         len(first), uploaded.metadata)
            assert delivered.status_code == 200, delivered.text
    [job] = waiting_jobs(fresh)
    assert job.id == (put.json()["jobId"] if backend == "file" else job.id)
    assert job_of_document(fresh, signed["documentId"]) == job.id


# --- idempotency, manifest, reprocess (file:// only: no backend difference) -----------------


@pytest.fixture(scope="module")
def local_api(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("api-local")
    server = start_api({"REDIS_URL": redis_server.url,
                        "STORAGE_URL": f"file://{workdir / 'objects'}",
                        "MAX_FILES_PER_REQUEST": "3"}, workdir)
    yield server
    server.stop()


@pytest.fixture
def local(local_api: Api, redis_url: str) -> Api:
    return local_api


def start_put(signed: dict[str, Any], size: int, part: bytes) -> http.client.HTTPConnection:
    """A PUT to the signed URL that has sent its headers and the first `part` of its body."""
    url = urlsplit(signed["url"])
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    connection.putrequest("PUT", f"{url.path}?{url.query}")
    for name, value in {**signed["headers"], "Content-Length": str(size)}.items():
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(part)
    return connection


def upload_folder(api: Api, document_id: str) -> Path:
    return Path(api.env["STORAGE_URL"].removeprefix("file://")) / "uploads" / document_id


def test_concurrent_signed_puts_one_wins(local: Api) -> None:
    """Two PUTs on one URL at once, the first still sending its body when the second ends:
    exactly one stores its bytes and queues a job, the other gets 409."""
    body = b"%PDF-1.7\n" + os.urandom(2 * 1024 * 1024)
    rival_body = b"%PDF-1.7\n" + os.urandom(2 * 1024 * 1024)
    signed = upload_url(local, "race.pdf", len(body))
    half = len(body) // 2
    slow = start_put(signed, len(body), body[:half])
    rival = requests.put(signed["url"], data=rival_body, headers=signed["headers"], timeout=30)
    slow.send(body[half:])
    answer = slow.getresponse()
    slow_json = json.loads(answer.read())
    slow.close()

    assert sorted([answer.status, rival.status_code]) == [200, 409]
    winner, loser = ((slow_json, rival.json()) if answer.status == 200
                     else (rival.json(), slow_json))
    assert loser["code"] == "already_uploaded"
    won_body = body if answer.status == 200 else rival_body
    assert stored_bytes(local, signed["objectName"]) == won_body
    [job] = waiting_jobs(local)
    assert job.id == winner["jobId"]


def test_interrupted_signed_put_leaves_the_url_usable(local: Api) -> None:
    body = b"%PDF-1.7\n" + os.urandom(1024 * 1024)
    signed = upload_url(local, "cut.pdf", len(body))
    cut = start_put(signed, len(body), body[: len(body) // 3])
    time.sleep(0.2)  # the api is reading the body
    cut.close()  # the client goes away mid-body

    deadline = time.monotonic() + 10
    while (retry := requests.put(signed["url"], data=body, headers=signed["headers"],
                                 timeout=30)).status_code == 409 and time.monotonic() < deadline:
        time.sleep(0.1)  # the api has not noticed the disconnect yet
    assert retry.status_code == 200, retry.text
    assert stored_bytes(local, signed["objectName"]) == body
    leftovers = list(upload_folder(local, signed["documentId"]).glob(".hl-tmp-*"))
    assert leftovers == []  # no partial file left
    [job] = waiting_jobs(local)
    assert job.id == retry.json()["jobId"]
    assert requests.put(signed["url"], data=body, headers=signed["headers"],
                        timeout=30).status_code == 409


def test_idempotency_key_and_same_content_return_the_existing_job(
    local: Api, sample_pdf: bytes
) -> None:
    key = {"Idempotency-Key": "client-retry-1"}
    first = upload(local, ("a.pdf", sample_pdf), headers=key).json()
    again = upload(local, ("renamed.pdf", sample_pdf + b"\n"), headers=key).json()
    assert again["jobs"][0]["jobId"] == first["jobs"][0]["jobId"]
    assert again["jobs"][0]["duplicate"] is True
    assert "already queued" in again["message"]
    same_content = upload(local, ("a.pdf", sample_pdf)).json()
    repeat = upload(local, ("b.pdf", sample_pdf)).json()
    assert repeat["jobs"][0]["jobId"] == same_content["jobs"][0]["jobId"]
    other_options = upload(local, ("a.pdf", sample_pdf), useAI="true").json()
    assert other_options["jobs"][0]["jobId"] != same_content["jobs"][0]["jobId"]
    counts = local.session.get(local.url(UPLOAD), timeout=10).json()
    assert counts["waiting"] == 3


def test_manifest_and_reprocess(local: Api, sample_pdf: bytes) -> None:
    queued = upload(local, ("m.pdf", sample_pdf)).json()["jobs"][0]
    store = store_of(local)
    queues = BlockingQueues(Settings(redis_url=local.env["REDIS_URL"]))
    document_id = queues.run(lambda q: q.bull(DOCS).getJob(queued["jobId"])).data["documentId"]
    running = local.session.get(local.url(f"/api/documents/{document_id}"), timeout=10)
    assert running.status_code == 202 and running.json()["jobId"] == queued["jobId"]
    store.put_bytes(f"documents/{document_id}/manifest.json", b'{"status": "COMPLETED"}')
    done = local.session.get(local.url(f"/api/documents/{document_id}"), timeout=10)
    assert done.status_code == 200 and done.json() == {"status": "COMPLETED"}

    again = local.session.post(local.url(f"/api/documents/{document_id}/reprocess"), timeout=10)
    assert again.status_code == 202
    job = queues.run(lambda q: q.bull(DOCS).getJob(again.json()["jobId"]))
    queues.close()
    assert job.priority == Priority.REPROCESSING
    assert job.data["reprocess"] is True and job.data["documentId"] == document_id
    missing = local.session.post(local.url("/api/documents/doc_nope/reprocess"), timeout=10)
    assert missing.status_code == 404
    assert local.session.get(local.url("/api/documents/doc_nope"), timeout=10).status_code == 404


# --- bad input: each a clear JSON error, nothing stored -------------------------------------


def objects(api: Api) -> list[str]:
    return [info.key for info in store_of(api).list("uploads/")]


@pytest.mark.parametrize(
    ("files", "flags", "status", "code"),
    [
        ([("empty.pdf", b"")], {}, 400, "empty_file"),
        ([("archive.pdf", ZIP)], {}, 415, "unsupported_type"),
        ([], {}, 400, "no_files"),
        ([("a.txt", b"hello")] * 4, {}, 400, "too_many_files"),
        ([("a.txt", b"hello")], {"useAI": "maybe"}, 400, "invalid_field"),
        ([("ok.txt", b"fine"), ("bad.pdf", ZIP)], {}, 415, "unsupported_type"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    local: Api, files: list[tuple[str, bytes]], flags: dict[str, str], status: int, code: str
) -> None:
    before = objects(local)
    response = upload(local, *files, **flags)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == code and body["error"]
    assert objects(local) == before
    assert local.session.get(local.url(UPLOAD), timeout=10).json()["waiting"] == 0


def test_path_traversal_filename_is_stored_under_a_safe_name(local: Api) -> None:
    response = upload(local, ("../../etc/passwd", b"root:x:0:0\n"),
                      ("..\\evil\x07name.md", b"# title\n- item\n"))
    assert response.status_code == 202
    names = [job["filename"] for job in response.json()["jobs"]]
    assert names == ["passwd", "evilname.md"]
    for key in objects(local):
        assert key.startswith("uploads/doc_") and ".." not in key


def test_api_key_is_required(local: Api) -> None:
    anonymous = requests.get(local.url(UPLOAD), timeout=10)
    assert anonymous.status_code == 401 and "API key" in anonymous.json()["error"]
    wrong = requests.get(local.url(UPLOAD), headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    other = requests.get(local.url(UPLOAD), headers={"Authorization": "Bearer other-key"},
                         timeout=10)
    assert other.status_code == 200


def test_unknown_job_and_route(local: Api) -> None:
    missing = local.session.get(local.url(UPLOAD), params={"jobId": "999"}, timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert local.session.get(local.url("/api/nope"), timeout=10).status_code == 404


def test_upload_url_validation(local: Api) -> None:
    url = local.url("/api/documents/upload-url")
    malformed = local.session.post(url, data=b"{not json", timeout=10,
                                   headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["code"] == "malformed_json"
    too_big = local.session.post(url, json={"filename": "x.pdf", "size": 51 * 1024 * 1024,
                                            "contentType": "application/pdf"}, timeout=10)
    assert too_big.status_code == 413
    wrong_type = local.session.post(url, json={"filename": "x.exe", "size": 10,
                                               "contentType": "application/x-msdownload"},
                                    timeout=10)
    assert wrong_type.status_code == 415
    missing = local.session.post(url, json={"filename": "x.pdf"}, timeout=10)
    assert missing.status_code == 422 and missing.json()["field"] == "size"


def test_local_put_rejects_a_tampered_signature(local: Api) -> None:
    before = objects(local)
    signed = local.session.post(local.url("/api/documents/upload-url"), json={
        "filename": "t.txt", "size": 5, "contentType": "text/plain"}, timeout=10).json()
    tampered = signed["url"].replace("sig=", "sig=0")
    response = requests.put(tampered, data=b"hello", headers=signed["headers"], timeout=10)
    assert response.status_code == 401
    wrong_size = requests.put(signed["url"], data=b"hello!", headers=signed["headers"],
                              timeout=10)
    assert wrong_size.status_code == 401
    assert objects(local) == before


def test_oversize_body_gets_413_without_being_read(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = start_api({"REDIS_URL": redis_server.url, "STORAGE_URL": f"file://{tmp_path}",
                        "MAX_UPLOAD_BYTES": str(1024 * 1024)}, tmp_path)
    try:
        body = b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024)
        response = server.session.post(server.url(UPLOAD),
                                       files=[("files", ("big.pdf", body))], timeout=30)
        assert response.status_code == 413 and response.json()["code"] == "too_large"
        assert not list(tmp_path.glob("uploads/**/*.pdf"))
    finally:
        server.stop()


def test_redis_down_is_503_and_nothing_is_stored(tmp_path: Path, sample_pdf: bytes) -> None:
    server = start_api({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                        "STORAGE_URL": f"file://{tmp_path / 'objects'}",
                        "REDIS_OP_TIMEOUT_S": "2"}, tmp_path)
    try:
        response = upload(server, ("a.pdf", sample_pdf))
        assert response.status_code == 503 and response.json()["code"] == "queue_unavailable"
        assert not (tmp_path / "objects").exists() or not any((tmp_path / "objects").rglob("*.pdf"))
        status = server.session.get(server.url(UPLOAD), timeout=10)
        assert status.status_code == 503
    finally:
        server.stop()


def test_storage_down_is_503(redis_server: RedisServer, tmp_path: Path, sample_pdf: bytes,
                             redis_url: str) -> None:
    server = start_api({"REDIS_URL": redis_server.url, "STORAGE_URL": "gs://nowhere/x",
                        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",
                        # One try, then the answer (the api retries storage too).
                        "STORAGE_TIMEOUT_S": "1", "STORAGE_RETRY_S": "0"}, tmp_path)
    try:
        response = upload(server, ("a.pdf", sample_pdf))
        assert response.status_code == 503 and response.json()["code"] == "storage_unavailable"
        assert server.session.get(server.url(UPLOAD), timeout=10).json()["waiting"] == 0
    finally:
        server.stop()


def test_seed_curl_commands_verbatim(local: Api, sample_pdf: bytes, tmp_path: Path) -> None:
    (tmp_path / "large-document.pdf").write_bytes(sample_pdf)
    auth = ["-H", f"Authorization: Bearer {API_KEY}"]
    base = local.http.url
    posted = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{base}/api/documents/async-upload", *auth,
         "-F", "files=@large-document.pdf", "-F", "useAI=true", "-F", "generateSummary=true",
         "-F", "generateEmbeddings=true"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    assert '"jobId":"1"' in posted.stdout
    status = subprocess.run(["curl", "-s", f"{base}/api/documents/async-upload?jobId=1", *auth],
                            capture_output=True, text=True, check=True)
    assert '"id":"1"' in status.stdout
    counts = subprocess.run(["curl", "-s", f"{base}/api/documents/async-upload", *auth],
                            capture_output=True, text=True, check=True)
    assert '"waiting":1' in counts.stdout


# --- in-process: the same app without a socket ----------------------------------------------


def test_page_csp_connects_where_signed_urls_point(fresh: Api) -> None:
    """upload.js PUTs to the signed URL: the pages' connect-src must name its origin."""
    answer = fresh.session.post(fresh.url("/api/documents/upload-url"), json={
        "filename": "csp.pdf", "size": 10, "contentType": "application/pdf"}, timeout=10)
    assert answer.status_code == 200, answer.text
    target = urlsplit(answer.json()["url"])
    page = fresh.session.get(fresh.url("/upload"), timeout=10)
    connect = csp_directives(page.headers["Content-Security-Policy"])["connect-src"]
    assert connect == ["'self'", f"{target.scheme}://{target.netloc}"]


def test_in_process_app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import functions_framework

    monkeypatch.setenv("AUTH_DISABLED", "true")
    from heavylift.settings import load_settings

    load_settings.cache_clear()
    reset_services()
    app = functions_framework.create_app(target="api", source="functions/main.py")
    with TestClient(app) as client:
        response = client.post(UPLOAD, files={"files": ("n.md", io.BytesIO(b"# notes\n- a\n"))})
        assert response.status_code == 202 and response.json()["jobs"][0]["jobId"] == "1"
        assert client.get(UPLOAD, params={"jobId": "1"}).json()["state"] == "waiting"
    reset_services()


def test_function_logs_each_request_as_json(local: Api, sample_pdf: bytes) -> None:
    queued = upload(local, ("logged.pdf", sample_pdf)).json()["jobs"][0]["jobId"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the writer thread flushes every 50 ms
        records = [json.loads(line) for line in local.http.log.read_text().splitlines()
                   if line.startswith("{")]
        events = {(r.get("event"), r.get("jobId"), r.get("status")) for r in records}
        if ("queued", queued, None) in events and ("http", None, 202) in events:
            return
        time.sleep(0.1)
    raise AssertionError(f"no queued/http records in the api log:\n{records[-5:]}")
