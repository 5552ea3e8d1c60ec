"""`POST /api/datasets/sync` and its status route: small syncs inline (200), large ones queued
on `datasets` (202, read in CHUNK_SIZE chunks by the worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Request, Response

from heavylift.api.auth import principal_of
from heavylift.api.errors import ApiError, generic, json_response, read_json
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

    # Not found and rejected carry BigQuery's own message (what the caller needs to fix, no
    # URL: errors.classify keeps the API error's message). The others can name hosts (a
    # connection error's text), accounts or scratch tables: a fixed answer, the detail logged.
    if isinstance(error, SourceNotFoundError):
        return ApiError(404, "source_not_found", str(error))
    if isinstance(error, SourceQueryError):
        return ApiError(400, "bad_query", str(error))
    if isinstance(error, SourceAccessError):
        return generic(403, "source_forbidden", "BigQuery denied access to the source", error)
    if isinstance(error, SourceConflictError):
        return generic(409, "source_conflict", "the sync conflicts with an existing object", error)
    return generic(503, "source_unavailable", "BigQuery unavailable; try again shortly", error)


def sync(request: Request, svc: Services) -> Response:
    # Imported here: google-cloud-bigquery and pyarrow cost the api ~80 MB of RSS, and only this
    # route needs them (bench/upload.py measures the function's memory).
    from heavylift.datasets.errors import SourceError
    from heavylift.datasets.request import SyncRequestError, parse_request
    from heavylift.datasets.service import SyncCompleted, start_sync

    principal = principal_of(request)
    try:
        spec = parse_request(read_json(request), svc.settings, principal.tenant)
    except SyncRequestError as error:
        status = 422 if error.field in _SEMANTIC_FIELDS else 400
        raise ApiError(status, "invalid_field", str(error), error.field) from None
    if not principal.may_sync(spec.datasetId):
        # 403, not 404: refused for any name off the key's allow-list, existing or not, so it
        # confirms nothing; a 404 would send the caller looking for a typo.
        allowed = ", ".join(sorted(principal.datasets or ())) or "none"
        raise ApiError(403, "dataset_forbidden", f"this key may not sync dataset "
                       f"{spec.datasetId!r} (its datasets: {allowed})", "datasetId")
    try:
        answer = start_sync(svc, svc.queues, spec)
    except SourceError as error:
        raise _source_error(error) from None
    status = 200 if isinstance(answer, SyncCompleted) else 202
    return json_response(answer.model_dump(), status)


def sync_status(request: Request, svc: Services) -> Response:
    """`?jobId=ID` -> the job view (same shape as documents); without it the queue counts."""
    return seed_status(request, svc, DATASETS)
