"""Peak memory of the deployed worker on real documents, measured from outside.

    python -m bench.worker_memory [--pdf PATH ...] [--cpu-workers 2] [--storage file|gs ...]

`heavylift-worker` (the worker image's command) runs as a child with a private redis-server,
CPU_WORKERS processes and, in turn, file:// storage and gs:// storage on fake-gcs-server
(production's backend: its client library is ~27 MB of the worker's own process). Each document
is queued as the API queues it (local embeddings, no AI), after a warm-up document (R-data.pdf:
the pool's processes exist and have imported the stages' modules, as in a worker that has run a
job). The parent samples the RSS of the worker and every descendant (its process pool, the
pool's resource tracker) every 10 ms (`bench._rss.PeakRss`, with the kernel's high-water marks)
and reports the peak of the sum, from queueing to the job's end, beside the job's wall time.

Default documents: LilyPond's three manuals joined (45 MB, 1,799 pages), R's fullrefman.pdf, and
24 of fullrefman's pages scanned at 200 dpi (every page goes through OCR).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench._rss import PeakRss
from bench.documents import page_count
from heavylift.documents.job import UploadOptions
from heavylift.queue import BlockingQueues
from heavylift.schemas import JobView
from heavylift.settings import Settings
from heavylift.storage import ObjectStore, open_store
from local.launch import RedisServer, child_env, free_port, port_open, spawn, stop, wait_for
from tests.doc_jobs import queue_document, wait_finished
from tests.pdf_fixtures import large_manual, real_manuals, scanned_pdf
from tests.storage_servers import BUCKET, FakeGcsServer

OPTIONS = UploadOptions(useAI=False, generateSummary=False, generateEmbeddings=True)
JOB_TIMEOUT_S = 600.0
SCAN_PAGES = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pdf", type=Path, action="append", help="repeatable")
    parser.add_argument("--cpu-workers", type=int, default=2)
    parser.add_argument("--storage", choices=["file", "gs"], action="append",
                        help="repeatable; default: both")
    args = parser.parse_args()
    manuals = real_manuals()
    with tempfile.TemporaryDirectory(prefix="hl-worker-rss-") as scratch:
        documents = args.pdf or [large_manual(), manuals / "fullrefman.pdf", _scan(
            manuals / "fullrefman.pdf", Path(scratch) / "fullrefman-scan.pdf")]
        print(f"heavylift-worker, CPU_WORKERS={args.cpu_workers}, local embeddings, after a "
              "warm-up document\n")
        print("| storage | document | MB | pages | job seconds | result | "
              "peak RSS, worker + pool (MB) |")
        print("|---|---|---:|---:|---:|---|---:|")
        for backend in args.storage or ["file", "gs"]:
            with _storage(Path(scratch), backend) as storage, \
                    _worker(Path(scratch), args.cpu_workers, storage) as (queues, store, pid):
                _run(queues, store, manuals / "R-data.pdf")
                for pdf in documents:
                    with PeakRss(pid, every_s=0.01) as sampled:
                        started = time.perf_counter()
                        view = _run(queues, store, pdf)
                        seconds = time.perf_counter() - started
                    result = (f"{view.result['chunks']} chunks" if view.state == "completed"
                              else f"{view.state}: {view.failedReason}")
                    print(f"| {backend} | {pdf.name} | {pdf.stat().st_size / 2**20:.1f} | "
                          f"{page_count(pdf)} | {seconds:.2f} | {result} | "
                          f"{sampled.peak / 2**20:.0f} |", flush=True)


@contextmanager
def _storage(scratch: Path, backend: str) -> Iterator[dict[str, str]]:
    """The storage settings of one backend (fake-gcs-server started for gs://)."""
    if backend == "file":
        yield {"STORAGE_URL": f"file://{scratch / 'storage'}"}
        return
    server = FakeGcsServer(scratch / "fake-gcs.log")
    server.start()
    try:
        requests.post(f"{server.url}/storage/v1/b", json={"name": BUCKET},
                      timeout=10).raise_for_status()
        os.environ["STORAGE_EMULATOR_HOST"] = server.url  # for this process's client too
        yield {"STORAGE_URL": f"gs://{BUCKET}/bench", "STORAGE_EMULATOR_HOST": server.url}
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        server.stop()


@contextmanager
def _worker(
    scratch: Path, cpu_workers: int, storage: dict[str, str]
) -> Iterator[tuple[BlockingQueues, ObjectStore, int]]:
    """The worker as a child process (its console script), and a producer's view of it."""
    redis = RedisServer(scratch / "redis", appendonly=False).start()
    port = free_port()
    env = child_env(REDIS_URL=redis.url, PORT=str(port), CPU_WORKERS=str(cpu_workers),
                    LOG_LEVEL="WARNING", **storage)
    script = Path(sys.executable).with_name("heavylift-worker")
    with (scratch / "worker.log").open("ab") as log:
        process = spawn([str(script)], env, log)
    settings = Settings(redis_url=redis.url, storage_url=storage["STORAGE_URL"])
    queues = BlockingQueues(settings)
    try:
        wait_for(lambda: port_open(port), timeout=60)
        yield queues, open_store(settings.storage_url, settings), process.pid
    finally:
        queues.close()
        stop(process)
        redis.stop()


def _run(queues: BlockingQueues, store: ObjectStore, pdf: Path) -> JobView:
    job = queue_document(queues, store, queues.settings, pdf, pdf.name, options=OPTIONS)
    return wait_finished(queues, job.job_id, timeout=JOB_TIMEOUT_S)


def _scan(source: Path, target: Path) -> Path:
    step = max(1, page_count(source) // SCAN_PAGES)
    return scanned_pdf(source, list(range(1, step * SCAN_PAGES + 1, step))[:SCAN_PAGES], target)


if __name__ == "__main__":
    main()
