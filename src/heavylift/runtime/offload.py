"""Run CPU-heavy job code in worker processes so the event loop keeps renewing BullMQ locks.

A job that blocks the loop stops lock renewal and is declared stalled (it would run twice), so
PDF parsing, chunking and embedding go through `CpuPool.run`. Progress comes back over a pipe that
the loop watches with `add_reader`: no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any, ParamSpec, TypeVar

from heavylift.memory import release_memory

P = ParamSpec("P")
T = TypeVar("T")

ProgressCallback = Callable[[float], None]
_PR_SET_PDEATHSIG = 1
_BACKSTOP_S = 60.0


def _die_with_parent() -> None:
    """A worker killed with SIGKILL must not leave CPU jobs running in orphaned children."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when work stops


class Reporter:
    """Passed to offloaded functions as `report`; sends progress fractions (0..1) to the parent."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __call__(self, fraction: float) -> None:
        self._conn.send(fraction)


def _overrun(signum: int, frame: Any) -> None:
    raise TimeoutError("the task overran its time limit")


def _call_with_reporter(
    fn: Callable[..., T],
    conn: Connection,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout_s: float | None,
) -> T:
    # The limit runs in the child from the moment the task starts: time spent waiting for a free
    # pool process does not count, and an overrun ends this task only, not its neighbours'.
    if timeout_s:
        signal.signal(signal.SIGALRM, _overrun)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn(*args, report=Reporter(conn), **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        conn.close()
        # Pool processes live on, idle, beside the next task's: give this task's heap back.
        release_memory(collect=True)


class CpuPool:
    """A lazily started process pool; rebuilt when a child dies or a job overruns its limit."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes,
                # spawn, not fork (the parent runs an event loop and threads) nor forkserver
                # (its children are not ours, so PDEATHSIG would tie them to the fork server,
                # which outlives a SIGKILLed worker).
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with_parent,
            )
        return self._executor

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_progress: ProgressCallback | None = None,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Run `fn(*args, report=..., **kwargs)` in a child process and await its result."""
        loop = asyncio.get_running_loop()
        receiver, sender = multiprocessing.Pipe(duplex=False)

        def on_readable() -> None:
            if not _deliver(receiver, on_progress):
                loop.remove_reader(receiver.fileno())

        loop.add_reader(receiver.fileno(), on_readable)
        executor = self._pool()
        # Backstop for native code that never returns to Python (the child's own timer cannot
        # interrupt it): generous, since it also counts time waiting for a pool process.
        backstop = None if timeout_s is None else 2 * timeout_s + _BACKSTOP_S
        try:
            future = loop.run_in_executor(
                executor, _call_with_reporter, fn, sender, args, kwargs, timeout_s
            )
            try:
                return await asyncio.wait_for(future, backstop)
            except BrokenProcessPool:
                self.kill(executor)
                raise
            except TimeoutError:
                if not future.done():  # stuck in native code: only a kill stops it
                    self.kill(executor)
                raise
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(receiver.fileno())
            _deliver(receiver, on_progress)
            receiver.close()
            sender.close()

    def kill(self, executor: ProcessPoolExecutor | None = None) -> None:
        """Stop every child now (shutdown hand-back, a broken or stuck pool); the next `run`
        starts a new pool. With `executor`, only if that pool is still the current one."""
        if executor is not None and executor is not self._executor:
            return
        executor, self._executor = self._executor, None
        if executor is None:
            return
        for process in list(getattr(executor, "_processes", {}).values()):
            with contextlib.suppress(OSError):
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)


def _deliver(receiver: Connection, on_progress: ProgressCallback | None) -> bool:
    """Hand every queued progress message to the callback; False once the pipe is closed."""
    try:
        while receiver.poll():
            value = receiver.recv()
            if on_progress is not None:
                on_progress(float(value))
    except (EOFError, OSError):
        return False
    return True
