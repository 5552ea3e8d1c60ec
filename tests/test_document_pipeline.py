"""The `documents` job through real worker processes, real Redis and file:// storage: generated
and real PDFs, broken files, the OpenAI path (fake server), SIGKILL recovery from checkpoints,
and the HTTP API end to end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heavylift.documents.job import UploadOptions
from heavylift.queue import BlockingQueues
from heavylift.settings import Settings
from heavylift.storage import ObjectStore, open_store
from local.launch import WorkerProcess
from tests.api_server import start_api
from tests.doc_jobs import (
    RESULT_KEYS,
    check_completed,
    manifest,
    outputs,
    queue_document,
    vectors_of,
    view,
    wait_finished,
    wait_progress,
)
from tests.fake_openai import EMBEDDING_DIMENSIONS, FakeOpenAI, fake_openai_server
from tests.pdf_fixtures import encrypted_copy, mixed_pdf, real_manuals, text_pdf
from tests.test_ai_providers import _notes as model_notes

StartWorker = Callable[..., WorkerProcess]
# A SIGKILLed worker's job is back within lock + stalled check: ~3 s instead of ~30 s.
FAST_RECOVERY = {"LOCK_DURATION_MS": "2000", "STALLED_INTERVAL_MS": "1000"}
LOCAL_DIMENSIONS = 384
EVERYTHING = UploadOptions(useAI=True, generateSummary=True, generateEmbeddings=True)
AI = UploadOptions(useAI=True)
EMBEDDINGS = UploadOptions(generateEmbeddings=True)


@pytest.fixture(scope="module")
def manuals() -> Path:
    return real_manuals()


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    return open_store(settings.storage_url, settings)


@pytest.fixture
def generated_pdf(tmp_path: Path) -> Path:
    pages = [
        [f"Section {page}: queues hand heavy work to background workers.",
         f"Worker {page} extracts text, chunks it and embeds every chunk.",
         "Checkpoints let a recovered job skip the stages it already finished."]
        for page in range(1, 7)
    ]
    return text_pdf(tmp_path / "generated.pdf", pages)


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with fake_openai_server() as server:
        server.chat = model_notes
        yield server


def openai_env(fake: FakeOpenAI) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.url, "OPENAI_MAX_RETRIES": "3",
            "NO_PROXY": "127.0.0.1"}


def stage_events(worker: WorkerProcess, job_id: str) -> dict[str, bool]:
    """stage -> reused, from the worker's JSON log."""
    return {e["stage"]: e["reused"] for e in worker.find("stage", jobId=job_id)}


# --- happy paths ---------------------------------------------------------------------------


def test_generated_and_real_pdfs_end_to_end_with_rising_progress(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    generated_pdf: Path, manuals: Path,
) -> None:
    worker = start_worker(STORAGE_URL=settings.storage_url, CPU_WORKERS="2")
    generated = queue_document(queues, store, settings, generated_pdf, "generated.pdf",
                               options=EVERYTHING)
    real = queue_document(queues, store, settings, manuals / "R-exts.pdf", "R-exts.pdf",
                          options=EVERYTHING)
    seen: list[float] = []
    real_view = wait_finished(queues, real.job_id, progress=seen)
    stored = check_completed(store, real_view, LOCAL_DIMENSIONS)
    assert stored["pageCount"] == 236 and stored["pagesNeedingOcr"] == []
    assert stored["provider"]["name"] == "local" and stored["engine"] == "pypdfium2"
    assert set(stored["timings"]) >= {"fetch", "extract", "chunk", "analysis", "embeddings"}
    assert stored["files"]["chunks.jsonl"] == f"documents/{real.document_id}/chunks.jsonl"
    assert min(real_view.result[k] for k in ("themes", "quotes", "insights")) > 0
    assert seen == sorted(seen), "progress went backwards"
    assert len({p for p in seen if 0 < p < 100}) >= 3, seen
    assert seen[-1] == 100

    small = check_completed(store, wait_finished(queues, generated.job_id), LOCAL_DIMENSIONS)
    assert small["pageCount"] == 6
    pages = [json.loads(line) for line in outputs(store, generated.document_id)["pages.jsonl"]
             .decode().splitlines()]
    assert "Section 3: queues hand heavy work" in pages[2]["text"]
    assert worker.metric("heavylift_document_pages_total") == 236 + 6


