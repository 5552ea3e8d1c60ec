"""What a processor sees of its job: data, attempt, monotonic progress, CPU offloading, and the
worker's shared resources (settings, store, BigQuery clients)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bullmq.custom_errors import UnrecoverableError

from heavylift.queue import JobKind, QueueName
from heavylift.resources import Resources
from heavylift.runtime.offload import CpuPool
from heavylift.settings import Settings
from heavylift.storage import ObjectStore

T = TypeVar("T")
log = logging.getLogger("heavylift.worker")

Processor = Callable[["JobContext"], Awaitable[Any]]
# Processors per queue, by job name.
Registry = dict[QueueName, dict[str, Processor]]


def lazy_processor(path: str) -> Processor:
    """The processor "module:function", imported on its first job: the worker starts (and
    answers /healthz) without loading pyarrow, BigQuery, pdfium or tiktoken until a queue needs
    them."""
    module, _, name = path.partition(":")

    async def process(ctx: JobContext) -> Any:
        # Imported in a thread: a second of imports must not hold up lock renewal.
        loaded = await asyncio.to_thread(importlib.import_module, module)
        target: Processor = getattr(loaded, name)
        return await target(ctx)

    return process


def registry_of(kinds: list[JobKind]) -> Registry:
    """The worker's processors per queue and job name, from the job kinds it serves."""
    registry: Registry = {}
    for kind in kinds:
        registry.setdefault(kind.queue, {})[kind.name] = lazy_processor(kind.processor)
    return registry


class PermanentJobError(UnrecoverableError):  # type: ignore[misc]
    """A failure that no retry can fix (corrupt input, bad request): fail at once."""


class JobContext:
    def __init__(
        self, job: Any, token: str, queue: QueueName, cpu: CpuPool, resources: Resources
    ) -> None:
        self.job = job
        self.token = token
        self.queue = queue
        self.cpu = cpu
        self.resources = resources
        self.handed_back = False
        self.task: asyncio.Future[Any] | None = None
        self.started_at: float | None = None  # monotonic; None while it waits for a slot
        # What the processor last said it was doing, and when it last said anything: the job
        # watchdog fails an attempt that stays silent too long, naming the stage it was in.
        self.stage: str | None = None
        self.last_activity = time.monotonic()
        self.stuck: str | None = None  # set by the watchdog before it cancels the job
        self.cancelled = False  # set when the API cancelled the job, before its task is cancelled
        # The processor has returned: from here on the job completes; nothing cancels its task
        # (a cancellation while its outcome is being stored would leave it active in Redis).
        self.returned = False
        self._shown = float(job.progress) if isinstance(job.progress, int | float) else 0.0
        self._wanted = self._shown
        self._writer: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return str(self.job.id)

    @property
    def name(self) -> str:
        return str(self.job.name)

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.job.data or {})

    @property
    def attempt(self) -> int:
        """1 for the first try; a retried or recovered job sees 2, 3..."""
        return int(self.job.attemptsMade) + 1

    @property
    def settings(self) -> Settings:
        return self.resources.settings

    @property
    def store(self) -> ObjectStore:
        return self.resources.store

    @property
    def progress(self) -> float:
        return self._wanted

    def set_progress(self, percent: float) -> None:
        """Progress never goes backwards; writes are coalesced to whole percents. Every call
        counts as a sign of life for the job watchdog, even one that does not move the bar."""
        self.last_activity = time.monotonic()
        percent = min(100.0, round(percent, 1))
        if percent <= self._wanted:
            return
        self._wanted = percent
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_progress())

    def set_stage(self, name: str) -> None:
        """Name the step the job is in (shown if the watchdog fails it); also a sign of life."""
        self.stage = name
        self.last_activity = time.monotonic()

    async def _write_progress(self) -> None:
        """Best effort: a lost progress write must never fail a job that did its work."""
        while int(self._wanted) > int(self._shown) or (self._wanted == 100 > self._shown):
            value = self._wanted
            shown = int(value) if value == int(value) else value
            try:
                await self.job.updateProgress(shown)
            except Exception as error:  # Redis hiccup: the next update or the result catches up
                log.warning("progress not recorded", extra={
                    "event": "progress_lost", "jobId": self.id, "reason": str(error)})
                return
            self._shown = value

    async def flush_progress(self) -> None:
        if self._writer is not None:
            await self._writer

    async def offload(
        self,
        fn: Callable[..., T],
        *args: Any,
        span: tuple[float, float] | None = None,
        timeout_s: float | None = None,
        rerun: bool = True,
        **kwargs: Any,
    ) -> T:
        """Run CPU-bound `fn(*args, report=..., **kwargs)` in the process pool; its progress
        fractions (0..1) map onto `span` percents of this job."""
        on_progress = None
        if span is not None:
            low, high = span

            def on_progress(fraction: float) -> None:
                self.set_progress(low + (high - low) * max(0.0, min(1.0, fraction)))

        return await self.cpu.run(
            fn, *args, on_progress=on_progress, timeout_s=timeout_s, rerun=rerun, **kwargs
        )
