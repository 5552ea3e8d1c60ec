"""Issue 13: keys with tenants and roles, over a real socket (functions-framework). Another
tenant's jobs and documents are unknown (404, like a made-up id), duplicates are found within a
tenant only, each role gets what it may do (403 `forbidden` naming the role for the rest), and
no error answer names an internal URL or path."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from heavylift.queue import BlockingQueues, Priority, QueueName
from heavylift.settings import Settings, SettingsError, load_settings
from heavylift.tenancy import principal_for
from local.launch import RedisServer, free_port, wait_for
from tests.api_server import (
    A_READ,
    A_SUBMIT,
    API_KEY,
    B_ADMIN,
    B_SUBMIT,
    Api,
    start_api,
)
from tests.sse_client import open_stream

UPLOAD = "/api/documents/async-upload"
DOCS = QueueName.DOCUMENTS


@pytest.fixture(scope="module")
def tenants_api(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("api-tenants")
    server = start_api({"REDIS_URL": redis_server.url,
                        "STORAGE_URL": f"file://{workdir / 'objects'}"}, workdir)
    yield server
    server.stop()


@pytest.fixture
def api(tenants_api: Api, redis_url: str) -> Api:
    """The module's servers with an empty Redis."""
    return tenants_api


def upload(api: Api, key: str, name: str, data: bytes,
           headers: dict[str, str] | None = None) -> requests.Response:
    return api.as_key(key).post(api.url(UPLOAD), files=[("files", (name, data))],
                                headers=headers or {}, timeout=30)


def queued(api: Api, key: str, name: str, data: bytes, **headers: str) -> dict[str, Any]:
    answer = upload(api, key, name, data, headers)
    assert answer.status_code == 202, answer.text
    entry: dict[str, Any] = answer.json()["jobs"][0]
    return entry


def not_found_like_unknown(answer: requests.Response, unknown: requests.Response) -> None:
    """The answer to another tenant's id says exactly what a made-up id gets (ids aside)."""
    assert answer.status_code == unknown.status_code == 404, answer.text
    assert answer.json()["code"] == unknown.json()["code"] == "not_found"
    assert set(answer.json()) == set(unknown.json())


def note(text: str) -> bytes:
    return f"# {text}\n\nqueues hand heavy work to workers.\n".encode()


def test_another_tenant_gets_404_for_job_document_manifest_reprocess_and_stream(
    api: Api, redis_url: str
) -> None:
    mine = queued(api, A_SUBMIT, "a.md", note("acme"))
    job_id, doc_id = mine["jobId"], mine["documentId"]
    b = api.as_key(B_SUBMIT)
    a_read = api.as_key(A_READ)

    status = b.get(api.url(UPLOAD), params={"jobId": job_id}, timeout=10)
    not_found_like_unknown(status, b.get(api.url(UPLOAD), params={"jobId": "999999"},
                                         timeout=10))
    assert a_read.get(api.url(UPLOAD), params={"jobId": job_id}, timeout=10).json()["id"] == job_id

    unknown_doc = b.get(api.url("/api/documents/doc_00000000000000000000000000000000"),
                        timeout=10)
    running = b.get(api.url(f"/api/documents/{doc_id}"), timeout=10)  # its job is waiting
    not_found_like_unknown(running, unknown_doc)
    assert running.json()["error"] == f"no document {doc_id}"
    assert a_read.get(api.url(f"/api/documents/{doc_id}"), timeout=10).status_code == 202

    reprocess = b.post(api.url(f"/api/documents/{doc_id}/reprocess"), timeout=10)
    not_found_like_unknown(reprocess, b.post(api.url("/api/documents/doc_nope/reprocess"),
                                             timeout=10))
    with open_stream(b, api.url(f"/api/jobs/{job_id}/events")) as stream:
        assert stream.status_code == 404 and stream.json()["code"] == "not_found"
    with open_stream(a_read, api.url(f"/api/jobs/{job_id}/events")) as stream:
        assert stream.status_code == 200

    # The finished manifest is scoped by the tenant the worker wrote into it.
    objects = Path(api.env["STORAGE_URL"].removeprefix("file://"))
    manifest = objects / "documents" / doc_id / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"documentId": doc_id, "tenant": "acme",
                                    "status": "COMPLETED"}))
    done = b.get(api.url(f"/api/documents/{doc_id}"), timeout=10)
    not_found_like_unknown(done, unknown_doc)
    assert a_read.get(api.url(f"/api/documents/{doc_id}"), timeout=10).json()["tenant"] == "acme"

    # A's own reprocess is queued for A (the tenant comes from the stored upload).
    again = api.as_key(A_SUBMIT).post(api.url(f"/api/documents/{doc_id}/reprocess"), timeout=10)
    assert again.status_code == 202, again.text
    queues = BlockingQueues(Settings(redis_url=redis_url))
    try:
        job = queues.run(lambda q: q.bull(DOCS).getJob(again.json()["jobId"]))
    finally:
        queues.close()
    assert job.data["tenant"] == "acme" and job.priority == Priority.REPROCESSING
    # The operator sees every tenant's job.
    admin = api.as_key(B_ADMIN).get(api.url(UPLOAD), params={"jobId": job_id}, timeout=10)
    assert admin.status_code == 200


