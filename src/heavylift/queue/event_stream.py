"""Reading BullMQ's per-queue event streams (`<prefix>:<queue>:events`) on the api's event loop.

Every state change and progress update of a job is XADDed there by bullmq's own Lua scripts, so a
reader that XREADs with BLOCK wakes on the next event and otherwise costs one command per block
timeout: no polling of job hashes. One asyncio Redis connection per reader, because a blocked
XREAD holds its connection (it must not be the shared bullmq one); while it waits, it holds no
thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from heavylift.queue.client import REDIS_DOWN_ERRORS, QueueUnavailableError, redis_client
from heavylift.queue.names import QueueName
from heavylift.settings import Settings

_EMPTY_STREAM = "0-0"


@dataclass(frozen=True)
class QueueEvent:
    queue: QueueName
    id: str  # the stream entry id: usable as an SSE id
    fields: dict[str, str]

    @property
    def name(self) -> str:
        """bullmq's event name: added, waiting, active, progress, completed, failed, ..."""
        return self.fields.get("event", "")

    @property
    def job_id(self) -> str | None:
        return self.fields.get("jobId")


def events_key(settings: Settings, queue: QueueName) -> str:
    return f"{settings.queue_prefix}:{queue}:events"


class QueueEventReader:
    """Follows the event streams of some queues from their current end."""

    def __init__(self, settings: Settings, queues: Iterable[QueueName],
                 longest_block_s: float) -> None:
        self._queues = {events_key(settings, name): name for name in queues}
        # The socket must outwait the longest XREAD BLOCK, or a quiet stream looks like an outage.
        # On a cluster one XREAD of several streams works because they share the prefix's hash
        # tag (one slot, one node).
        self._redis = redis_client(
            settings, decode_responses=True,
            socket_timeout=longest_block_s + settings.redis_op_timeout_s,
            socket_connect_timeout=settings.redis_op_timeout_s,
        )
        self._positions: dict[str, str] = {}

    async def start_at_end(self) -> str:
        """Remember where each stream ends now; returns the (first) queue's last id. Call it
        before reading a snapshot of the jobs, so no event after the snapshot is missed."""
        try:
            for key in self._queues:
                last: Any = await self._redis.xrevrange(key, count=1)
                self._positions[key] = last[0][0] if last else _EMPTY_STREAM
        except REDIS_DOWN_ERRORS as error:
            raise QueueUnavailableError(f"Redis unavailable: {error}") from None
        return next(iter(self._positions.values()))

    async def read(self, block_s: float) -> list[QueueEvent]:
        """The events after the last ones read, waiting up to `block_s` for the first."""
        # BLOCK 0 would wait forever: at least 1 ms.
        streams: dict[Any, Any] = dict(self._positions)
        answer: Any = await self._redis.xread(streams, block=max(1, int(block_s * 1000)))
        events: list[QueueEvent] = []
        for key, entries in answer or []:
            for entry_id, fields in entries:
                events.append(QueueEvent(self._queues[key], entry_id, fields))
            if entries:
                self._positions[key] = entries[-1][0]
        return events

    async def close(self) -> None:
        await self._redis.aclose()
