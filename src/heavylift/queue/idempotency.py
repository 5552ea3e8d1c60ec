"""Idempotency keys in Redis: the same request (an Idempotency-Key header, or the same content
and options) maps to the job that already serves it instead of queueing a second one."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from heavylift.queue.blocking import BlockingQueues
from heavylift.queue.client import Queues, own_key
from heavylift.queue.names import QueueName

_PENDING = "pending"


class Claim:
    """absent -> `take` (pending, short-lived) -> `complete` (the accepted upload, kept for TTL)."""

    def __init__(
        self,
        queues: BlockingQueues,
        queue: QueueName,
        key: str,
        ttl_s: int,
        pending_ttl_s: int = 120,
    ) -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.queues = queues
        self.queue = queue  # where the job it remembers lives
        self.redis_key = own_key(queues.settings, "idem", str(queue), digest)
        self.ttl_s = ttl_s
        self.pending_ttl_s = pending_ttl_s

    def existing(self) -> dict[str, Any] | None:
        """What this key already produced (with its `jobId`), if that job still exists."""

        async def lookup(q: Queues) -> dict[str, Any] | None:
            raw = await q.redis.get(self.redis_key)
            if raw is None or raw == _PENDING:
                return None
            accepted: dict[str, Any] = json.loads(raw)
            state = await q.bull(self.queue).getJobState(accepted["jobId"])
            if state == "unknown":  # cleaned since: accept the upload again
                await q.redis.delete(self.redis_key)
                return None
            return accepted

        return self.queues.run(lookup)

    def take(self) -> bool:
        async def claim(q: Queues) -> bool:
            return bool(await q.redis.set(self.redis_key, _PENDING, nx=True,
                                          ex=self.pending_ttl_s))

        return self.queues.run(claim)

    def release(self) -> None:
        async def drop(q: Queues) -> None:
            await q.redis.delete(self.redis_key)

        self.queues.run(drop)

    def complete(self, accepted: dict[str, Any]) -> None:
        async def store(q: Queues) -> None:
            await q.redis.set(self.redis_key, json.dumps(accepted), ex=self.ttl_s)

        self.queues.run(store)
