"""Peak resident memory of a process (and, optionally, its children), measured in a thread.

The peak is the highest sampled total, or the process's own high-water mark from the kernel
(VmHWM, reset on entry by writing 5 to /proc/PID/clear_refs) if higher: it catches what happens
between samples. The mark is also read at each sample, for a process that exits before the end.
Children are found once a second and sampled every `every_s`: scanning /proc for them at every
sample took a seventh of a core on these 2-core machines and slowed a measured dataset sync by a
third.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import psutil

CHILDREN_EVERY_S = 1.0


def _members(process: psutil.Process, children: bool) -> list[psutil.Process]:
    members = [process]
    if children:
        with contextlib.suppress(psutil.Error):
            members += process.children(recursive=True)
    return members


def _total(members: list[psutil.Process]) -> int:
    total = 0
    for member in members:
        with contextlib.suppress(psutil.Error):  # a pool process may exit between the calls
            total += member.memory_info().rss
    return total


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU so far of a process and (`children`) its live descendants (a pool)."""
    return sum(sum(p.cpu_times()[:2]) for p in _members(psutil.Process(pid), children))


def rss(process: psutil.Process, children: bool) -> int:
    return _total(_members(process, children))


def _reset_high_water_mark(pid: int) -> None:
    with contextlib.suppress(OSError):  # not Linux, or not ours: sampling alone decides
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _high_water_mark(pid: int) -> int:
    """VmHWM in bytes; 0 once the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    def __init__(self, pid: int, children: bool = True, every_s: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.children = children
        self.every_s = every_s
        self.idle = rss(self.process, children)
        self.peak = self.idle
        self._own_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        members = _members(self.process, self.children)
        found = time.monotonic()
        while not self._stop.wait(self.every_s):
            if self.children and time.monotonic() - found > CHILDREN_EVERY_S:
                members, found = _members(self.process, True), time.monotonic()
            self.peak = max(self.peak, _total(members))
            self._own_peak = max(self._own_peak, _high_water_mark(self.process.pid))

    def __enter__(self) -> PeakRss:
        _reset_high_water_mark(self.process.pid)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        # The process's own exact peak; with children, the sampled sum is usually higher.
        self.peak = max(self.peak, self._own_peak, _high_water_mark(self.process.pid))
