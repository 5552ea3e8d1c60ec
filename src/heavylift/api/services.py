"""What the HTTP handlers share across requests in one process: settings, the queue facade (one
Redis connection) and the object store."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from heavylift.documents.intake import Intake
from heavylift.queue import BlockingQueues
from heavylift.settings import Settings, load_settings
from heavylift.storage import ObjectStore, open_store


@dataclass
class Services:
    settings: Settings
    queues: BlockingQueues
    store: ObjectStore

    @cached_property
    def intake(self) -> Intake:
        return Intake(self.settings, self.queues, self.store)


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """Built once per process on first use (gunicorn threads share it)."""
    global _services
    with _lock:
        if _services is None:
            settings = load_settings()
            _services = Services(
                settings=settings,
                queues=BlockingQueues(settings, timeout_s=settings.redis_op_timeout_s),
                store=open_store(settings.storage_url, settings),
            )
        return _services


def reset_services() -> None:
    """Forget the process's services (tests that change the environment)."""
    global _services
    with _lock:
        if _services is not None:
            _services.queues.close()
        _services = None
