"""What `POST /api/datasets/sync` calls (synchronous; the route only maps errors to statuses).

    spec = parse_request(body, settings)          # SyncRequestError -> 400/422 naming the field
    answer = start_sync(settings, queues, spec)   # SyncCompleted (200) or SyncQueued (202)

`start_sync` counts first (a given totalCount is never trusted): below SYNC_THRESHOLD the sync
runs inline, at or above it is queued. SourceErrors map to 404 (SourceNotFoundError), 400
(SourceQueryError), 403 (SourceAccessError), 503 (SourceUnavailableError).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from heavylift.datasets.clients import open_clients
from heavylift.datasets.pipeline import JOB_NAME, SyncResult, run_blocking
from heavylift.datasets.request import SyncRequestError, SyncSpec, parse_request
from heavylift.datasets.source import count_rows as _count_rows
from heavylift.queue import BlockingQueues, Priority, QueueName
from heavylift.settings import Settings

__all__ = [
    "SyncCompleted",
    "SyncPlan",
    "SyncQueued",
    "SyncRequestError",
    "count_rows",
    "enqueue",
    "parse_request",
    "plan",
    "run_inline",
    "start_sync",
]


class SyncPlan(BaseModel):
    chunkSize: int
    chunkCount: int


class SyncCompleted(BaseModel):
    """200: the sync ran inline."""

    success: Literal[True] = True
    mode: Literal["inline"] = "inline"
    totalCount: int
    result: SyncResult


class SyncQueued(BaseModel):
    """202: the sync is a `datasets` job; poll `GET /api/datasets/sync?jobId=...`."""

    success: Literal[True] = True
    mode: Literal["queued"] = "queued"
    jobId: str
    totalCount: int
    chunkSize: int
    plannedChunks: int


def count_rows(settings: Settings, spec: SyncSpec) -> int:
    clients = open_clients(settings)
    try:
        return _count_rows(clients, spec)
    finally:
        clients.close()


def plan(spec: SyncSpec, total: int) -> SyncPlan:
    return SyncPlan(chunkSize=spec.chunkSize, chunkCount=-(-total // spec.chunkSize))


def run_inline(settings: Settings, spec: SyncSpec) -> SyncResult:
    """Run the same source -> sink sync in this thread, under a fresh sync id."""
    return run_blocking(settings, spec, f"inline-{uuid.uuid4().hex}")


def enqueue(queues: BlockingQueues, spec: SyncSpec, total: int) -> str:
    """Queue the sync; the job id is unique (it names the sync's storage folder and table)."""
    job_id = f"ds-{uuid.uuid4().hex}"
    data = {**spec.job_data(), "totalCount": total}
    return queues.run(
        lambda q: q.add(QueueName.DATASETS, JOB_NAME, data, Priority.REGULAR, job_id=job_id)
    )


def start_sync(
    settings: Settings, queues: BlockingQueues, spec: SyncSpec
) -> SyncCompleted | SyncQueued:
    total = count_rows(settings, spec)
    if total < settings.sync_threshold:
        return SyncCompleted(totalCount=total, result=run_inline(settings, spec))
    job_id = enqueue(queues, spec, total)
    planned = plan(spec, total)
    return SyncQueued(
        jobId=job_id, totalCount=total, chunkSize=planned.chunkSize,
        plannedChunks=planned.chunkCount,
    )
