"""Issue 12: a storage outage shorter than STORAGE_RETRY_S is a pause, not a failed job; when a
job does fail its FAILED manifest is still written once storage is back.

The fault is real: fake-gcs-server stopped and started again on the same port. It runs with its
filesystem backend here, so the bucket and the upload survive the restart (the memory backend
used elsewhere would lose them).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from heavylift.documents.intake import Intake
from heavylift.documents.job import (
    DocumentJobData,
    UploadOptions,
    new_document_id,
    output_key,
    upload_key,
)
from heavylift.queue import BlockingQueues
from heavylift.settings import Settings
from heavylift.storage import ObjectStore, StorageUnavailableError, open_store
from local.launch import WorkerProcess
from tests.doc_jobs import wait_finished
from tests.storage_servers import BUCKET, FakeGcsServer

NOTE = b"# Outage\n\nStorage went away for a few seconds and came back.\n" * 10


class RestartableGcs(FakeGcsServer):
    """fake-gcs-server keeping its objects on disk, beside its log."""

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("memory")] = "filesystem"
        return [*command, "-filesystem-root", str(self.log.parent / "objects")]

    def outage(self, seconds: float) -> threading.Thread:
        """Stop now; start again on the same port after `seconds` (in the background)."""
        self.stop()

        def restart() -> None:
            time.sleep(seconds)
            self.start()

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def gcs(tmp_path: Path) -> Iterator[RestartableGcs]:
    server = RestartableGcs(tmp_path / "server.log")
    server.start()
    requests.post(f"{server.url}/storage/v1/b", json={"name": BUCKET},
                  timeout=5).raise_for_status()
    yield server
    server.stop()


def gcs_env(server: RestartableGcs, **overrides: str) -> dict[str, str]:
    return {"STORAGE_URL": f"gs://{BUCKET}/outage", "STORAGE_EMULATOR_HOST": server.url,
            "NO_PROXY": "127.0.0.1", "STORAGE_TIMEOUT_S": "1", **overrides}


def store_for(server: RestartableGcs, monkeypatch: pytest.MonkeyPatch,
              settings: Settings, retry_s: float) -> ObjectStore:
    for name, value in gcs_env(server).items():
        monkeypatch.setenv(name, value)
    chosen = settings.model_copy(update={"storage_timeout_s": 1.0, "storage_retry_s": retry_s})
    return open_store(gcs_env(server)["STORAGE_URL"], chosen)


def test_a_storage_call_waits_out_an_outage_within_its_budget(
    gcs: RestartableGcs, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = store_for(gcs, monkeypatch, settings, retry_s=15)
    patient.put_bytes("before.json", b"{}")
    restarted = gcs.outage(3)
    started = time.monotonic()
    patient.put_bytes("during.json", b'{"n": 1}')  # the outage happens at a put
    waited = time.monotonic() - started
    restarted.join()
    assert waited >= 2.5, waited
    assert {info.key for info in patient.list()} == {"before.json", "during.json"}

    impatient = store_for(gcs, monkeypatch, settings, retry_s=1)
    restarted = gcs.outage(4)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError):
        impatient.info("before.json")
    assert time.monotonic() - started < 3.5  # bounded by STORAGE_RETRY_S, not the outage
    restarted.join()


StartWorker = Callable[..., WorkerProcess]


def stored_upload(store: ObjectStore, name: str) -> DocumentJobData:
    """An upload in storage and its job data, queued later (once storage is down)."""
    sha256 = hashlib.sha256(NOTE).hexdigest()
    document_id = new_document_id()
    key = upload_key(document_id, name)
    store.put_bytes(key, NOTE, "text/markdown", {"sha256": sha256})
    return DocumentJobData(documentId=document_id, objectKey=key, filename=name,
                           size=len(NOTE), options=UploadOptions(), sha256=sha256)


def test_a_job_rides_out_an_outage_and_a_failed_one_still_gets_its_manifest(
    gcs: RestartableGcs, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    start_worker: StartWorker,
) -> None:
    store = store_for(gcs, monkeypatch, settings, retry_s=15)
    once = settings.model_copy(update={"job_attempts": 1})
    queues = BlockingQueues(once)
    try:
        # Shorter than STORAGE_RETRY_S: the job's storage calls wait, no attempt is used.
        worker = start_worker(**gcs_env(gcs, STORAGE_RETRY_S="15"))
        riding = stored_upload(store, "a.md")
        restarted = gcs.outage(4)
        job_id = Intake(once, queues, store).enqueue(riding)
        done = wait_finished(queues, job_id, timeout=25)
        restarted.join()
        assert done.state == "completed" and done.attemptsMade == 1, done
        assert worker.find("storage_retry"), "the job never met the outage"
        worker.stop()

        # Longer than STORAGE_RETRY_S (4 s): the last attempt fails, and its FAILED manifest,
        # which rides out twice that, is written once storage is back. Storage is back ~4 s
        # after the attempt gave up, plus fake-gcs-server's start-up (1-2.5 s): past one more
        # STORAGE_RETRY_S (all the manifest had before it got its own), within two.
        second = start_worker(**gcs_env(gcs, STORAGE_RETRY_S="4"))
        failing = stored_upload(store, "b.md")
        restarted = gcs.outage(8.5)
        job_id = Intake(once, queues, store).enqueue(failing)
        failed = wait_finished(queues, job_id, timeout=25)
        restarted.join()
        log = "".join(second.raw[-30:])
        assert failed.state == "failed" and "unavailable" in (failed.failedReason or ""), log
        assert store.exists(output_key(failing.documentId, "manifest.json")), log
        with store.open_read(output_key(failing.documentId, "manifest.json")) as stream:
            manifest = json.loads(stream.read())
        assert manifest["status"] == "FAILED" and manifest["jobId"] == job_id
        assert manifest["error"]["type"] == "StorageUnavailableError"
    finally:
        queues.close()
