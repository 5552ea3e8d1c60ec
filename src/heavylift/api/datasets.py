"""`POST /api/datasets/sync` and its status route: small syncs inline (200), large ones queued
on `datasets` (202, read in CHUNK_SIZE chunks by the worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Request, Response

from heavylift.api.errors import ApiError, json_response, read_json
from heavylift.api.queue_admin import seed_status
from heavylift.api.services import Services
from heavylift.datasets.job import QUEUE as DATASETS

if TYPE_CHECKING:
    from heavylift.datasets.errors import SourceError

# Well-formed but unacceptable values (422); anything else is a malformed request (400), which
# includes identifiers that fail the safe pattern (an injection attempt is a bad request).
_SEMANTIC_FIELDS = {"startDate", "endDate", "chunkSize", "chunkDelayMs"}


def _source_error(error: SourceError) -> ApiError:
    from heavylift.datasets.errors import (
        SourceAccessError,
        SourceConflictError,
        SourceNotFoundError,
        SourceQueryError,
    )

    if isinstance(error, SourceNotFoundError):
        return ApiError(404, "source_not_found", str(error))
    if isinstance(error, SourceQueryError):
        return ApiError(400, "bad_query", str(error))
    if isinstance(error, SourceAccessError):
        return ApiError(403, "source_forbidden", str(error))
    if isinstance(error, SourceConflictError):
        return ApiError(409, "source_conflict", str(error))
    return ApiError(503, "source_unavailable", str(error))


def sync(request: Request, svc: Services) -> Response:
    # Imported here: google-cloud-bigquery and pyarrow cost the api ~80 MB of RSS, and only this
    # route needs them (bench/upload.py measures the function's memory).
    from heavylift.datasets.errors import SourceError
    from heavylift.datasets.request import SyncRequestError, parse_request
    from heavylift.datasets.service import SyncCompleted, start_sync

    try:
        spec = parse_request(read_json(request), svc.settings)
    except SyncRequestError as error:
        status = 422 if error.field in _SEMANTIC_FIELDS else 400
        raise ApiError(status, "invalid_field", str(error), error.field) from None
    try:
        answer = start_sync(svc, svc.queues, spec)
    except SourceError as error:
        raise _source_error(error) from None
    status = 200 if isinstance(answer, SyncCompleted) else 202
    return json_response(answer.model_dump(), status)


def sync_status(request: Request, svc: Services) -> Response:
    """`?jobId=ID` -> the job view (same shape as documents); without it the queue counts."""
    return seed_status(request, svc, DATASETS)
