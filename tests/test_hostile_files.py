"""Hostile files fail fast (issue 13): a 10 KB PDF that inflates to 4 GiB fails its job at once,
unretried, naming the limit, while a document beside it completes and the worker lives on; and
the CPU pool's memory cap, on a real process pool."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from bench._rss import PeakRss
from heavylift.documents.job import UploadOptions
from heavylift.queue import BlockingQueues
from heavylift.runtime.offload import CpuPool, PoolMemoryError
from heavylift.runtime.pool_child import Reporter
from heavylift.settings import Settings
from heavylift.storage import ObjectStore, open_store
from local.launch import WorkerProcess
from tests.doc_jobs import check_completed, manifest, queue_document, wait_finished
from tests.pdf_fixtures import GIB, bomb_pdf, text_pdf

StartWorker = Callable[..., WorkerProcess]
PLAIN = UploadOptions()


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    return open_store(settings.storage_url, settings)


@pytest.mark.parametrize(("engine", "limit"), [
    ("pypdfium2", "POOL_MEMORY_MB=512"),  # pdfium inflates in native code: the memory cap
    ("pypdf", "PDF_PAGE_DECODED_MB=64"),  # pypdf decodes under our budget
])
def test_a_decompression_bomb_fails_at_once_and_its_neighbours_complete(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    tmp_path: Path, engine: str, limit: str,
) -> None:
    content_bomb = bomb_pdf(tmp_path / "bomb.pdf", 4 * GIB, "content")
    image_bomb = bomb_pdf(tmp_path / "image-bomb.pdf", 4 * GIB, "image")
    assert content_bomb.stat().st_size < 16_000
    normal = text_pdf(tmp_path / "normal.pdf", [["A normal page beside the bomb."]] * 3)
    # One pool process: the normal document's extraction queues behind the bomb's.
    worker = start_worker(STORAGE_URL=settings.storage_url, CPU_WORKERS="1", PDF_ENGINE=engine)
    with PeakRss(worker.process.pid, every_s=0.02) as rss:
        bomb = queue_document(queues, store, settings, content_bomb, "bomb.pdf", options=PLAIN)
        beside = queue_document(queues, store, settings, normal, "normal.pdf", options=PLAIN)
        image = queue_document(queues, store, settings, image_bomb, "image.pdf", options=PLAIN)
        failed = wait_finished(queues, bomb.job_id)
        done = wait_finished(queues, beside.job_id)
        scanned = wait_finished(queues, image.job_id)

    assert failed.state == "failed", failed
    assert failed.attemptsMade == 1 < settings.job_attempts, "the bomb was retried"
    assert limit in (failed.failedReason or ""), failed.failedReason
    assert manifest(store, bomb.document_id)["error"]["message"] == failed.failedReason
    assert check_completed(store, done)["pageCount"] == 3
    assert done.attemptsMade == 1, "the neighbour lost an attempt to the bomb"
    # Text extraction does not decode images: the 4 GiB image is a page to OCR. pdfium renders
    # it for OCR within the memory cap (decoded as it is scaled down), and it is blank.
    assert scanned.state == "failed" and scanned.attemptsMade == 1, scanned
    assert scanned.failedReason == "No text found, even after OCR of 1 page."
    assert manifest(store, image.document_id)["pagesNeedingOcr"] == [1]
    assert rss.peak < GIB, f"worker processes peaked at {rss.peak >> 20} MB"

    health = requests.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=5).json()
    assert health["status"] == "ok" and worker.process.poll() is None
    after = queue_document(queues, store, settings, normal, "after.pdf", options=PLAIN)
    check_completed(store, wait_finished(queues, after.job_id))


# --- the pool's memory cap, on a real pool ------------------------------------------------


def allocate(megabytes: int, *, report: Reporter) -> int:
    return len(bytearray(megabytes << 20))


def killed_by_the_os(*, report: Reporter) -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does


def slow_square(value: int, *, report: Reporter) -> int:
    time.sleep(0.5)
    return value * value


def test_a_task_over_the_memory_cap_is_out_of_memory_and_the_pool_recovers() -> None:
    async def scenario() -> None:
        pool = CpuPool(2, memory_mb=256)
        try:
            assert await pool.run(allocate, 64) == 64 << 20  # under the cap: fine
            with pytest.raises(PoolMemoryError, match="POOL_MEMORY_MB=256"):
                await pool.run(allocate, 1024)  # Python's MemoryError in the child
            # A process the OS kills is out of memory too; a task running beside it in the other
            # pool process and one queued behind it both complete.
            beside = asyncio.ensure_future(pool.run(slow_square, 7))
            queued = [asyncio.ensure_future(pool.run(slow_square, n)) for n in (2, 3)]
            await asyncio.sleep(0.2)
            with pytest.raises(PoolMemoryError, match="POOL_MEMORY_MB=256"):
                await pool.run(killed_by_the_os)
            assert await beside == 49 and [await task for task in queued] == [4, 9]
            assert await pool.run(allocate, 16) == 16 << 20
        finally:
            pool.kill()

    asyncio.run(scenario())
