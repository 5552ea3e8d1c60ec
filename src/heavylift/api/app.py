"""Routing for the `api` function (werkzeug's URL map: the router Flask itself uses)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Request, Response
from werkzeug.routing import Map, Rule

from heavylift.api import datasets, documents, queue_admin, web_pages
from heavylift.api.auth import require_api_key
from heavylift.api.errors import JSON_DEPTH_KEY, ApiError, error_response
from heavylift.api.job_events import job_events
from heavylift.api.queue_live import queue_events
from heavylift.api.services import Services, services

log = logging.getLogger("heavylift.api")

Handler = Callable[..., Response]

# endpoint -> (handler, needs an API key)
_ROUTES: dict[str, tuple[Handler, bool]] = {
    "upload": (documents.upload, True),
    "upload_status": (documents.upload_status, True),
    "upload_url": (documents.upload_url, True),
    "local_put": (documents.local_put, False),  # the signed URL is the credential
    "document": (documents.document, True),
    "reprocess": (documents.reprocess, True),
    "dataset_sync": (datasets.sync, True),
    "dataset_sync_status": (datasets.sync_status, True),
    "job_events": (job_events, True),
    "queues": (queue_admin.overview, True),
    "queue_events": (queue_events, True),
    "queue_jobs": (queue_admin.jobs, True),
    "queue_job": (queue_admin.job, True),
    "queue_job_retry": (queue_admin.retry, True),
    "queue_retry_failed": (queue_admin.retry_failed, True),
    "queue_clean": (queue_admin.clean, True),
    "queue_pause": (queue_admin.pause, True),
    "queue_resume": (queue_admin.resume, True),
    # Pages check the key themselves: without one they answer with a sign-in page, not JSON.
    "upload_page": (web_pages.upload_page, False),
    "admin_page": (web_pages.admin_page, False),
    "asset": (web_pages.asset, False),
}

# EventSource cannot send headers: these streams also take the key as `?key=`.
_STREAMS = {"job_events", "queue_events"}

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
    Rule("/api/queues/<queue>/retry-failed", methods=["POST"], endpoint="queue_retry_failed"),
    Rule("/api/queues/<queue>/clean", methods=["POST"], endpoint="queue_clean"),
    Rule("/api/queues/<queue>/pause", methods=["POST"], endpoint="queue_pause"),
    Rule("/api/queues/<queue>/resume", methods=["POST"], endpoint="queue_resume"),
    Rule("/", methods=["GET"], endpoint="upload_page"),
    Rule("/upload", methods=["GET"], endpoint="upload_page"),
    Rule("/admin/queues", methods=["GET"], endpoint="admin_page"),
    Rule("/web/<name>", methods=["GET"], endpoint="asset"),
])


def _limit_url(request: Request, svc: Services) -> None:
    """A huge URL costs CPU in every later step (routing, query parsing): refuse it first.
    The server's own request-line limit does not help: functions-framework turns gunicorn's off
    (`limit_request_line=0`), and the in-process app has none."""
    environ = request.environ
    # RAW_URI is the request line's target under gunicorn, but only the path under werkzeug's
    # test client: the longer of it and path + query counts.
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    length = max(len(raw), len(environ.get("PATH_INFO", "")) + 1
                 + len(environ.get("QUERY_STRING", "")))
    limit = svc.settings.max_url_bytes
    if length > limit:
        raise ApiError(414, "uri_too_long", f"request URL is over {limit} bytes (MAX_URL_BYTES)")


def _limit_body(request: Request, svc: Services) -> None:
    """Oversize bodies get a clean 413 before they are read (Flask >= 3.1: per request).
    Multipart framing adds a little on top of the files themselves."""
    allowed = svc.settings.max_upload_bytes + 1024 * 1024
    request.max_content_length = allowed
    request.environ[JSON_DEPTH_KEY] = svc.settings.max_json_depth


def _route(request: Request) -> Response:
    svc = services()
    _limit_url(request, svc)
    endpoint, args = URLS.bind_to_environ(request.environ).match()
    handler, needs_key = _ROUTES[endpoint]
    if needs_key:
        require_api_key(request, svc.settings, allow_query=endpoint in _STREAMS)
    _limit_body(request, svc)
    return handler(request, svc, **args)


def handle_http(request: Request) -> Response:
    try:
        response = _route(request)
    except Exception as error:
        response = error_response(error)
        # A streamed answer tells functions-framework not to drain the body first: a refused
        # request (401 before auth, 413 oversize, 414) must not cost reading up to 32 MB.
        response.response = iter([response.get_data()])
    _secure_headers(response)
    _log_request(request, response)
    return response


# JSON never needs scripts, frames or sub-resources. The pages bring their own policy
# (web_pages.page_policy); any other answer, HTML included, gets this strictest one.
_STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"


def _secure_headers(response: Response) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Content-Security-Policy", _STRICT_CSP)


def _log_request(request: Request, response: Response) -> None:
    # Cut: a refused 8 MB path should not become an 8 MB log line.
    fields: dict[str, Any] = {"event": "http", "method": request.method,
                              "path": request.path[:512], "status": response.status_code}
    log.info("request", extra=fields)
