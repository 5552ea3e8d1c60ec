"""heavylift's queue layer over bullmq (async `Queues`, sync `SyncQueues`)."""

from heavylift.queue.client import (
    JobNotFoundError,
    JobStateError,
    Queues,
    QueueUnavailableError,
    bull_options,
    job_options,
)
from heavylift.queue.names import Priority, QueueName
from heavylift.queue.sync import SyncQueues

__all__ = [
    "JobNotFoundError",
    "JobStateError",
    "Priority",
    "QueueName",
    "QueueUnavailableError",
    "Queues",
    "SyncQueues",
    "bull_options",
    "job_options",
]
