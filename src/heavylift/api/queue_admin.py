"""The queue admin JSON API behind /admin/queues (and for scripts and the CLI): counts, jobs by
state, one job's detail, retry, cancel, retry-all-failed, clean, pause/resume.

Counts and job lists take any key (a non-admin's list holds its own tenant's jobs only); the
detail (job data, stack traces) and every action are the operator's (`admin`: app.ROUTES)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Literal

from flask import Request, Response
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from heavylift.api.auth import principal_of
from heavylift.api.errors import ApiError, json_response, read_json
from heavylift.api.services import Services
from heavylift.queue import JobNotFoundError, JobStateError, QueueName, Queues
from heavylift.queue.cancel import CANCELLED_REASON
from heavylift.schemas import JobState, QueueCounts


class QueueSummary(BaseModel):
    name: QueueName
    counts: QueueCounts
    paused: bool


class Overview(BaseModel):
    queues: list[QueueSummary]


# The deepest job a page may reach: past it BullMQ's range offsets (and `page=1e15`) stop being
# useful and start failing inside Redis.
MAX_PAGE_OFFSET = 1_000_000


class JobsQuery(BaseModel):
    state: JobState
    page: int = Field(1, ge=1, le=MAX_PAGE_OFFSET)
    pageSize: int = Field(20, ge=1, le=100)

    @model_validator(mode="after")
    def _bounded_offset(self) -> JobsQuery:
        if self.page * self.pageSize > MAX_PAGE_OFFSET:
            # A ValueError would name no field; the 422 names `page`, the one to lower.
            raise ValidationError.from_exception_data("JobsQuery", [InitErrorDetails(
                type=PydanticCustomError("page_too_deep", "page * pageSize must be at most "
                                         "{limit}", {"limit": MAX_PAGE_OFFSET}),
                loc=("page",), input=self.page)])
        return self


class CleanRequest(BaseModel):
    # Active jobs hold locks a worker still renews: cleaning them is not offered.
    state: Literal["completed", "failed", "delayed", "waiting"]
    olderThanMs: int = Field(0, ge=0)


# Ids this system makes: BullMQ's counter, and our own `upl-<hex>` (upload events) and
# `ds-<hex>` (dataset syncs). Anything else cannot name a job and must not reach BullMQ's key
# building: `?jobId=events` addressed the queue's own `events` stream key (a 500).
_JOB_ID = re.compile(r"[0-9]{1,20}|(?:upl|ds)-[0-9a-f]{1,64}")


def job_id_of(raw: str) -> str:
    if not _JOB_ID.fullmatch(raw):
        raise JobNotFoundError(f"no job {raw[:80]!r}")
    return raw


def seed_status(request: Request, svc: Services, queue: QueueName) -> Response:
    """The seed's status routes: `?jobId=ID` -> the job view (404 for another tenant's job, as
    for an unknown one); without it the queue's counts."""
    raw = request.args.get("jobId")
    if raw is None:
        return json_response(svc.queues.run(lambda q: q.counts(queue)).model_dump())
    job_id, tenant = job_id_of(raw), principal_of(request).scope
    return json_response(svc.queues.run(lambda q: q.view(queue, job_id, tenant)).model_dump())


def queue_named(name: str, status: int = 404) -> QueueName:
    try:
        return QueueName(name)
    except ValueError:
        names = ", ".join(QueueName)
        raise ApiError(status, "unknown_queue", f"no queue {name!r}; queues: {names}",
                       "queue" if status == 400 else None) from None


async def overview_of(q: Queues) -> Overview:
    async def summary(name: QueueName) -> QueueSummary:
        return QueueSummary(name=name, counts=await q.counts(name), paused=await q.is_paused(name))

    return Overview(queues=list(await asyncio.gather(*(summary(name) for name in QueueName))))


def overview(request: Request, svc: Services) -> Response:
    """GET /api/queues: every queue's counts by state and whether it is paused."""
    return json_response(svc.queues.run(overview_of).model_dump())


