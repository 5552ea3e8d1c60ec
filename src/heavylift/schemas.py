"""Pydantic models of what crosses a boundary: job views, queue counts, pages of jobs.

Field names are the Bull seed's (camelCase) because existing clients read them verbatim.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer

JobState = Literal["waiting", "active", "completed", "failed", "delayed"]
JOB_STATES: tuple[JobState, ...] = ("waiting", "active", "completed", "failed", "delayed")


class QueueCounts(BaseModel):
    """Bull's counts; prioritized and paused jobs are waiting from a user's point of view."""

    waiting: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    delayed: int = 0


class JobView(BaseModel):
    """The seed's job shape; `failedReason`, `attemptsMade` and `stalls` appear only when they
    apply (`stalls`: times the job's worker died or lost its lock, which uses no attempt)."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: JobState
    progress: float | int | dict[str, Any]
    result: Any = None
    createdAt: int
    processedAt: int | None = None
    finishedAt: int | None = None
    failedReason: str | None = None
    attemptsMade: int | None = None
    stalls: int | None = None

    @model_serializer(mode="wrap")
    def _drop_absent_extras(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for optional in ("failedReason", "attemptsMade", "stalls"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return data


class JobDetail(JobView):
    """Everything the dashboard shows about one job."""

    queue: str
    name: str
    data: Any = None
    priority: int = 0
    attempts: int = 1
    stacktrace: list[str] = []


class JobPage(BaseModel):
    state: JobState
    page: int
    pageSize: int
    total: int
    jobs: list[JobView]


def first_problem(error: ValidationError) -> tuple[str | None, str]:
    """(field, message) of a validation error's first problem, for one-line answers."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first.get("loc") or ()) or None
    return field, str(first.get("msg", "invalid value")).removeprefix("Value error, ")
