"""release_memory hands pages that malloc keeps after a big job back to the system."""

from __future__ import annotations

import psutil

from heavylift.memory import release_memory

MB = 2**20


def test_freed_heap_pages_are_handed_back() -> None:
    process = psutil.Process()
    blocks = [b"x" * 65536 for _ in range(1600)]  # ~100 MB in malloc's heap, touched
    pin = b"y" * 65536  # allocated above them: free() alone cannot shrink the heap past it
    del blocks
    kept = process.memory_info().rss

    release_memory()

    assert kept - process.memory_info().rss > 60 * MB
    assert pin
