"""What the HTTP handlers share across requests in one process: the settings, the store and
BigQuery clients (`Resources`), and the queue facade (one Redis connection)."""

from __future__ import annotations

import threading
from functools import cached_property

from heavylift.documents.intake import Intake
from heavylift.queue import BlockingQueues
from heavylift.resources import Resources
from heavylift.settings import Settings, load_settings


class Services(Resources):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.queues = BlockingQueues(settings, timeout_s=settings.redis_op_timeout_s,
                                     breaker_s=settings.redis_breaker_s)

    @cached_property
    def intake(self) -> Intake:
        return Intake(self.settings, self.queues, self.store)

    def close(self) -> None:
        self.queues.close()
        super().close()


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """Built once per process on first use (gunicorn threads share it)."""
    global _services
    with _lock:
        if _services is None:
            _services = Services(load_settings())
        return _services


def reset_services() -> None:
    """Forget the process's services (tests that change the environment)."""
    global _services
    with _lock:
        if _services is not None:
            _services.close()
        _services = None
