"""What runs inside a CPU pool process (`offload.CpuPool`): its start-up and the wrapper around
each task. Kept apart from the pool itself so a pool process imports only this and the task's
own module, not the queue engine (bullmq, redis, OpenTelemetry: ~10 MB per process)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, TypeVar

from heavylift.memory import release_kept, release_memory

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def start_child(memory_mb: int | None) -> None:
    """A worker killed with SIGKILL must not leave CPU jobs running in orphaned children; no
    child may take more than its share of the instance's memory."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when work stops
    if memory_mb:
        # RLIMIT_DATA, not RLIMIT_AS: it counts the heap and private writable mappings (what a
        # decoded stream fills) but not reserved address space (thread stacks, allocator
        # arenas, PartitionAlloc's reservations), which is large and mostly never used.
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


class Started(NamedTuple):
    """The first message of every task: which pool process runs it."""

    pid: int


class Reporter:
    """Passed to offloaded functions as `report`; sends progress fractions (0..1) to the parent."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __call__(self, fraction: float) -> None:
        self._conn.send(float(fraction))


def _overrun(signum: int, frame: Any) -> None:
    raise TimeoutError("the task overran its time limit")


def call_with_reporter(
    fn: Callable[..., T],
    conn: Connection,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout_s: float | None,
) -> T:
    # The limit runs in the child from the moment the task starts: time spent waiting for a free
    # pool process does not count, and an overrun ends this task only, not its neighbours'.
    conn.send(Started(os.getpid()))
    release_kept(fn)
    if timeout_s:
        signal.signal(signal.SIGALRM, _overrun)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn(*args, report=Reporter(conn), **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        conn.close()
        # Pool processes live on, idle, beside the next task's: give this task's heap back. The
        # result waits for it: ~3 ms after a shard of R's reference manual.
        release_memory()
