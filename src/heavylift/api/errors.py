"""Every failure becomes a JSON error with the right status; nothing leaks a stack trace, and no
answer carries an internal URL or path: errors of storage and Redis (whose messages name
buckets, emulator hosts and directories) answer with a fixed message and log the detail."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Request, Response
from pydantic import ValidationError
from pydantic_core import to_json
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from heavylift.documents.errors import DocumentError, EmptyDocumentError, UnsupportedTypeError
from heavylift.documents.intake import TooLargeError, UploadInProgressError
from heavylift.queue import JobNotFoundError, JobStateError, QueueUnavailableError
from heavylift.schemas import first_problem
from heavylift.storage import (
    InvalidKeyError,
    InvalidMetadataError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    UploadSignatureError,
)

log = logging.getLogger("heavylift.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


# Most specific first: DocumentError subclasses before DocumentError. The fourth value, when
# set, is the answer's whole message: the error's own text stays in the log.
_STATUS: list[tuple[type[Exception], int, str, str | None]] = [
    (JobNotFoundError, 404, "not_found", None),
    (ObjectNotFoundError, 404, "not_found", "not found"),
    (JobStateError, 409, "conflict", None),
    (UploadInProgressError, 409, "in_progress", None),
    (QueueUnavailableError, 503, "queue_unavailable", "queue unavailable; try again shortly"),
    (StorageUnavailableError, 503, "storage_unavailable", "storage unavailable; try again shortly"),
    (TooLargeError, 413, "too_large", None),
    (EmptyDocumentError, 400, "empty_file", None),
    (UnsupportedTypeError, 415, "unsupported_type", None),
    (DocumentError, 422, "bad_document", None),
    (UploadSignatureError, 401, "bad_signature", None),
    (InvalidKeyError, 400, "bad_key", "invalid object key"),
    (InvalidMetadataError, 400, "bad_metadata", None),
    # Last: the storage errors above are more precise.
    (StorageError, 503, "storage_error", "storage error"),
]


def generic(status: int, code: str, public: str, error: Exception) -> ApiError:
    """An answer that says only `public`; the detail (URLs, hosts, paths) goes to the log."""
    log.warning(public, extra={"event": "http_error", "code": code, "reason": str(error)})
    return ApiError(status, code, public)


def as_api_error(error: Exception) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, RequestEntityTooLarge):
        return ApiError(413, "too_large", "request body is over the upload limit "
                        "(MAX_UPLOAD_BYTES); large files go through /api/documents/upload-url")
    if isinstance(error, HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return ApiError(error.code or 500, code, error.description or error.name)
    if isinstance(error, ValidationError):
        field, message = first_problem(error)
        return ApiError(422, "invalid_field", f"{field}: {message}", field)
    for kind, status, code, public in _STATUS:
        if isinstance(error, kind):
            if public is not None:
                return generic(status, code, public, error)
            return ApiError(status, code, str(error) or code.replace("_", " "))
    log.exception("unhandled error", extra={"event": "http_error"})
    return ApiError(500, "internal", "internal error")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(to_json(body), status=status, mimetype="application/json", headers=headers)


# Where handle_http leaves MAX_JSON_DEPTH for read_json (handlers get the request, not settings).
JSON_DEPTH_KEY = "heavylift.max_json_depth"
DEFAULT_JSON_DEPTH = 32

# A string literal (skipped whole, escapes included; unterminated: to the end, so no quote is
# rescanned) or one bracket. re scans in C: the check is linear and stops at the first bracket
# over the limit.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def json_too_deep(data: bytes, limit: int) -> bool:
    """Whether `data` nests [ and { deeper than `limit` (brackets inside strings do not count).
    Checked before json.loads, whose recursion would fail a 1,000-deep body with a 500."""
    depth = 0
    for match in _JSON_TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def read_json(request: Request) -> Any:
    """The request's JSON body (null when empty); malformed or over-deep JSON is a 400."""
    data = request.get_data(cache=False) or b"null"
    limit = int(request.environ.get(JSON_DEPTH_KEY, DEFAULT_JSON_DEPTH))
    if json_too_deep(data, limit):
        raise ApiError(400, "json_too_deep",
                       f"JSON body is nested deeper than {limit} levels (MAX_JSON_DEPTH)")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ApiError(400, "malformed_json", f"malformed JSON body: {error}") from None


def error_response(error: Exception) -> Response:
    api_error = as_api_error(error)
    body: dict[str, Any] = {"success": False, "error": api_error.message, "code": api_error.code}
    if api_error.field:
        body["field"] = api_error.field
    return json_response(body, api_error.status)
