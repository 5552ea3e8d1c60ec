"""A small HTTP client of the heavylift API for the CLI (local stack or a deployed URL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import requests

# Files above this go through a signed upload URL (a function's body is capped at 32 MB on GCP).
SIGNED_UPLOAD_ABOVE = 8 * 1024 * 1024
CONTENT_TYPES = {".pdf": "application/pdf", ".md": "text/markdown", ".markdown": "text/markdown",
                 ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                 ".tif": "image/tiff", ".tiff": "image/tiff"}


class ApiError(Exception):
    """An answer the user must see: one line, and an exit code scripts can rely on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_FAILED_JOB = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_AUTH = 5


def _exit_code(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    if status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT


class Client:
    def __init__(self, url: str, api_key: str | None, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.ConnectionError:
            raise ApiError(f"cannot reach {self.url} (is the stack up? try "
                           "'python local/stack.py up' or --url)", EXIT_UNAVAILABLE) from None
        except requests.Timeout:
            raise ApiError(f"{self.url} did not answer in {self.timeout:g}s",
                           EXIT_UNAVAILABLE) from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text.strip()[:200]
            raise ApiError(f"{response.status_code}: {message}", _exit_code(response.status_code))
        return response.json()

    # --- documents ---------------------------------------------------------------------------

    def submit(self, path: Path, flags: dict[str, bool], on_bytes: Callable[[int], None],
               signed_above: int = SIGNED_UPLOAD_ABOVE) -> dict[str, Any]:
        """Upload one file; returns {"jobId", ...} (`jobId` None until a signed upload's
        finalize event has queued it)."""
        size = path.stat().st_size
        if size <= signed_above:
            with path.open("rb") as handle:
                answer = self.call("POST", "/api/documents/async-upload",
                                   files=[("files", (path.name, handle))],
                                   data={k: str(v).lower() for k, v in flags.items()})
            on_bytes(size)
            return dict(answer["jobs"][0])
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "text/plain")
        signed = self.call("POST", "/api/documents/upload-url", json={
            "filename": path.name, "size": size, "contentType": content_type, **flags})
        try:
            with path.open("rb") as handle:
                put = requests.put(signed["url"], data=_CountingReader(handle, size, on_bytes),
                                   headers=signed["headers"], timeout=max(self.timeout, 600))
        except requests.ConnectionError as error:
            raise ApiError(f"upload failed: {error}", EXIT_UNAVAILABLE) from None
        if put.status_code >= 400:
            raise ApiError(f"upload failed: {put.status_code} {put.text[:200]}",
                           _exit_code(put.status_code))
        job_id = put.json().get("jobId") if "json" in put.headers.get("Content-Type", "") else None
        return {"jobId": job_id, "documentId": signed["documentId"], "filename": path.name,
                "size": size}

    def document_job(self, document_id: str, timeout: float = 120) -> str:
        """The job serving a document uploaded by signed URL (queued by the bucket event)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = self.call("GET", f"/api/documents/{document_id}")
            except ApiError as error:
                if error.exit_code != EXIT_NOT_FOUND:
                    raise
            else:
                if "jobId" in answer:
                    return str(answer["jobId"])
            time.sleep(1)
        raise ApiError(f"no job for {document_id} after {timeout:.0f}s", EXIT_UNAVAILABLE)

    # --- jobs and queues ---------------------------------------------------------------------

    def job(self, job_id: str, queue: str) -> dict[str, Any]:
        """The seed's job view (its status routes), or the dashboard's detail for other queues."""
        status_routes = {"documents": "/api/documents/async-upload",
                         "datasets": "/api/datasets/sync"}
        if queue in status_routes:
            return dict(self.call("GET", status_routes[queue], params={"jobId": job_id}))
        return dict(self.call("GET", f"/api/queues/{queue}/jobs/{job_id}"))

    def wait(self, job_id: str, queue: str, on_view: Callable[[dict[str, Any]], None],
             timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.job(job_id, queue)
            on_view(view)
            if view["state"] in {"completed", "failed"}:
                return view
            if time.monotonic() > deadline:
                raise ApiError(f"job {job_id} still {view['state']} after {timeout:.0f}s",
                               EXIT_UNAVAILABLE)
            time.sleep(0.5)


class _CountingReader:
    """A sized file for requests (so it sends Content-Length, not chunks) that reports bytes."""

    def __init__(self, handle: BinaryIO, size: int, on_bytes: Callable[[int], None]) -> None:
        self.handle, self.size, self.on_bytes = handle, size, on_bytes

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        block = self.handle.read(amount)
        self.on_bytes(len(block))
        return block


def progress_of(view: dict[str, Any]) -> float:
    value = view.get("progress", 0)
    return float(value) if isinstance(value, int | float) else 0.0