def test_signed_upload_carries_the_tenant_to_its_job(api: Api, redis_url: str) -> None:
    data = note("signed")
    signed = api.as_key(A_SUBMIT).post(api.url("/api/documents/upload-url"), json={
        "filename": "s.md", "size": len(data), "contentType": "text/markdown"}, timeout=10).json()
    assert signed["headers"]["x-heavylift-meta-tenant"] == "acme"
    # The tenant is signed: claiming another one breaks the signature.
    forged = requests.put(signed["url"], data=data, timeout=10,
                          headers={**signed["headers"], "x-heavylift-meta-tenant": "globex"})
    assert forged.status_code == 401 and forged.json()["code"] == "bad_signature"
    put = requests.put(signed["url"], data=data, headers=signed["headers"], timeout=10)
    assert put.status_code == 200, put.text
    queues = BlockingQueues(Settings(redis_url=redis_url))
    try:
        job = queues.run(lambda q: q.bull(DOCS).getJob(put.json()["jobId"]))
    finally:
        queues.close()
    assert job.data["tenant"] == "acme"
    document = f"/api/documents/{signed['documentId']}"
    assert api.as_key(A_READ).get(api.url(document), timeout=10).status_code == 202
    assert api.as_key(B_SUBMIT).get(api.url(document), timeout=10).status_code == 404


def test_duplicates_are_found_within_a_tenant_only(api: Api) -> None:
    data = note("same bytes")
    first = queued(api, A_SUBMIT, "a.md", data)
    again = queued(api, A_SUBMIT, "a.md", data)
    assert again["jobId"] == first["jobId"] and again["duplicate"] is True
    other = queued(api, B_SUBMIT, "a.md", data)
    assert other["jobId"] != first["jobId"] and "duplicate" not in other
    assert other["documentId"] != first["documentId"]
    # The same Idempotency-Key from two tenants: two jobs as well.
    key = {"Idempotency-Key": "retry-7"}
    a_keyed = queued(api, A_SUBMIT, "k.md", note("keyed a"), **key)
    b_keyed = queued(api, B_SUBMIT, "k.md", note("keyed b"), **key)
    assert a_keyed["jobId"] != b_keyed["jobId"] and "duplicate" not in b_keyed


def test_document_ids_are_random() -> None:
    from heavylift.documents.job import new_document_id

    ids = {new_document_id() for _ in range(1000)}
    assert len(ids) == 1000
    # doc_ + a uuid4 in hex: 122 random bits (os.urandom), nothing to guess from a neighbour.
    assert all(i.startswith("doc_") and uuid.UUID(i[4:]).version == 4 for i in ids)


def forbidden(answer: requests.Response, role: str) -> None:
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["code"] == "forbidden" and f"role '{role}'" in body["error"]


