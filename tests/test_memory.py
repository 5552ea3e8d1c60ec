"""release_memory hands pages that malloc keeps after a big job back to the system; state a
kind of pool task keeps goes when its process runs other work."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psutil

from heavylift.memory import heap_bytes, keep_between_tasks, release_memory
from heavylift.runtime.offload import CpuPool

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


def keeping(marker: str, report: object = None) -> int:
    """A pool task that keeps state for its next run; its release leaves `marker` behind."""
    keep_between_tasks(keeping, lambda: Path(marker).write_text("released"))
    return os.getpid()


def other(report: object = None) -> int:
    return os.getpid()


def test_state_kept_between_tasks_goes_when_the_process_runs_other_work(tmp_path: Path) -> None:
    """What a kind of task keeps in its pool process (Tesseract) stays for the next task of that
    kind and is released before any other task starts there (a tokenizer must not sit beside
    it)."""
    marker = tmp_path / "released"

    async def run() -> list[int]:
        pool = CpuPool(1)
        try:
            pids = [await pool.run(keeping, str(marker)), await pool.run(keeping, str(marker))]
            assert not marker.exists()  # the same kind of task: kept
            pids.append(await pool.run(other))
            return pids
        finally:
            pool.kill()

    pids = asyncio.run(run())
    assert len(set(pids)) == 1 and marker.read_text() == "released"


def test_heap_bytes_count_what_is_allocated_not_what_malloc_keeps() -> None:
    """The PDF reader reopens on this growth: it must rise with an allocation and fall when it
    is freed, though the freed pages stay resident until release_memory."""
    before = heap_bytes()
    assert before is not None  # glibc >= 2.33 on every machine we run on
    blocks = [b"x" * 65536 for _ in range(800)]  # ~50 MB in malloc's heap
    grown = heap_bytes()
    assert grown is not None and grown - before > 45 * MB
    del blocks
    after = heap_bytes()
    assert after is not None and after - before < 5 * MB
