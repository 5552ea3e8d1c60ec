"""Shorthands for tests that drive the diagnostics queue through the sync facade."""

from __future__ import annotations

from heavylift.queue import BlockingQueues, Priority, QueueName

DIAG = QueueName.DIAGNOSTICS


def add(
    queues: BlockingQueues, name: str, priority: Priority = Priority.REGULAR, **data: object
) -> str:
    return queues.run(lambda q: q.add(DIAG, name, dict(data), priority))


def state(queues: BlockingQueues, job_id: str) -> str:
    return queues.run(lambda q: q.view(DIAG, job_id)).state
