"""Prometheus metrics on the worker's HTTP port (/metrics).

`heavylift_queue_backlog` (waiting + prioritized + paused + delayed) is the figure to scale
workers on: every heavylift job has a priority, so BullMQ keeps waiting jobs in its `prioritized`
set and a scaler that reads only the wait list would see an empty queue.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from heavylift.queue import QueueName, Queues

REGISTRY = CollectorRegistry()

JOBS_COMPLETED = Counter("heavylift_jobs_completed", "Jobs completed", ["queue"],
                         registry=REGISTRY)
JOBS_FAILED = Counter("heavylift_jobs_failed", "Job attempts that failed (retried or final)",
                      ["queue", "final"], registry=REGISTRY)
JOBS_RETRIED = Counter("heavylift_jobs_retried", "Failed attempts that will be retried",
                       ["queue"], registry=REGISTRY)
JOB_SECONDS = Histogram(
    "heavylift_job_duration_seconds", "Processing time per attempt", ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
ACTIVE_JOBS = Gauge("heavylift_active_jobs", "Jobs this worker is running", ["queue"],
                    registry=REGISTRY)
QUEUE_DEPTH = Gauge("heavylift_queue_depth", "Jobs by BullMQ state", ["queue", "state"],
                    registry=REGISTRY)
QUEUE_BACKLOG = Gauge("heavylift_queue_backlog",
                      "Jobs not yet started: waiting + prioritized + paused + delayed",
                      ["queue"], registry=REGISTRY)
DOCUMENT_PAGES = Counter("heavylift_document_pages", "PDF/text pages extracted (rate = pages/s)",
                         registry=REGISTRY)
DOCUMENT_OCR_PAGES = Counter("heavylift_document_ocr_pages",
                             "Pages OCR'd with Tesseract (rate = pages/s)", registry=REGISTRY)
DATASET_ROWS = Counter("heavylift_dataset_rows", "Dataset rows written (rate = rows/s)",
                       registry=REGISTRY)

_BACKLOG_STATES = ("waiting", "prioritized", "paused", "delayed")
_STATES = (*_BACKLOG_STATES, "active", "completed", "failed")


async def refresh_queue_depth(queues: Queues, names: list[QueueName]) -> None:
    """Read the counts from Redis at scrape time (cheap: one Lua call per queue)."""
    for name in names:
        counts = await queues.bull(name).getJobCounts(*_STATES)
        for state in _STATES:
            QUEUE_DEPTH.labels(str(name), state).set(counts[state])
        QUEUE_BACKLOG.labels(str(name)).set(sum(counts[s] for s in _BACKLOG_STATES))


def exposition() -> bytes:
    return generate_latest(REGISTRY)