def test_roles(api: Api) -> None:
    job_id = queued(api, A_SUBMIT, "r.md", note("roles"))["jobId"]
    read, submit, admin = api.as_key(A_READ), api.as_key(A_SUBMIT), api.as_key(B_ADMIN)

    # read: its tenant's GETs; nothing that queues work (refused before the body is read).
    forbidden(upload(api, A_READ, "x.md", note("x")), "submit")
    forbidden(read.post(api.url("/api/documents/upload-url"), json={
        "filename": "a.pdf", "size": 10, "contentType": "application/pdf"}, timeout=10), "submit")
    forbidden(read.post(api.url("/api/datasets/sync"), json={}, timeout=10), "submit")
    assert read.get(api.url(UPLOAD), params={"jobId": job_id}, timeout=10).status_code == 200
    assert read.get(api.url("/api/queues"), timeout=10).status_code == 200

    # submit: no operator routes (job detail with data and stack traces, actions).
    detail = f"/api/queues/documents/jobs/{job_id}"
    forbidden(submit.get(api.url(detail), timeout=10), "admin")
    for action, body in (("pause", {}), ("resume", {}), ("retry-failed", {}),
                         ("clean", {"state": "completed"})):
        forbidden(submit.post(api.url(f"/api/queues/documents/{action}"), json=body, timeout=10),
                  "admin")
    forbidden(submit.post(api.url(f"{detail}/retry"), timeout=10), "admin")

    # admin (a tenant admin given by digest, and the legacy API_KEYS key): everything.
    for session in (admin, api.session):
        shown = session.get(api.url(detail), timeout=10)
        assert shown.status_code == 200, shown.text
        assert shown.json()["data"]["tenant"] == "acme" and "stacktrace" in shown.json()
        assert session.post(api.url("/api/queues/documents/pause"), timeout=10).json()["paused"]
        assert session.post(api.url("/api/queues/documents/resume"),
                            timeout=10).json()["paused"] is False
    # Stack traces are in no answer but the admin's detail.
    status = submit.get(api.url(UPLOAD), params={"jobId": job_id}, timeout=10).json()
    assert "stacktrace" not in status and "data" not in status


def test_job_lists_hold_only_the_keys_tenant(api: Api) -> None:
    mine = queued(api, A_SUBMIT, "mine.md", note("mine"))["jobId"]
    theirs = queued(api, B_SUBMIT, "theirs.md", note("theirs"))["jobId"]
    path = api.url("/api/queues/documents/jobs")

    def listed(session: requests.Session) -> tuple[list[str], int]:
        page = session.get(path, params={"state": "waiting"}, timeout=10).json()
        return [job["id"] for job in page["jobs"]], page["total"]

    assert listed(api.as_key(A_READ)) == ([mine], 1)
    assert listed(api.as_key(B_SUBMIT)) == ([theirs], 1)
    assert sorted(listed(api.as_key(B_ADMIN))[0]) == sorted([mine, theirs])


def test_dashboard_is_read_only_below_admin(api: Api) -> None:
    page = api.as_key(A_READ).get(api.url("/admin/queues"), timeout=10)
    assert page.status_code == 200 and 'data-role="read"' in page.text
    admin_page = api.as_key(B_ADMIN).get(api.url("/admin/queues"), timeout=10)
    assert 'data-role="admin"' in admin_page.text
    forbidden(api.as_key(A_READ).post(api.url("/api/queues/documents/pause"), timeout=10),
              "admin")


def test_dataset_sync_outside_the_allow_list_is_refused(api: Api) -> None:
    body = {"datasetId": "hl_test", "environment": "production", "volumeType": "inbound",
            "jobType": "actuals", "startDate": "2024-01-01", "endDate": "2024-01-31"}
    answer = api.as_key(B_SUBMIT).post(api.url("/api/datasets/sync"), json=body, timeout=10)
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "dataset_forbidden"
    assert answer.json()["field"] == "datasetId" and "other_dataset" in answer.json()["error"]


def test_another_tenants_sync_status_is_404(api: Api, redis_url: str) -> None:
    queues = BlockingQueues(Settings(redis_url=redis_url))
    try:  # a queued sync of acme's, as the route queues it
        sync_id = queues.run(lambda q: q.add(QueueName.DATASETS, "sync", {"tenant": "acme"},
                                             Priority.REGULAR, job_id="ds-" + "a" * 32))
    finally:
        queues.close()
    sync = api.url("/api/datasets/sync")
    assert api.as_key(A_READ).get(sync, params={"jobId": sync_id}, timeout=10).status_code == 200
    not_found_like_unknown(
        api.as_key(B_SUBMIT).get(sync, params={"jobId": sync_id}, timeout=10),
        api.as_key(B_SUBMIT).get(sync, params={"jobId": "ds-" + "b" * 32}, timeout=10))


def no_internals(answer: requests.Response, *secrets: str) -> None:
    text = answer.text
    for leak in ("http://", "127.0.0.1", "file://", "gs://", "/tmp", *secrets):
        assert leak not in text, (leak, text)


