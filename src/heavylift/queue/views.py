"""Turn bullmq jobs into the seed's JSON shapes."""

from __future__ import annotations

from typing import Any

from heavylift.schemas import JobDetail, JobState, JobView

# bullmq state -> the user's vocabulary (Bull's five states).
_STATE_MAP: dict[str, JobState] = {
    "waiting": "waiting",
    "prioritized": "waiting",
    "paused": "waiting",
    "waiting-children": "active",  # a flow's parent (a distributed sync): its children run
    "active": "active",
    "completed": "completed",
    "failed": "failed",
    "delayed": "delayed",
}


def user_state(bull_state: str) -> JobState | None:
    """None means bullmq does not know the job ("unknown")."""
    return _STATE_MAP.get(bull_state)


def _ms(value: Any) -> int | None:
    return int(value) if value else None


def _view_fields(job: Any, state: JobState) -> dict[str, Any]:
    failed = state == "failed"
    return {
        "id": str(job.id),
        "state": state,
        # A completed job is done whatever its processor last reported (saves a write per job).
        "progress": 100 if state == "completed" else job.progress,
        "result": job.returnvalue if state == "completed" else None,
        "createdAt": int(job.timestamp),
        "processedAt": _ms(job.processedOn),
        "finishedAt": _ms(job.finishedOn),
        "failedReason": job.failedReason if failed else None,
        "attemptsMade": int(job.attemptsMade) if failed or job.attemptsMade else None,
        # bullmq's `stc`: times the job was orphaned (its worker died or lost the lock) and
        # re-queued. Stalls are not attempts; shown only when there were any.
        "stalls": int(job.stalledCounter) or None,
    }


def job_view(job: Any, state: JobState) -> JobView:
    return JobView(**_view_fields(job, state))


def job_detail(job: Any, state: JobState, queue: str) -> JobDetail:
    return JobDetail(
        **_view_fields(job, state),
        queue=queue,
        name=job.name,
        data=job.data,
        priority=int(job.priority or 0),
        attempts=int(job.opts.get("attempts", 1)),
        stacktrace=list(job.stacktrace or []),
    )
