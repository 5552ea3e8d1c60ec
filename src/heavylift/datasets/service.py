"""What `POST /api/datasets/sync` calls (synchronous; the route only maps errors to statuses).

    spec = parse_request(body, settings)           # SyncRequestError -> 400/422 naming the field
    answer = start_sync(resources, queues, spec)   # SyncCompleted (200) or SyncQueued (202)

`start_sync` counts first (a given totalCount is never trusted): below SYNC_THRESHOLD the sync
runs inline, at or above it is queued. SourceErrors map to 404 (SourceNotFoundError), 400
(SourceQueryError), 403 (SourceAccessError), 409 (SourceConflictError), 503
(SourceUnavailableError).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from heavylift.datasets import job
from heavylift.datasets.engine import SyncResult, run_blocking
from heavylift.datasets.request import SyncRequestError, SyncSpec, parse_request
from heavylift.datasets.source import count_rows
from heavylift.queue import BlockingQueues
from heavylift.resources import Resources

__all__ = [
    "SyncCompleted",
    "SyncPlan",
    "SyncQueued",
    "SyncRequestError",
    "count_rows",
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
    # 1: one job reads it; more: a flow of up to that many child jobs (SYNC_DISTRIBUTE_ROWS).
    plannedStreams: int


def plan(spec: SyncSpec, total: int) -> SyncPlan:
    return SyncPlan(chunkSize=spec.chunkSize, chunkCount=-(-total // spec.chunkSize))


def run_inline(resources: Resources, spec: SyncSpec) -> SyncResult:
    """Run the same source -> sink sync in this thread, under a fresh sync id."""
    return run_blocking(resources.bigquery(), resources.store, spec,
                        f"inline-{uuid.uuid4().hex}")


def start_sync(
    resources: Resources, queues: BlockingQueues, spec: SyncSpec
) -> SyncCompleted | SyncQueued:
    total = count_rows(resources.bigquery(), spec)
    if total < resources.settings.sync_threshold:
        return SyncCompleted(totalCount=total, result=run_inline(resources, spec))
    job_id = queues.run(lambda q: job.enqueue(q, spec, total))
    planned = plan(spec, total)
    return SyncQueued(
        jobId=job_id, totalCount=total, chunkSize=planned.chunkSize,
        plannedChunks=planned.chunkCount,
        plannedStreams=job.planned_streams(resources.settings, total),
    )