def test_unusable_files_fail_at_once_and_scans_complete_with_ocr_pages(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    generated_pdf: Path, tmp_path: Path,
) -> None:
    data = generated_pdf.read_bytes()
    failing: dict[str, tuple[bytes, str]] = {
        "aes.pdf": (encrypted_copy(generated_pdf, tmp_path / "a.pdf", "s3cret", "AES-256")
                    .read_bytes(), "password-protected"),
        "rc4.pdf": (encrypted_copy(generated_pdf, tmp_path / "r.pdf", "s3cret", "RC4-128")
                    .read_bytes(), "password-protected"),
        "truncated.pdf": (data[: len(data) // 2], "damaged or truncated"),
        "garbage.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 64, "damaged"),
        "zero.pdf": (b"", "empty"),
        "broken.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "damaged"),
        "archive.zip": (b"PK\x03\x04" + bytes(64), "Unsupported file type"),
    }
    completing: dict[str, bytes] = {
        "scanned.pdf": mixed_pdf(tmp_path / "scanned.pdf").read_bytes(),
        "open-aes.pdf": encrypted_copy(generated_pdf, tmp_path / "o.pdf", "", "AES-256")
        .read_bytes(),
        "notes.md": b"# Notes\n\n- queues\n- workers\n\nSee [the docs](https://example.com).\n",
    }
    start_worker(STORAGE_URL=settings.storage_url)
    failed_jobs = {name: queue_document(queues, store, settings, content, name, options=AI)
                   for name, (content, _) in failing.items()}
    done_jobs = {name: queue_document(queues, store, settings, content, name, options=AI)
                 for name, content in completing.items()}

    for name, job in failed_jobs.items():
        finished = wait_finished(queues, job.job_id)
        assert finished.state == "failed", name
        assert finished.attemptsMade == 1, f"{name} was retried"
        assert failing[name][1] in (finished.failedReason or ""), (name, finished.failedReason)
        stored = manifest(store, job.document_id)
        assert stored["status"] == "FAILED"
        assert stored["error"]["message"] == finished.failedReason
    results = {name: wait_finished(queues, job.job_id) for name, job in done_jobs.items()}
    scanned = check_completed(store, results["scanned.pdf"])
    assert scanned["pagesNeedingOcr"] == [2]  # page 3 is blank, without an image
    assert [page["page"] for page in scanned["ocr"]["pages"]] == [2]  # stripes, not words
    assert check_completed(store, results["open-aes.pdf"])["pageCount"] == 6
    markdown = check_completed(store, results["notes.md"])
    assert markdown["documentType"] == "markdown" and markdown["engine"] == "text"


def test_openai_provider_path_and_budget_overrun(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    fake_openai: FakeOpenAI, manuals: Path,
) -> None:
    fake_openai.fail_next(429, {"Retry-After": "0.2"})  # the client waits and retries
    worker = start_worker(STORAGE_URL=settings.storage_url, **openai_env(fake_openai))
    job = queue_document(queues, store, settings, manuals / "R-data.pdf", "R-data.pdf",
                         options=EVERYTHING)
    finished = wait_finished(queues, job.job_id)
    stored = check_completed(store, finished, EMBEDDING_DIMENSIONS)
    assert stored["provider"] == {"name": "openai", "chat_model": "gpt-4o-mini",
                                  "embedding_model": "text-embedding-3-small"}
    assert stored["counts"]["aiTokens"] > 0
    paths = fake_openai.paths()
    # The first request got the 429 and was retried by the client within the same attempt.
    assert paths[:2] == ["/v1/chat/completions"] * 2 and "/v1/embeddings" in paths
    assert len(worker.find("started", jobId=job.job_id)) == 1
    worker.stop()

    start_worker(STORAGE_URL=settings.storage_url, JOB_TOKEN_BUDGET="1000",
                 **openai_env(fake_openai))
    over = queue_document(queues, store, settings, manuals / "R-data.pdf", "R-data.pdf",
                          options=AI)
    failed = wait_finished(queues, over.job_id)
    assert failed.state == "failed" and failed.attemptsMade == 1
    assert "token budget exceeded" in (failed.failedReason or "")
    assert manifest(store, over.document_id)["error"]["type"] == "BudgetExceededError"


# --- recovery from checkpoints -------------------------------------------------------------


def test_sigkill_during_extraction_recovers_with_identical_outputs(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    manuals: Path,
) -> None:
    big = manuals / "fullrefman.pdf"
    env = {"STORAGE_URL": settings.storage_url, "CPU_WORKERS": "1", **FAST_RECOVERY}
    doomed = start_worker(**env)
    first = queue_document(queues, store, settings, big, big.name, options=EMBEDDINGS)
    check_completed(store, wait_finished(queues, first.job_id, timeout=90), LOCAL_DIMENSIONS)
    reference = outputs(store, first.document_id)

    # A reprocess of the same document starts afresh: killed while extracting, it resumes.
    again = queue_document(queues, store, settings, big, big.name, document_id=first.document_id,
                           reprocess=True, options=EMBEDDINGS)
    progress = wait_progress(queues, again.job_id, at_least=12)
    assert progress < 50, "extraction ended before the kill"
    doomed.process.kill()
    doomed.wait_exit()
    rescuer = start_worker(**env)
    finished = wait_finished(queues, again.job_id, timeout=90)
    rescuer.wait_event("completed", jobId=again.job_id)  # its log lines come in batches
    check_completed(store, finished, LOCAL_DIMENSIONS)
    assert outputs(store, again.document_id) == reference
    assert rescuer.find("started", jobId=again.job_id)
    assert len(rescuer.find("completed", jobId=again.job_id)) == 1
    assert not doomed.find("completed", jobId=again.job_id)
    assert stage_events(rescuer, again.job_id)["extract"] is False  # killed mid-stage: redone


def test_sigkill_during_embeddings_reuses_extraction_and_analysis(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    fake_openai: FakeOpenAI, manuals: Path,
) -> None:
    env = {"STORAGE_URL": settings.storage_url, **FAST_RECOVERY, **openai_env(fake_openai)}
    doomed = start_worker(**env)
    manual = manuals / "R-intro.pdf"
    first = queue_document(queues, store, settings, manual, manual.name, options=EVERYTHING)
    check_completed(store, wait_finished(queues, first.job_id), EMBEDDING_DIMENSIONS)
    reference = outputs(store, first.document_id)

    fake_openai.embedding_delay = 30.0  # the embeddings request hangs until the worker dies
    embedded_before = fake_openai.paths().count("/v1/embeddings")
    again = queue_document(queues, store, settings, manual, manual.name,
                           document_id=first.document_id, reprocess=True, options=EVERYTHING)
    deadline = time.monotonic() + 30
    while fake_openai.paths().count("/v1/embeddings") == embedded_before:
        assert time.monotonic() < deadline, "no embeddings request"
        time.sleep(0.02)
    assert view(queues, again.job_id).state == "active"
    doomed.process.kill()
    doomed.wait_exit()
    killed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    fake_openai.embedding_delay = 0.0
    chats_before = fake_openai.paths().count("/v1/chat/completions")

    rescuer = start_worker(**env)
    finished = wait_finished(queues, again.job_id, timeout=60)
    rescuer.wait_event("completed", jobId=again.job_id)  # its log lines come in batches
    check_completed(store, finished, EMBEDDING_DIMENSIONS)
    assert outputs(store, again.document_id) == reference
    assert stage_events(rescuer, again.job_id) == {
        "extract": True, "chunk": True, "analysis": True, "embeddings": False}
    assert fake_openai.paths().count("/v1/chat/completions") == chats_before  # no re-analysis
    assert len(rescuer.find("completed", jobId=again.job_id)) == 1
    timings = manifest(store, again.document_id)["timings"]
    assert timings["extract"]["finishedAt"] < killed_at < timings["embeddings"]["finishedAt"]
    np.testing.assert_array_equal(vectors_of(reference["embeddings.npy"]),
                                  vectors_of(outputs(store, again.document_id)["embeddings.npy"]))


# --- the HTTP API end to end ---------------------------------------------------------------


def test_upload_progress_result_and_manifest_through_the_http_api(
    redis_url: str, settings: Settings, start_worker: StartWorker, manuals: Path, tmp_path: Path,
) -> None:
    env = {"REDIS_URL": redis_url, "STORAGE_URL": settings.storage_url}
    api = start_api(env, tmp_path)
    try:
        start_worker(STORAGE_URL=settings.storage_url)
        manual = manuals / "R-exts.pdf"
        with manual.open("rb") as file:
            response = api.session.post(
                api.url("/api/documents/async-upload"), files=[("files", (manual.name, file))],
                data={"useAI": "true", "generateEmbeddings": "true"}, timeout=60)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobs"][0]["jobId"]
        seen: list[float] = []
        deadline = time.monotonic() + 60
        while True:
            job: dict[str, Any] = api.session.get(
                api.url("/api/documents/async-upload"), params={"jobId": job_id}, timeout=10
            ).json()
            seen.append(job["progress"])
            if job["state"] in ("completed", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert job["state"] == "completed", job
        assert set(job["result"]) == RESULT_KEYS and job["result"]["chunks"] > 0
        assert seen == sorted(seen) and len({p for p in seen if 0 < p < 100}) >= 2, seen
        document_id = job["result"]["documentId"]
        got = api.session.get(api.url(f"/api/documents/{document_id}"), timeout=10)
        assert got.status_code == 200
        body = got.json()
        assert body["status"] == "COMPLETED" and body["documentId"] == document_id
        assert body["counts"]["chunks"] == job["result"]["chunks"]
        assert body["options"] == {"useAI": True, "generateSummary": False,
                                   "generateEmbeddings": True}
    finally:
        api.stop()
