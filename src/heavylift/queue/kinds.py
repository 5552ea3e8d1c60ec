"""What a job kind declares to the queue layer and the worker: no kind is named here."""

from __future__ import annotations

from dataclasses import dataclass

from heavylift.queue.names import QueueName


@dataclass(frozen=True)
class JobKind:
    """One kind of job: its queue, its BullMQ job name, and its processor as
    "module:function", which the worker imports on the first job of that kind (so producers,
    the API among them, never import worker code)."""

    queue: QueueName
    name: str
    processor: str
