"""A synchronous facade over `Queues` for code that is not asyncio (the HTTP functions run under
gunicorn threads). One event loop thread per process owns the Redis connections, so every request
reuses them instead of connecting per call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from heavylift.queue.client import REDIS_DOWN_ERRORS, Queues, QueueUnavailableError
from heavylift.settings import Settings

T = TypeVar("T")


class BlockingQueues:
    """Run `Queues` operations from any thread: `queues.run(lambda q: q.counts(name))`."""

    def __init__(self, settings: Settings, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: Queues | None = None

    def _ensure_loop(self) -> tuple[asyncio.AbstractEventLoop, Queues]:
        with self._lock:
            if self._loop is None or self._queues is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="heavylift-queue-loop", daemon=True
                )
                thread.start()
                self._loop, self._queues = loop, Queues(self.settings)
            return self._loop, self._queues

    def run(self, operation: Callable[[Queues], Awaitable[T]]) -> T:
        """Run one operation; Redis down or too slow raises QueueUnavailableError."""
        loop, queues = self._ensure_loop()

        async def call() -> T:
            return await operation(queues)

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise QueueUnavailableError(
                f"Redis did not answer within {self.timeout_s:g}s"
            ) from None
        except REDIS_DOWN_ERRORS as error:
            raise QueueUnavailableError(f"Redis unavailable: {error}") from None

    def close(self) -> None:
        with self._lock:
            loop, queues = self._loop, self._queues
            self._loop = self._queues = None
        if loop is None or queues is None:
            return
        asyncio.run_coroutine_threadsafe(queues.close(), loop).result(timeout=self.timeout_s)
        loop.call_soon_threadsafe(loop.stop)
