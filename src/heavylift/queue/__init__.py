"""heavylift's queue layer over bullmq (async `Queues`, sync `BlockingQueues`)."""

from heavylift.queue.blocking import BlockingQueues
from heavylift.queue.client import (
    JobNotFoundError,
    JobStateError,
    Queues,
    QueueUnavailableError,
    bull_options,
    job_options,
    own_key,
    redis_client,
)
from heavylift.queue.kinds import JobKind
from heavylift.queue.names import Priority, QueueName

__all__ = [
    "BlockingQueues",
    "JobKind",
    "JobNotFoundError",
    "JobStateError",
    "Priority",
    "QueueName",
    "QueueUnavailableError",
    "Queues",
    "bull_options",
    "job_options",
    "own_key",
    "redis_client",
]
