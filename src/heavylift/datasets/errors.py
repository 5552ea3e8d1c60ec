"""What a BigQuery failure means for a sync: permanent (no retry can fix it) or transient.

Transient means the service, not the request, failed: 5xx, 429, 408, gRPC ABORTED / CANCELLED,
a rate-limit, quota or backend reason on a 400 / 403, timeouts and connection errors
(`is_transient`).
Every call retries those itself (capped exponential backoff with jitter, within BQ_TIMEOUT_S:
see clients.py); what is still failing after that surfaces here as SourceUnavailableError.
Anything else is a property of the request or of our state, and retrying it gives the same
answer: not found, rejected (400 and other 4xx), permission denied (401 / 403), already exists
(409). The HTTP route maps them to 404 / 400 / 403 / 409 / 503; the worker fails the job at once
on a permanent one and lets BullMQ retry (with backoff, resuming at the first unwritten chunk) on
a transient one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions


class SourceError(Exception):
    """A BigQuery failure, with a reason fit for `failedReason` and API answers."""

    permanent = True


class SourceNotFoundError(SourceError):
    """The dataset or table does not exist."""


class SourceQueryError(SourceError):
    """BigQuery rejected the request (bad SQL, wrong column types, invalid parameters)."""


class SourceAccessError(SourceError):
    """Missing permission or credentials."""


class SourceConflictError(SourceError):
    """409: what a call would create already exists. Every step of a sync replaces or reuses what
    an earlier attempt left, so this is a bug or a foreign object in BQ_SCRATCH_DATASET: retrying
    the same call cannot help."""


class SourceUnavailableError(SourceError):
    """BigQuery kept failing with server errors, rate limits or timeouts, or stopped answering;
    a later retry may work."""

    permanent = False


# Error reasons (on 400 / 403 answers and failed jobs) that say the service, not the request,
# failed: those google-cloud-bigquery's own DEFAULT_RETRY and DEFAULT_JOB_RETRY retry, and
# quotaExceeded (a 403 that is not about permissions: concurrent-query and per-table update
# quotas free up within minutes, and a daily one by the next attempts' backoff at worst).
TRANSIENT_REASONS = frozenset({
    "rateLimitExceeded", "backendError", "internalError", "badGateway",
    "jobRateLimitExceeded", "jobBackendError", "jobInternalError", "quotaExceeded",
})

_TRANSIENT_TYPES = (
    gexc.ServerError,  # 5xx, also gRPC UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN
    gexc.TooManyRequests,  # 429, also gRPC RESOURCE_EXHAUSTED
    gexc.Aborted,  # gRPC ABORTED (a 409 subclass): a concurrency conflict, retry the call
    gexc.Cancelled,  # gRPC CANCELLED: the call was dropped, not refused
    gexc.RetryError,  # a retry gave up at its deadline
    OSError,  # connection errors and timeouts: requests', socket's, concurrent.futures'
    auth_exceptions.TransportError,  # the token endpoint did not answer
)
_TRANSIENT_CODES = frozenset({408})  # Request Timeout (no exception class of its own)


def is_transient(exc: BaseException) -> bool:
    """Whether a retry of the same call may succeed (the in-call retry's predicate, too)."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        return exc.code in _TRANSIENT_CODES or bool(_reasons(exc) & TRANSIENT_REASONS)
    return False


def is_transient_job_failure(exc: BaseException) -> bool:
    """Whether a query job failed for a transient reason, so that running it again may work
    (the job retry's predicate). Not a call that gave up retrying: its budget is spent."""
    return isinstance(exc, gexc.GoogleAPICallError) and bool(_reasons(exc) & TRANSIENT_REASONS)


def classify(what: str, exc: BaseException) -> SourceError:
    """The SourceError for `exc`, raised while doing `what` (which starts its message)."""
    if is_transient(exc):
        return SourceUnavailableError(f"{what}: BigQuery unavailable: {_message(exc)}")
    if isinstance(exc, gexc.NotFound):
        return SourceNotFoundError(f"{what}: not found: {_message(exc)}")
    if isinstance(exc, gexc.Conflict):
        return SourceConflictError(f"{what}: already exists: {_message(exc)}")
    if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized, auth_exceptions.GoogleAuthError)):
        return SourceAccessError(f"{what}: permission denied: {_message(exc)}")
    # BadRequest (also gRPC INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE), other 4xx.
    return SourceQueryError(f"{what}: rejected: {_message(exc)}")


@contextmanager
def bigquery_errors(what: str) -> Iterator[None]:
    """Turn client-library exceptions raised while doing `what` into SourceErrors."""
    try:
        yield
    except (gexc.GoogleAPIError, OSError, auth_exceptions.GoogleAuthError) as exc:
        raise classify(what, exc) from exc


def _message(exc: BaseException) -> str:
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return f"gave up retrying: {_message(exc.cause)}"
    text = exc.message if isinstance(exc, gexc.GoogleAPICallError) and exc.message else str(exc)
    lines = text.splitlines() or [type(exc).__name__]
    return (lines[0] or type(exc).__name__)[:500]


def _reasons(exc: gexc.GoogleAPICallError) -> set[str]:
    return {str(error.get("reason")) for error in exc.errors or [] if isinstance(error, dict)}
