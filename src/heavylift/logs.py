"""JSON logs on stdout (Cloud Logging parses them); one line per event with job id and queue.

Records go to a background thread that formats and writes them, so a slow stdout never holds up
the event loop (which also renews BullMQ locks). The formatter is a few lines of `json.dumps`:
python-json-logger cost ~3x more per line, which showed at thousands of jobs/s (bench/queue.py).
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO

_listener: QueueListener | None = None
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


class _DeferredHandler(QueueHandler):
    """Queue the record untouched; the listener thread does the formatting."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(level: str = "INFO", stream: TextIO = sys.stdout) -> None:
    global _listener
    if _listener is not None:
        atexit.unregister(_listener.stop)
        _listener.stop()
    # We never log thread/process names or call sites: skip collecting them per record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # the documented switch that skips the caller lookup
    output = logging.StreamHandler(stream)
    output.setFormatter(JsonFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = QueueListener(records, output)
    _listener.start()
    atexit.register(_listener.stop)
    root = logging.getLogger()
    root.handlers[:] = [_DeferredHandler(records)]
    root.setLevel(level)
    # bullmq warns through `warnings`; route those into the same JSON stream.
    logging.captureWarnings(True)
