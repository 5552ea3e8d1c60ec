"""Run CPU-heavy job code in worker processes so the event loop keeps renewing BullMQ locks.

A job that blocks the loop stops lock renewal and is declared stalled (it would run twice), so
PDF parsing, chunking and embedding go through `CpuPool.run`. Progress comes back over a pipe that
the loop watches with `add_reader`: no polling.

Each pool process runs under a memory cap (RLIMIT_DATA, POOL_MEMORY_MB): a hostile input (a PDF
whose streams inflate to gigabytes) ends that task, not the worker and every job on its instance.
A task over the cap fails as PoolMemoryError (no retry: the same input needs the same memory),
whether Python saw the MemoryError or the process died (native code aborts when an allocation
fails; the kernel's OOM killer sends SIGKILL). Tasks only caught in the broken pool (queued, or
running in a sibling the pool terminated) run again on a fresh pool. A task whose job is
cancelled (API cancel, watchdog, shutdown hand-back) has its process killed the same way, so its
CPU is free at once instead of when the task ends on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, ParamSpec, TypeVar

from bullmq.custom_errors import UnrecoverableError

from heavylift.runtime.pool_child import Started, call_with_reporter, start_child

P = ParamSpec("P")
T = TypeVar("T")

ProgressCallback = Callable[[float], None]
_BACKSTOP_S = 60.0
# How a process over its memory cap dies: abort() from native code whose allocation failed
# (pdfium), or SIGKILL from the kernel's OOM killer.
_OUT_OF_MEMORY_SIGNALS = {-signal.SIGABRT, -signal.SIGKILL}


class PoolMemoryError(UnrecoverableError):  # type: ignore[misc]
    """A pool task needed more memory than POOL_MEMORY_MB allows; retrying cannot help."""

    def __init__(self, memory_mb: int | None) -> None:
        cap = f"the memory cap of POOL_MEMORY_MB={memory_mb}" if memory_mb else "the memory"
        super().__init__(f"Out of memory: the task needed more than {cap} (MB per CPU process).")


class CpuPool:
    """A lazily started process pool; rebuilt when a child dies or a job overruns its limit."""

    def __init__(self, processes: int, memory_mb: int | None = None) -> None:
        self.processes = processes
        self.memory_mb = memory_mb  # per process; None: uncapped
        self._executor: ProcessPoolExecutor | None = None
        self._killed: weakref.WeakSet[ProcessPoolExecutor] = weakref.WeakSet()  # by `kill`
        # A broken pool's processes, kept for every task it failed (shutdown forgets them).
        self._broken: weakref.WeakKeyDictionary[ProcessPoolExecutor, dict[int, BaseProcess]] = (
            weakref.WeakKeyDictionary())

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes,
                # spawn, not fork (the parent runs an event loop and threads) nor forkserver
                # (its children are not ours, so PDEATHSIG would tie them to the fork server,
                # which outlives a SIGKILLed worker).
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_child,
                initargs=(self.memory_mb,),
            )
        return self._executor

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_progress: ProgressCallback | None = None,
        timeout_s: float | None = None,
        rerun: bool = True,
        **kwargs: Any,
    ) -> T:
        """Run `fn(*args, report=..., **kwargs)` in a child process and await its result.
        `rerun=False`: a task caught in a broken pool fails (BrokenProcessPool) instead of
        running again on a fresh pool, behind tasks submitted after it."""
        try:
            return await self._run(fn, args, kwargs, on_progress, timeout_s)
        except _CaughtInBrokenPool:  # not this task's fault: once more, on a fresh pool
            if not rerun:
                raise
            return await self._run(fn, args, kwargs, on_progress, timeout_s)

    async def _run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        on_progress: ProgressCallback | None,
        timeout_s: float | None,
    ) -> T:
        loop = asyncio.get_running_loop()
        receiver, sender = multiprocessing.Pipe(duplex=False)
        task = _Task(on_progress)

        def on_readable() -> None:
            if not task.deliver(receiver):
                loop.remove_reader(receiver.fileno())

        loop.add_reader(receiver.fileno(), on_readable)
        executor = self._pool()
        # Backstop for native code that never returns to Python (the child's own timer cannot
        # interrupt it): generous, since it also counts time waiting for a pool process.
        backstop = None if timeout_s is None else 2 * timeout_s + _BACKSTOP_S
        try:
            future = loop.run_in_executor(
                executor, call_with_reporter, fn, sender, args, kwargs, timeout_s
            )
            try:
                return await asyncio.wait_for(future, backstop)
            except MemoryError:
                raise PoolMemoryError(self.memory_mb) from None
            except BrokenProcessPool:
                task.deliver(receiver)  # which process ran it, if it started
                await self._blame(executor, task.pid)
                raise
            except TimeoutError:
                if not future.done():  # stuck in native code: only a kill stops it
                    self.kill(executor)
                raise
            except asyncio.CancelledError:  # its job was cancelled (API, watchdog, hand-back)
                task.deliver(receiver)
                self._stop(executor, task.pid)
                raise
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(receiver.fileno())
            task.deliver(receiver)
            receiver.close()
            sender.close()

    async def _blame(self, executor: ProcessPoolExecutor, pid: int | None) -> None:
        """A broken pool: raise PoolMemoryError if this task's process died of memory, else
        _CaughtInBrokenPool (the task runs once more on a fresh pool). `kill`'s victims are
        no one's fault: return, and the caller re-raises BrokenProcessPool."""
        if executor in self._killed:
            return
        if executor not in self._broken:
            self._broken[executor] = dict(getattr(executor, "_processes", None) or {})
        processes = self._broken[executor]
        self.kill(executor, terminate=False)  # the pool terminates its other processes itself
        process = processes.get(pid) if pid is not None else None
        if process is None:  # queued, not started: nothing of it ran
            raise _CaughtInBrokenPool("the pool broke before this task started")
        await asyncio.to_thread(process.join, 5.0)
        if process.exitcode in _OUT_OF_MEMORY_SIGNALS:
            raise PoolMemoryError(self.memory_mb)
        # Terminated because a sibling died, or not gone yet within the join (a loaded machine):
        # not known to be this task's fault, so it runs once more; a task whose own process
        # crashes again is then reported as the BrokenProcessPool it is.
        raise _CaughtInBrokenPool("another process of the pool died")

    def _stop(self, executor: ProcessPoolExecutor, pid: int | None) -> None:
        """Kill the process running a task whose job no longer wants it, so its CPU is free at
        once. The pool breaks: its other processes are terminated and the tasks of other jobs
        caught in it run again on a fresh pool (`_blame`). A task not started yet (no pid) was
        cancelled with its future, or runs to its end if the pool had already handed it out."""
        process = (getattr(executor, "_processes", None) or {}).get(pid)
        if process is None or executor is not self._executor:
            return  # not started, or the pool was stopped as a whole (kill)
        with contextlib.suppress(OSError):
            process.kill()
        self._executor = None  # broken now: the next task starts a fresh pool
        executor.shutdown(wait=False)  # pending tasks still get BrokenProcessPool, not cancelled

    def kill(self, executor: ProcessPoolExecutor | None = None, terminate: bool = True) -> None:
        """Stop every child now (shutdown hand-back, a broken or stuck pool); the next `run`
        starts a new pool. With `executor`, only if that pool is still the current one."""
        if executor is not None and executor is not self._executor:
            return
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if terminate:
            self._killed.add(executor)
            for process in list(getattr(executor, "_processes", {}).values()):
                with contextlib.suppress(OSError):
                    process.kill()
        executor.shutdown(wait=False, cancel_futures=True)


class _CaughtInBrokenPool(BrokenProcessPool):
    """This task did not break the pool: another task's process died under it (a second time,
    callers see the BrokenProcessPool it is)."""


class _Task:
    """One run's view of its pipe: progress for the callback, and the process running it."""

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.on_progress = on_progress
        self.pid: int | None = None

    def deliver(self, receiver: Connection) -> bool:
        """Handle every queued message; False once the pipe is closed."""
        try:
            while receiver.poll():
                value = receiver.recv()
                if isinstance(value, Started):
                    self.pid = value.pid
                elif self.on_progress is not None:
                    self.on_progress(value)
        except (EOFError, OSError):
            return False
        return True
