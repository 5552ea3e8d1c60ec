"""`Queues` for code outside its event loop: request threads (`run`) and the api's own event loop
(`arun`). One event loop thread per process owns the Redis connections, so every request reuses
them instead of connecting per call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import TypeVar

from heavylift.queue.client import REDIS_DOWN_ERRORS, Queues, QueueUnavailableError
from heavylift.settings import Settings

T = TypeVar("T")


class Breaker:
    """Once Redis failed, requests get QueueUnavailableError at once for `open_s` instead of each
    waiting the full op timeout (threads piling up on a dead Redis). Then one request at a time
    tries Redis (half-open): success closes the breaker, failure opens it again."""

    def __init__(self, open_s: float) -> None:
        self.open_s = open_s
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._trial = False  # a half-open try is under way

    def enter(self) -> None:
        with self._lock:
            if self._open_until is None:
                return
            wait = self._open_until - time.monotonic()
            if wait <= 0 and not self._trial:
                self._trial = True
                return
        raise QueueUnavailableError(
            f"Redis unavailable (failed recently; next try in {max(wait, 0):.1f}s)")

    def failed(self) -> None:
        if self.open_s <= 0:
            return
        with self._lock:
            self._open_until, self._trial = time.monotonic() + self.open_s, False

    def succeeded(self) -> None:
        with self._lock:
            self._open_until, self._trial = None, False


class BlockingQueues:
    """Run `Queues` operations from any thread: `queues.run(lambda q: q.counts(name))`."""

    def __init__(self, settings: Settings, timeout_s: float = 5.0,
                 breaker_s: float = 0.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.breaker = Breaker(breaker_s)
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
        """Run one operation from a thread; Redis down or too slow raises QueueUnavailableError
        (at once while the breaker is open)."""
        with self._breaker_guard():
            future = self._submit(operation)
            try:
                return future.result(timeout=self.timeout_s)
            except FutureTimeout:
                future.cancel()
                raise self._too_slow() from None
            except REDIS_DOWN_ERRORS as error:
                raise QueueUnavailableError(f"Redis unavailable: {error}") from None

    async def arun(self, operation: Callable[[Queues], Awaitable[T]]) -> T:
        """`run` for a coroutine on another event loop: it awaits, holding no thread."""
        with self._breaker_guard():
            future = self._submit(operation)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
            except TimeoutError:
                future.cancel()
                raise self._too_slow() from None
            except REDIS_DOWN_ERRORS as error:
                raise QueueUnavailableError(f"Redis unavailable: {error}") from None

    @contextmanager
    def _breaker_guard(self) -> Iterator[None]:
        self.breaker.enter()
        try:
            yield
        except QueueUnavailableError:
            self.breaker.failed()
            raise
        except BaseException:
            self.breaker.succeeded()  # Redis answered; the operation itself failed
            raise
        self.breaker.succeeded()

    def _submit(self, operation: Callable[[Queues], Awaitable[T]]) -> Future[T]:
        loop, queues = self._ensure_loop()

        async def call() -> T:
            return await operation(queues)

        return asyncio.run_coroutine_threadsafe(call(), loop)

    def _too_slow(self) -> QueueUnavailableError:
        return QueueUnavailableError(f"Redis did not answer within {self.timeout_s:g}s")

    def close(self) -> None:
        with self._lock:
            loop, queues = self._loop, self._queues
            self._loop = self._queues = None
        if loop is None or queues is None:
            return
        asyncio.run_coroutine_threadsafe(queues.close(), loop).result(timeout=self.timeout_s)
        loop.call_soon_threadsafe(loop.stop)
