"""A small Server-Sent Events reader over `requests` (stream=True), as a browser parses them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Message:
    event: str  # "comment" for a ': ...' line (heartbeat)
    data: Any
    id: str | None
    at: float  # time.monotonic() when it arrived


def messages(response: requests.Response) -> Iterator[Message]:
    event, data, event_id = "message", "", None
    for line in response.iter_lines(decode_unicode=True, chunk_size=1):
        if line.startswith(":"):
            yield Message("comment", line[1:].strip(), None, time.monotonic())
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line == "" and data:
            yield Message(event, json.loads(data), event_id, time.monotonic())
            event, data, event_id = "message", "", None


def open_stream(session: requests.Session, url: str, **headers: str) -> requests.Response:
    response = session.get(url, stream=True, timeout=(5, 30), headers=headers)
    return response


def read_until(stream: Iterator[Message], *events: str, timeout: float = 30) -> list[Message]:
    """Messages up to and including the first of `events` (heartbeats included)."""
    deadline = time.monotonic() + timeout
    seen: list[Message] = []
    for message in stream:
        seen.append(message)
        if message.event in events:
            return seen
        assert time.monotonic() < deadline, f"no {events} within {timeout}s: {seen}"
    raise AssertionError(f"stream ended before {events}: {seen}")
