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
import gc
import os
import sys
from collections.abc import Callable
from functools import cache

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set size now (Linux), or None where /proc is not there."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        return None


def release_memory(collect: bool = False) -> None:
    """Return unused allocator pages to the OS (a few ms); a no-op where that is not possible.
    `collect` first frees unreachable cycles (a finished task's objects)."""
    if collect:
        gc.collect()
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None)
    return trim
