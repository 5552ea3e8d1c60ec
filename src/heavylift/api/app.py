"""The api function's routes (werkzeug's URL map: the router Flask itself uses) and the
request-thread half of serving them: a request whose body is already read runs its handler here.
The event-loop half (limits, keys, bodies, streams) is `heavylift.api.asgi`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from flask import Request, Response
from starlette.datastructures import MutableHeaders
from werkzeug.routing import Map, Rule

from heavylift.api import datasets, documents, queue_admin, web_pages
from heavylift.api.errors import JSON_DEPTH_KEY, error_response
from heavylift.api.job_events import job_events
from heavylift.api.queue_live import queue_events
from heavylift.api.services import Services
from heavylift.tenancy import Role

log = logging.getLogger("heavylift.api")

Handler = Callable[..., Response]
StreamHandler = Callable[..., Awaitable[Any]]


class Access(Enum):
    KEY = "key"  # an API key in the Authorization header or the cookie
    SIGNED = "signed"  # the signed URL is the credential
    PAGE = "page"  # checks the key itself: without one, a sign-in page rather than JSON


# endpoint -> (handler, how it is admitted, the role a KEY route's key needs: heavylift.tenancy;
# pages take any key); run in a request thread once the body is read.
ROUTES: dict[str, tuple[Handler, Access, Role | None]] = {
    "upload": (documents.upload, Access.KEY, "submit"),
    "upload_status": (documents.upload_status, Access.KEY, "read"),
    "upload_url": (documents.upload_url, Access.KEY, "submit"),
    "local_put": (documents.local_put, Access.SIGNED, None),
    "document": (documents.document, Access.KEY, "read"),
    "reprocess": (documents.reprocess, Access.KEY, "submit"),
    "dataset_sync": (datasets.sync, Access.KEY, "submit"),
    "dataset_sync_status": (datasets.sync_status, Access.KEY, "read"),
    "queues": (queue_admin.overview, Access.KEY, "read"),
    "queue_jobs": (queue_admin.jobs, Access.KEY, "read"),
    "queue_job": (queue_admin.job, Access.KEY, "admin"),
    "queue_job_retry": (queue_admin.retry, Access.KEY, "admin"),
    "queue_job_cancel": (queue_admin.cancel, Access.KEY, "admin"),
    "queue_retry_failed": (queue_admin.retry_failed, Access.KEY, "admin"),
    "queue_clean": (queue_admin.clean, Access.KEY, "admin"),
    "queue_pause": (queue_admin.pause, Access.KEY, "admin"),
    "queue_resume": (queue_admin.resume, Access.KEY, "admin"),
    "upload_page": (web_pages.upload_page, Access.PAGE, None),
    "admin_page": (web_pages.admin_page, Access.PAGE, None),
    "asset": (web_pages.asset, Access.PAGE, None),
}

# Writes whose body is a form upload; every other write takes JSON (heavylift.api.csrf).
MULTIPART = frozenset({"upload"})

# Server-Sent Events, served on the event loop (an open stream holds no thread). EventSource
# cannot send headers: these also take the key as `?key=`.
STREAMS: dict[str, tuple[StreamHandler, Role]] = {
    "job_events": (job_events, "read"), "queue_events": (queue_events, "read")}

URLS = Map([
    Rule("/api/documents/async-upload", methods=["POST"], endpoint="upload"),
    Rule("/api/documents/async-upload", methods=["GET"], endpoint="upload_status"),
    Rule("/api/documents/upload-url", methods=["POST"], endpoint="upload_url"),
    Rule("/api/storage/upload", methods=["PUT"], endpoint="local_put"),
    Rule("/api/documents/<doc_id>", methods=["GET"], endpoint="document"),
    Rule("/api/documents/<doc_id>/reprocess", methods=["POST"], endpoint="reprocess"),
    Rule("/api/datasets/sync", methods=["POST"], endpoint="dataset_sync"),
    Rule("/api/datasets/sync", methods=["GET"], endpoint="dataset_sync_status"),
    Rule("/api/jobs/<job_id>/events", methods=["GET"], endpoint="job_events"),
    Rule("/api/queues", methods=["GET"], endpoint="queues"),
    Rule("/api/queues/events", methods=["GET"], endpoint="queue_events"),
    Rule("/api/queues/<queue>/jobs", methods=["GET"], endpoint="queue_jobs"),
    Rule("/api/queues/<queue>/jobs/<job_id>", methods=["GET"], endpoint="queue_job"),
    Rule("/api/queues/<queue>/jobs/<job_id>/retry", methods=["POST"],
         endpoint="queue_job_retry"),
    Rule("/api/queues/<queue>/jobs/<job_id>/cancel", methods=["POST"],
         endpoint="queue_job_cancel"),
    Rule("/api/queues/<queue>/retry-failed", methods=["POST"], endpoint="queue_retry_failed"),
    Rule("/api/queues/<queue>/clean", methods=["POST"], endpoint="queue_clean"),
    Rule("/api/queues/<queue>/pause", methods=["POST"], endpoint="queue_pause"),
    Rule("/api/queues/<queue>/resume", methods=["POST"], endpoint="queue_resume"),
    Rule("/", methods=["GET"], endpoint="upload_page"),
    Rule("/upload", methods=["GET"], endpoint="upload_page"),
    Rule("/admin/queues", methods=["GET"], endpoint="admin_page"),
    Rule("/web/<name>", methods=["GET"], endpoint="asset"),
])


def dispatch(environ: dict[str, Any], endpoint: str, args: dict[str, Any],
             svc: Services) -> Response:
    """Run one route's handler on a request whose body is in `environ` already; any failure
    becomes its JSON error. Called in a request thread: handlers block on Redis and storage."""
    request = Request(environ)
    request.environ[JSON_DEPTH_KEY] = svc.settings.max_json_depth
    handler = ROUTES[endpoint][0]
    try:
        return handler(request, svc, **args)
    except Exception as error:
        return error_response(error)


# JSON never needs scripts, frames or sub-resources. The pages bring their own policy
# (web_pages.page_policy); any other answer, HTML included, gets this strictest one.
_STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"


def secure_headers(headers: MutableHeaders) -> None:
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Content-Security-Policy", _STRICT_CSP)


def log_request(method: str, path: str, status: int) -> None:
    # Cut: a refused 8 MB path should not become an 8 MB log line.
    fields: dict[str, Any] = {"event": "http", "method": method, "path": path[:512],
                              "status": status}
    log.info("request", extra=fields)
