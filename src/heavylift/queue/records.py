"""Durable records of finished jobs, so a result stays findable after BullMQ removes the job.

BullMQ keeps only the newest KEEP_COMPLETED / KEEP_FAILED finished jobs (removeOnComplete /
removeOnFail), so a busy queue forgets a job minutes after it finished while its client may
still be polling for it. When a job reaches a terminal state (completed, or failed with no retry
left) the worker writes its view here, one small JSON value per job that expires after
RESULT_TTL_S; `Queues.view` / `Queues.detail` answer from it once BullMQ no longer knows the job.

The record is written by the processor just before it hands its outcome back to BullMQ, so it
exists before the job can be removed. A live BullMQ job always wins over its record (a retried
job is read from BullMQ until it finishes again and its record is replaced).

Knows no job kind: any queue's job is recorded the same way.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from bullmq.custom_errors import UnrecoverableError

from heavylift.queue.views import job_detail
from heavylift.schemas import JobDetail, JobView


def will_retry(job: Any, error: BaseException) -> bool:
    """Whether BullMQ will try the job again after `error` (its own rule in Job.moveToFailed)."""
    attempts = int(job.opts.get("attempts", 1))
    return int(job.attemptsMade) + 1 < attempts and not isinstance(error, UnrecoverableError)


def finished_record(
    job: Any, queue: str, result: Any = None, error: BaseException | None = None
) -> JobDetail:
    """The view BullMQ is about to store for `job`, written before it does (so the fields BullMQ
    sets when it finishes a job, finishedOn and the attempt count, are set here the same way)."""
    detail = job_detail(job, "failed" if error is not None else "completed", queue)
    update: dict[str, Any] = {
        "finishedAt": int(time.time() * 1000),
        "attemptsMade": int(job.attemptsMade) + 1,
    }
    if error is None:
        update["result"] = result
    else:
        update["failedReason"] = str(error) or type(error).__name__
        update["stacktrace"] = [*detail.stacktrace, "".join(traceback.format_exception(error))]
    return detail.model_copy(update=update)


def as_view(record: JobDetail) -> JobView:
    """The seed's job view of a record (the detail minus the dashboard's extra fields)."""
    return JobView(**{name: getattr(record, name) for name in JobView.model_fields})


async def save(redis: Any, key: str, record: JobDetail, ttl_s: int) -> None:
    await redis.set(key, record.model_dump_json(), ex=ttl_s)


async def load(redis: Any, key: str) -> JobDetail | None:
    raw = await redis.get(key)
    return JobDetail.model_validate_json(raw) if raw is not None else None
