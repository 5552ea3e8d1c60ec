"""A read stream with an idle deadline: no message for `idle_s` seconds cancels it and fails.

gRPC's `timeout=` on ReadRows is a deadline for the whole stream (a 5M-row read may rightly take
longer than any per-call deadline), and a stalled stream blocks its reader in C code that no
Python timeout reaches. So a pump thread iterates the stream and hands each message over through
a one-slot queue; the reader waits for the next one at most `idle_s`. Only time spent waiting
for the stream counts: a consumer busy elsewhere (encoding, writing parts) stalls nothing, and the
one-slot hand-off keeps gRPC's flow control working (at most two messages wait in memory).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from heavylift.datasets.errors import SourceUnavailableError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# How often a pump blocked on a full hand-off checks that its reader is still there.
_PUMP_POLL_S = 0.2


class CancellableStream(Protocol[T_co]):
    """A stream that cancel() stops (gRPC calls, bigquery_storage's ReadRowsStream)."""

    def __iter__(self) -> Iterator[T_co]: ...

    def cancel(self) -> Any: ...


class _End:
    """The stream ended."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def with_idle_deadline(
    stream: CancellableStream[T], idle_s: float, stage: Callable[[], str]
) -> Generator[T, None, None]:
    """The stream's messages. Waiting longer than `idle_s` for one cancels the stream and raises
    SourceUnavailableError("<stage()>: no data for <idle_s> s"); the stream's own errors are
    raised as they are. Closing the iterator cancels the stream."""
    handoff: queue.Queue[T | _End | _Failed] = queue.Queue(maxsize=1)
    stopped = threading.Event()

    def offer(item: T | _End | _Failed) -> bool:
        while not stopped.is_set():
            try:
                handoff.put(item, timeout=_PUMP_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def pump(messages: Iterable[T]) -> None:
        try:
            for message in messages:
                if not offer(message):
                    return
            offer(_End())
        except BaseException as error:  # handed to the reader, which raises it
            offer(_Failed(error))

    threading.Thread(target=pump, args=(stream,), name="bq-read-stream", daemon=True).start()
    try:
        while True:
            try:
                item = handoff.get(timeout=idle_s)
            except queue.Empty:
                raise SourceUnavailableError(f"{stage()}: no data for {idle_s:g} s") from None
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stopped.set()
        stream.cancel()
