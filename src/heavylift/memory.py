"""Hand memory freed by big work back to the system.

pyarrow's allocator and glibc's malloc both keep freed pages for reuse (pdfium's and the
tokenizer's frees too). In a long-running worker that made the resident size after each large
dataset sync the new floor (~30 MB more after a 5M-row sync), and idle pool processes kept the
heap of their last task; releasing the pages when such work ends keeps the footprint at its
baseline.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from functools import cache
from typing import Any, cast

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# State a kind of pool task keeps in its process for the next task of that kind (Tesseract and
# its language data), by task function, with what releases it.
_kept: dict[str, Callable[[], None]] = {}


def resident_bytes() -> int | None:
    """This process's resident set size now (Linux), or None where /proc is not there."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        return None


def heap_bytes() -> int | None:
    """Bytes malloc has handed out and not had back (glibc's mallinfo2: freed memory it keeps
    for reuse does not count), or None where that is not known (musl, macOS, glibc < 2.33)."""
    info = _mallinfo2()
    if info is None:
        return None
    stats = info()
    return int(stats.uordblks + stats.hblkhd)  # in the heaps, and in mmapped blocks


def release_memory() -> None:
    """Return unused allocator pages to the OS (a few ms); a no-op where that is not possible.
    No garbage collection first: after a shard or a chunk task it freed ~0.2 MB and took 8-16
    ms, on the document's critical path."""
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (musl, macOS)."""
    trim: Callable[[int], int] | None = _glibc("malloc_trim")
    return trim


def _glibc(function: str) -> Any:
    """`function` of the C library, or None where it has none (musl, macOS, an older glibc)."""
    libc = _libc()
    return getattr(libc, function, None) if libc is not None else None


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (find_library runs ldconfig)."""
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name is not None else None


def keep_between_tasks(task: Callable[..., Any], release: Callable[[], None]) -> None:
    """Keep state that `task`'s next run in this process reuses, until the process runs any
    other task (`release_kept`): it would sit beside that task's memory (a tokenizer beside an
    idle Tesseract took one pool process to ~150 MB)."""
    _kept[_name(task)] = release


def release_kept(starting: Callable[..., Any]) -> None:
    """Before a task starts in a pool process: release what other kinds of tasks kept."""
    for owner in [owner for owner in _kept if owner != _name(starting)]:
        _kept.pop(owner)()


def _name(task: Callable[..., Any]) -> str:
    return f"{task.__module__}.{task.__qualname__}"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    """glibc's mallinfo2 (2.33 and later), or None."""
    function = _glibc("mallinfo2")
    if function is None:
        return None
    function.restype = _MallInfo2
    return cast(Callable[[], _MallInfo2], function)
