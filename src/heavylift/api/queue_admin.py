"""The queue admin JSON API behind /admin/queues (and for scripts and the CLI): counts, jobs by
state, one job's detail, retry, retry-all-failed, clean, pause/resume."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from flask import Request, Response
from pydantic import BaseModel, Field

from heavylift.api.errors import ApiError, json_response, read_json
from heavylift.api.services import Services
from heavylift.queue import QueueName, Queues
from heavylift.schemas import JobState, QueueCounts


class QueueSummary(BaseModel):
    name: QueueName
    counts: QueueCounts
    paused: bool


class Overview(BaseModel):
    queues: list[QueueSummary]


class JobsQuery(BaseModel):
    state: JobState
    page: int = Field(1, ge=1)
    pageSize: int = Field(20, ge=1, le=100)


class CleanRequest(BaseModel):
    # Active jobs hold locks a worker still renews: cleaning them is not offered.
    state: Literal["completed", "failed", "delayed", "waiting"]
    olderThanMs: int = Field(0, ge=0)


def seed_status(request: Request, svc: Services, queue: QueueName) -> Response:
    """The seed's status routes: `?jobId=ID` -> the job view; without it the queue's counts."""
    job_id = request.args.get("jobId")
    if job_id is None:
        return json_response(svc.queues.run(lambda q: q.counts(queue)).model_dump())
    return json_response(svc.queues.run(lambda q: q.view(queue, job_id)).model_dump())


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
    """GET /api/queues/<queue>/jobs?state=&page=&pageSize=: one page, newest first."""
    name = queue_named(queue)
    query = JobsQuery.model_validate(request.args.to_dict())
    page = svc.queues.run(lambda q: q.page(name, query.state, query.page, query.pageSize))
    return json_response(page.model_dump())


def job(request: Request, svc: Services, queue: str, job_id: str) -> Response:
    """GET /api/queues/<queue>/jobs/<id>: data, progress, result, stacktrace, attempts..."""
    name = queue_named(queue)
    return json_response(svc.queues.run(lambda q: q.detail(name, job_id)).model_dump())


def retry(request: Request, svc: Services, queue: str, job_id: str) -> Response:
    """POST /api/queues/<queue>/jobs/<id>/retry: a failed job runs again (409 otherwise)."""
    name = queue_named(queue)
    view = svc.queues.run(lambda q: q.retry(name, job_id))
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
