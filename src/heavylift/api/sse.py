"""Server-Sent Events: framing, and the loop that turns queue events into a streamed response
with heartbeats."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol

from flask import Response
from pydantic_core import to_json

from heavylift.queue import QueueUnavailableError
from heavylift.queue.client import REDIS_DOWN_ERRORS
from heavylift.queue.event_stream import QueueEvent, QueueEventReader
from heavylift.settings import Settings

log = logging.getLogger("heavylift.api")

# A comment line: EventSource ignores it, proxies see traffic and keep the connection open.
PING = ": ping\n\n"

# What a follower answers: the events to send, and whether the stream is over.
Answer = tuple[list[str], bool]


def sse_event(name: str, data: Any, event_id: str | None = None) -> str:
    """One event; `data` as one line of JSON. An id makes a reconnect send it as Last-Event-ID."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {to_json(data).decode()}\n\n"


class Follower(Protocol):
    def opening(self) -> Answer:
        """What a (re)connecting client gets at once: the current state."""

    def handle(self, events: list[QueueEvent]) -> Answer:
        """What to send for a batch of queue events (possibly none of them concern us)."""


def sse_response(follower: Follower, reader: QueueEventReader, settings: Settings) -> Response:
    """A streamed answer: functions-framework writes each event as it is yielded (and, seeing a
    stream, does not try to drain the request body)."""
    return Response(
        _stream(follower, reader, settings), mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _stream(follower: Follower, reader: QueueEventReader, settings: Settings) -> Iterator[str]:
    heartbeat = settings.sse_heartbeat_s
    try:
        events, done = follower.opening()
        yield from events
        # Bounded so a forgotten tab does not hold a server thread forever; EventSource
        # reconnects by itself and gets the current state at once.
        deadline = time.monotonic() + settings.sse_max_stream_s
        last_write = time.monotonic()
        while not done and (now := time.monotonic()) < deadline:
            batch = reader.read(min(last_write + heartbeat, deadline) - now)
            events, done = follower.handle(batch) if batch else ([], False)
            if events:
                yield from events
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= heartbeat * 0.99:
                yield PING
                last_write = time.monotonic()
    except (QueueUnavailableError, *REDIS_DOWN_ERRORS) as error:
        # The client reconnects and gets a clean 503 while Redis is away.
        log.warning("event stream ended: Redis unavailable",
                    extra={"event": "sse_ended", "error": str(error)})
    finally:
        reader.close()