def jobs(request: Request, svc: Services, queue: str) -> Response:
    """GET /api/queues/<queue>/jobs?state=&page=&pageSize=: one page, newest first (for a
    non-admin key, of its tenant's jobs: Queues.page)."""
    name = queue_named(queue)
    query = JobsQuery.model_validate(request.args.to_dict())
    tenant = principal_of(request).scope
    page = svc.queues.run(lambda q: q.page(name, query.state, query.page, query.pageSize,
                                           tenant))
    return json_response(page.model_dump())


def job(request: Request, svc: Services, queue: str, job_id: str) -> Response:
    """GET /api/queues/<queue>/jobs/<id>: data, progress, result, stacktrace, attempts..."""
    name, job_id = queue_named(queue), job_id_of(job_id)
    return json_response(svc.queues.run(lambda q: q.detail(name, job_id)).model_dump())


def retry(request: Request, svc: Services, queue: str, job_id: str) -> Response:
    """POST /api/queues/<queue>/jobs/<id>/retry: a failed job runs again (409 otherwise)."""
    name, job_id = queue_named(queue), job_id_of(job_id)
    view = svc.queues.run(lambda q: q.retry(name, job_id))
    return json_response({"success": True, "job": view.model_dump()})


# How long a cancel waits for the worker holding the job to stop it (normally milliseconds: the
# worker hears it over pub/sub, else within its 0.5 s mark check); after that 202, still active.
CANCEL_WAIT_S = 3.0
_CANCEL_POLL_S = 0.05


def cancel(request: Request, svc: Services, queue: str, job_id: str) -> Response:
    """POST /api/queues/<queue>/jobs/<id>/cancel: a waiting or running job fails as "cancelled",
    not retried; 409 once it has finished (also when it finished before the cancel reached it)."""
    name, job_id = queue_named(queue), job_id_of(job_id)
    view = svc.queues.run(lambda q: q.cancel(name, job_id))
    deadline = time.monotonic() + CANCEL_WAIT_S
    while view.state not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(_CANCEL_POLL_S)
        view = svc.queues.run(lambda q: q.view(name, job_id))
    if view.state not in ("completed", "failed"):  # the holder will stop it (or the next one)
        return json_response({"success": True, "job": view.model_dump()}, 202)
    if view.state == "completed" or view.failedReason != CANCELLED_REASON:
        svc.queues.run(lambda q: q.clear_cancel(name, job_id))
        raise JobStateError(f"job {job_id} {view.state} before the cancel reached it")
    return json_response({"success": True, "job": view.model_dump()})


def retry_failed(request: Request, svc: Services, queue: str) -> Response:
    """POST /api/queues/<queue>/retry-failed."""
    name = queue_named(queue)
    return json_response({"success": True, "retried": svc.queues.run(
        lambda q: q.retry_all_failed(name))})


def clean(request: Request, svc: Services, queue: str) -> Response:
    """POST /api/queues/<queue>/clean {"state": "completed", "olderThanMs": 3600000}."""
    name = queue_named(queue)
    body = CleanRequest.model_validate(read_json(request))
    removed = svc.queues.run(lambda q: q.clean(name, body.state, body.olderThanMs))
    return json_response({"success": True, "removed": removed})


def pause(request: Request, svc: Services, queue: str) -> Response:
    """POST /api/queues/<queue>/pause: workers finish active jobs and take no new ones."""
    return _set_paused(svc, queue_named(queue), True)


def resume(request: Request, svc: Services, queue: str) -> Response:
    """POST /api/queues/<queue>/resume."""
    return _set_paused(svc, queue_named(queue), False)


def _set_paused(svc: Services, name: QueueName, paused: bool) -> Response:
    async def apply(q: Queues) -> Any:
        await (q.pause(name) if paused else q.resume(name))

    svc.queues.run(apply)
    return json_response({"success": True, "queue": name, "paused": paused})
