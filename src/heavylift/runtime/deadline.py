"""SIGTERM must end the process within SHUTDOWN_GRACE_S + 1 s (Cloud Run kills at 10 s), even
when a job is stuck in a thread that never returns (a hung BigQuery read).

Cancelling the job's task frees the event loop, but the thread lives on, and both asyncio.run
(which joins the default executor) and interpreter exit (which joins every executor thread)
would wait for it. So the orderly shutdown runs against a deadline, and the last step gives the
default executor only the time that is left; after that the process exits with `os._exit`,
abandoning the hung threads (their jobs were already handed back). A backstop thread does the
same if the orderly shutdown itself overruns, e.g. a job blocking the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from heavylift.logs import flush_logs

log = logging.getLogger("heavylift.worker")
# Kept for the last steps (closing connections, the executor, writing the final log lines).
MARGIN_S = 0.3


class ShutdownDeadline:
    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.at: float | None = None  # monotonic; set when shutdown starts
        self._backstop: threading.Timer | None = None

    def start(self, exit_code: Callable[[], int]) -> None:
        if self.at is not None:
            return
        self.at = time.monotonic() + self.grace_s + 1.0
        self._backstop = threading.Timer(
            self.grace_s + 1.0 - MARGIN_S / 2, _exit_now, (exit_code, "shutdown overran")
        )
        self._backstop.daemon = True
        self._backstop.start()

    def left(self) -> float:
        """Seconds until the deadline (less the margin the last steps need); never negative."""
        if self.at is None:
            return self.grace_s + 1.0 - MARGIN_S
        return max(0.0, self.at - MARGIN_S - time.monotonic())

    async def finish(self, threads: ThreadPoolExecutor, code: int) -> None:
        """Join the loop's default executor (`threads`, see `own_default_executor`) if its
        threads end in time; otherwise exit now. Joined from a daemon thread:
        `loop.shutdown_default_executor` joins its helper thread synchronously even when
        cancelled, which would block the loop for as long as the hung call lasts."""
        loop = asyncio.get_running_loop()
        joined = asyncio.Event()

        def join() -> None:
            threads.shutdown(wait=True)
            loop.call_soon_threadsafe(joined.set)

        threading.Thread(target=join, name="heavylift-join", daemon=True).start()
        try:
            await asyncio.wait_for(joined.wait(), max(0.05, self.left()))
        except TimeoutError:
            _exit_now(lambda: code, "threads still running at the shutdown deadline")
        if self._backstop is not None:
            self._backstop.cancel()


def own_default_executor(loop: asyncio.AbstractEventLoop) -> ThreadPoolExecutor:
    """Give the loop a default executor (asyncio.to_thread's) that we can join with a limit."""
    threads = ThreadPoolExecutor(thread_name_prefix="heavylift-thread")
    loop.set_default_executor(threads)
    return threads


def _exit_now(exit_code: Callable[[], int], reason: str) -> None:
    code = exit_code()
    log.warning("exiting now, abandoning stuck threads", extra={
        "event": "forced_exit", "reason": reason, "exitCode": code})
    flush_logs()
    os._exit(code)
