"""JSON logs on stdout (Cloud Logging parses them); one line per event with job id and queue.

Records go to a background thread that formats and writes them in batches, so neither a slow
stdout nor the JSON encoding holds up the event loop (which also renews BullMQ locks). The
formatter is a few lines of `json.dumps`: python-json-logger cost ~3x more per line, which showed
at thousands of jobs/s (bench/queue.py).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

_handler: _BatchedHandler | None = None
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# (created, severity, logger name, message, fields): what `log_event` queues instead of a record.
Event = tuple[float, str, str, str, dict[str, Any]]


def _json_line(created: float, severity: str, name: str, message: str,
               fields: Iterable[tuple[str, Any]]) -> str:
    entry: dict[str, Any] = {
        "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
        "severity": severity,
        "logger": name,
        "message": message,
    }
    entry.update(fields)
    return json.dumps(entry, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = [(k, v) for k, v in record.__dict__.items() if k not in _STANDARD]
        if record.exc_info:
            fields.append(("exception", self.formatException(record.exc_info)))
        return _json_line(record.created, record.levelname, record.name, record.getMessage(),
                          fields)


def log_event(logger: logging.Logger, message: str, **fields: Any) -> None:
    """An INFO line for the worker's per-job lifecycle: queued as a plain tuple, formatted by the
    writer thread. A LogRecord per line cost ~10% of no-op job throughput (bench/queue.py)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    if _handler is None:
        logger.info(message, extra=fields)
        return
    _handler.add_event((time.time(), "INFO", logger.name, message, fields))


class _BatchedHandler(logging.Handler):
    """Collects records; a background thread formats and writes them every `interval_s`.
    Appending is all the logging thread pays: at thousands of jobs/s a per-record thread
    hand-off (QueueHandler) still cost ~20% of throughput (bench/queue.py, concurrency 1)."""

    def __init__(self, target: logging.StreamHandler[TextIO], interval_s: float = 0.05) -> None:
        super().__init__()
        self.target = target
        self.interval_s = interval_s
        self._records: deque[logging.LogRecord | Event] = deque()
        self._start_writer()
        # gunicorn imports the function in its master and forks workers: threads do not survive
        # a fork, so each child starts its own writer (and drops the parent's pending records).
        os.register_at_fork(after_in_child=self._after_fork)

    def _start_writer(self) -> None:
        self._stopped = threading.Event()
        self._writer = threading.Thread(target=self._run, name="heavylift-logs", daemon=True)
        self._writer.start()

    def _after_fork(self) -> None:
        self._records.clear()
        self._start_writer()

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)  # atomic; no formatting here

    def add_event(self, event: Event) -> None:
        self._records.append(event)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.drain()

    def drain(self) -> None:
        try:
            while self._records:
                item = self._records.popleft()
                if isinstance(item, logging.LogRecord):
                    self.target.handle(item)
                else:
                    created, severity, name, message, fields = item
                    self.target.stream.write(
                        _json_line(created, severity, name, message, fields.items()) + "\n")
            self.target.flush()
        except (OSError, ValueError):  # stdout closed (interpreter exit): nothing to write to
            self._records.clear()

    def close(self) -> None:
        self._stopped.set()
        self._writer.join()
        self.drain()
        super().close()


def configure_logging(level: str = "INFO", stream: TextIO = sys.stdout) -> None:
    global _handler
    if _handler is not None:
        atexit.unregister(_handler.close)
        _handler.close()
    # We never log thread/process names or call sites: skip collecting them per record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # the documented switch that skips the caller lookup
    output = logging.StreamHandler(stream)
    output.setFormatter(JsonFormatter())
    _handler = _BatchedHandler(output)
    atexit.register(_handler.close)
    root = logging.getLogger()
    root.handlers[:] = [_handler]
    root.setLevel(level)
    # bullmq warns through `warnings`; route those into the same JSON stream.
    logging.captureWarnings(True)


def flush_logs() -> None:
    """Write every queued line now; for a process about to `os._exit` (no atexit runs)."""
    if _handler is not None:
        _handler.close()
