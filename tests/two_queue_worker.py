"""A real worker whose documents queue runs the diagnostics jobs too, so a test can load two
queues with cheap jobs (`python -m tests.two_queue_worker`, via WorkerProcess MODULE=...)."""

from __future__ import annotations

from heavylift import diagnostics
from heavylift.queue import JobKind, QueueName
from heavylift.runtime.context import registry_of
from worker_service.main import serve

REGISTRY = registry_of([
    *diagnostics.KINDS,
    *(JobKind(QueueName.DOCUMENTS, kind.name, kind.processor) for kind in diagnostics.KINDS),
])

if __name__ == "__main__":
    serve(registry=REGISTRY)