def test_outage_answers_name_no_url_or_path(
    redis_server: RedisServer, tmp_path: Path, redis_url: str
) -> None:
    emulator = f"http://127.0.0.1:{free_port()}"  # nothing listens: storage is down
    (tmp_path / "gs").mkdir()
    (tmp_path / "redis").mkdir()
    down = start_api({"REDIS_URL": redis_server.url, "STORAGE_URL": "gs://hidden-bucket/x",
                      "STORAGE_EMULATOR_HOST": emulator, "STORAGE_TIMEOUT_S": "1",
                      "STORAGE_RETRY_S": "0"}, tmp_path / "gs")
    no_redis = start_api({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                          "STORAGE_URL": f"file://{tmp_path / 'objects'}",
                          "REDIS_OP_TIMEOUT_S": "1"}, tmp_path / "redis")
    try:
        stored = upload(down, API_KEY, "a.md", note("outage"))
        assert stored.status_code == 503 and stored.json()["code"] == "storage_unavailable"
        no_internals(stored, "hidden-bucket")
        manifest = down.session.get(down.url("/api/documents/doc_x"), timeout=30)
        assert manifest.status_code == 503
        no_internals(manifest, "hidden-bucket")
        # The log keeps the detail for the operator (written by a batching thread: soon).
        log = tmp_path / "gs" / "api.log"
        wait_for(lambda: "hidden-bucket" in log.read_text(), timeout=5)
        queue = no_redis.session.get(no_redis.url(UPLOAD), timeout=30)
        assert queue.status_code == 503 and queue.json()["code"] == "queue_unavailable"
        no_internals(queue)
    finally:
        down.stop()
        no_redis.stop()


# --- the keys document at start-up --------------------------------------------------------


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in ("API_KEYS", "API_KEYS_JSON", "API_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    try:
        return load_settings()
    finally:
        load_settings.cache_clear()


@pytest.mark.parametrize(("document", "problem"), [
    ("[{", "invalid setting API_KEYS_JSON: not JSON"),
    ('[{"key": "long-enough-1", "tenant": "a", "role": "owner"}]',
     "invalid setting API_KEYS_JSON: entry 1 (role): Input should be 'read', 'submit' or 'admin'"),
    ('[{"tenant": "a", "role": "read"}]',
     "invalid setting API_KEYS_JSON: entry 1: give exactly one of 'key' and 'sha256'"),
    ('[{"sha256": "abc", "tenant": "a", "role": "read"}]',
     "invalid setting API_KEYS_JSON: entry 1 (sha256): String should match pattern"),
    ('[{"key": "long-enough-1", "tenant": "a/b", "role": "read"}]',
     "invalid setting API_KEYS_JSON: entry 1 (tenant): String should match pattern"),
    ('[{"key": "long-enough-1", "tenant": "a", "role": "read", "roles": []}]',
     "invalid setting API_KEYS_JSON: entry 1 (roles): Extra inputs are not permitted"),
    ('[{"key": "long-enough-1", "tenant": "a", "role": "read"},'
     ' {"key": "long-enough-1", "tenant": "b", "role": "admin"}]', "a key is listed twice"),
])
def test_a_bad_keys_document_stops_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, document: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from(monkeypatch, API_KEYS_JSON=document)
    message = str(caught.value)
    assert message.startswith(problem) or problem in message, message
    assert "\n" not in message and "long-enough-1" not in message


def test_keys_file_legacy_keys_and_digests(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([
        {"sha256": hashlib.sha256(b"tenant-key-1").hexdigest(), "tenant": "acme",
         "role": "read", "datasets": ["sales"]}]))
    settings = settings_from(monkeypatch, API_KEYS="old-key", API_KEYS_FILE=str(keys))
    acme = principal_for("tenant-key-1", settings.key_table)
    assert acme is not None and (acme.tenant, acme.role) == ("acme", "read")
    assert acme.may_sync("sales") and not acme.may_sync("other") and not acme.has("submit")
    legacy = principal_for("old-key", settings.key_table)
    assert legacy is not None and (legacy.tenant, legacy.role) == ("default", "admin")
    assert legacy.may_sync("anything")
    assert principal_for("tenant-key-", settings.key_table) is None
    with pytest.raises(SettingsError, match="not both"):
        settings_from(monkeypatch, API_KEYS_FILE=str(keys), API_KEYS_JSON="[]")
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        settings_from(monkeypatch, API_KEYS_FILE=str(tmp_path / "missing.json"))
