"""JSON logs on stdout (Cloud Logging parses them); one line per event with job id and queue.

Records are handed to a background thread that formats and writes them, so a slow stdout or the
JSON encoding never holds up the event loop (which also renews BullMQ locks).
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

_listener: QueueListener | None = None


class _DeferredHandler(QueueHandler):
    """Queue the record untouched; the listener thread does the formatting."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(level: str = "INFO", stream: TextIO = sys.stdout) -> None:
    global _listener
    if _listener is not None:
        _listener.stop()
    output = logging.StreamHandler(stream)
    output.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "severity", "asctime": "time"},
        )
    )
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = QueueListener(records, output)
    _listener.start()
    atexit.register(_listener.stop)
    root = logging.getLogger()
    root.handlers[:] = [_DeferredHandler(records)]
    root.setLevel(level)
    # bullmq warns through `warnings`; route those into the same JSON stream.
    logging.captureWarnings(True)
