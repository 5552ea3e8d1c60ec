"""Reading a request body on the event loop, before any thread is spent on the request: a slow
or stalled client costs a socket and a coroutine. Bodies go to a spooled file (memory up to
1 MiB, then disk), so fifty 50 MB uploads do not sit in RAM."""

from __future__ import annotations

import asyncio
import io
import tempfile
from typing import IO

from starlette.requests import Request

from heavylift.api.errors import ApiError

_IN_MEMORY = 1024 * 1024


def declared_length(request: Request, limit: int) -> int | None:
    """Content-Length, checked against `limit` before a byte is read (413 at once)."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(400, "bad_content_length", "Content-Length is not a number")
    if int(raw) > limit:
        raise _too_large(limit)
    return int(raw)


async def read_body(request: Request, limit: int, idle_timeout_s: float) -> tuple[IO[bytes], int]:
    """The whole body (at most `limit` bytes) in a file at position 0, and its size. A client
    that sends nothing for `idle_timeout_s` gets 408; one that sends more than `limit` (chunked,
    or past its Content-Length) gets 413."""
    declared = declared_length(request, limit)
    if declared == 0 or (declared is None and "transfer-encoding" not in request.headers):
        return io.BytesIO(), 0  # no body (most GETs): nothing to wait for
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)  # noqa: SIM115
    size = 0
    chunks = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(chunks), idle_timeout_s)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ApiError(408, "body_timeout", f"no request body bytes for "
                               f"{idle_timeout_s:g}s (BODY_IDLE_TIMEOUT_S)") from None
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"request body is over {limit} bytes (MAX_UPLOAD_BYTES "
                    "plus multipart framing); large files go through /api/documents/upload-url")
