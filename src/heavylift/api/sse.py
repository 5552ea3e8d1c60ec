"""Server-Sent Events: framing, and the loop that turns queue events into a streamed response
with heartbeats. The loop runs on the server's event loop: an open stream holds a socket and a
Redis connection, not a thread."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio
from pydantic_core import to_json
from starlette.responses import StreamingResponse

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
    async def opening(self) -> Answer:
        """What a (re)connecting client gets at once: the current state."""

    async def handle(self, events: list[QueueEvent]) -> Answer:
        """What to send for a batch of queue events (possibly none of them concern us)."""


async def open_reader(reader: QueueEventReader) -> str:
    """The reader's start position; the reader is closed if Redis fails here."""
    try:
        return await reader.start_at_end()
    except BaseException:
        await _close(reader)
        raise


def sse_response(follower: Follower, reader: QueueEventReader,
                 settings: Settings) -> StreamingResponse:
    """Each event is written as it is produced; the stream ends (and the reader closes) when the
    follower is done, the client goes away, or SSE_MAX_STREAM_S passes."""
    return StreamingResponse(
        _stream(follower, reader, settings), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(follower: Follower, reader: QueueEventReader,
                  settings: Settings) -> AsyncIterator[str]:
    heartbeat = settings.sse_heartbeat_s
    try:
        events, done = await follower.opening()
        for event in events:
            yield event
        # Bounded so a forgotten tab does not hold a connection forever; EventSource
        # reconnects by itself and gets the current state at once.
        deadline = time.monotonic() + settings.sse_max_stream_s
        last_write = time.monotonic()
        while not done and (now := time.monotonic()) < deadline:
            batch = await reader.read(min(last_write + heartbeat, deadline) - now)
            events, done = await follower.handle(batch) if batch else ([], False)
            if events:
                for event in events:
                    yield event
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= heartbeat * 0.99:
                yield PING
                last_write = time.monotonic()
    except (QueueUnavailableError, *REDIS_DOWN_ERRORS) as error:
        # The client reconnects and gets a clean 503 while Redis is away.
        log.warning("event stream ended: Redis unavailable",
                    extra={"event": "sse_ended", "error": str(error)})
    finally:
        await _close(reader)


async def _close(reader: QueueEventReader) -> None:
    # Shielded: a client that went away cancels the stream, and the close must still run.
    with anyio.CancelScope(shield=True):
        await reader.close()
