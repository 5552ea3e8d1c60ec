"""Peak resident memory of a process (and, optionally, its children), sampled in a thread."""

from __future__ import annotations

import contextlib
import threading

import psutil


def rss(process: psutil.Process, children: bool) -> int:
    members = [process]
    if children:
        with contextlib.suppress(psutil.Error):
            members += process.children(recursive=True)
    total = 0
    for member in members:
        with contextlib.suppress(psutil.Error):  # a pool process may exit between the calls
            total += member.memory_info().rss
    return total


class PeakRss:
    def __init__(self, pid: int, children: bool = True, every_s: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.children = children
        self.every_s = every_s
        self.idle = rss(self.process, children)
        self.peak = self.idle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss(self.process, self.children))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
