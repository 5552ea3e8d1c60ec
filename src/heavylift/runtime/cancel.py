"""The worker's half of cancelling a running job (queue.cancel): one pub/sub subscription per
worker process hears `<queue>:<jobId>` at once, and the cancel marks of the jobs this process holds
are read every CHECK_S as a backstop (a message missed while the subscription reconnected, or a
job taken just after its mark was published)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from heavylift.queue import cancel
from heavylift.queue.client import AnyRedis
from heavylift.runtime.context import JobContext

log = logging.getLogger("heavylift.worker")

CHECK_S = 0.5


class CancelWatch:
    def __init__(
        self,
        client: AnyRedis,
        prefix: str,
        held: Callable[[], Iterable[JobContext]],
        stop: Callable[[JobContext], None],
    ) -> None:
        self.client, self.prefix = client, prefix
        self.held, self.stop = held, stop  # the jobs this process holds; how to stop one

    async def run(self) -> None:
        """Until cancelled. Redis errors only pause it: the worker's own watch handles outages."""
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(cancel.channel(self.prefix))
                    await self._listen(pubsub)
            except (OSError, aioredis.RedisError) as error:
                log.debug("cancel watch interrupted", extra={"event": "cancel_watch",
                                                             "reason": str(error)})
                await asyncio.sleep(CHECK_S)

    async def _listen(self, pubsub: Any) -> None:
        checked = 0.0
        while True:
            message = await pubsub.get_message(timeout=CHECK_S)
            if message is not None and message.get("type") == "message":
                self._stop_held(*cancel.parse_message(message["data"]))
            if time.monotonic() - checked >= CHECK_S:
                await self._check_marks()
                checked = time.monotonic()

    def _stop_held(self, queue: str, job_id: str) -> None:
        for ctx in list(self.held()):
            if str(ctx.queue) == queue and ctx.id == job_id:
                self.stop(ctx)

    async def _check_marks(self) -> None:
        held = list(self.held())
        if not held:
            return
        marks = await self.client.mget(
            [cancel.mark_key(self.prefix, str(ctx.queue), ctx.id) for ctx in held])
        for ctx, mark in zip(held, marks, strict=True):
            if mark is not None:
                self.stop(ctx)


async def clear_mark(client: AnyRedis, prefix: str, ctx: JobContext) -> None:
    """Once the job has failed as cancelled: a retry of it must not be cancelled again."""
    with contextlib.suppress(OSError, aioredis.RedisError):
        await client.delete(cancel.mark_key(prefix, str(ctx.queue), ctx.id))
