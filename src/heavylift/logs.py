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
from collections import deque
from datetime import UTC, datetime
from typing import Any, TextIO

_handler: _BatchedHandler | None = None
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _BatchedHandler(logging.Handler):
    """Collects records; a background thread formats and writes them every `interval_s`.
    Appending is all the logging thread pays: at thousands of jobs/s a per-record thread
    hand-off (QueueHandler) still cost ~20% of throughput (bench/queue.py, concurrency 1)."""

    def __init__(self, target: logging.Handler, interval_s: float = 0.05) -> None:
        super().__init__()
        self.target = target
        self.interval_s = interval_s
        self._records: deque[logging.LogRecord] = deque()
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

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.drain()

    def drain(self) -> None:
        while self._records:
            self.target.handle(self._records.popleft())
        self.target.flush()

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
