"""What a BigQuery failure means for a sync: permanent (no retry can fix it) or transient.

The client libraries already retry 5xx, 429 and dropped connections within BQ_TIMEOUT_S; what is
still failing after that surfaces here as one of these errors. The HTTP route maps them to
404 / 400 / 403 / 503; the worker fails the job at once on a permanent one and lets BullMQ retry
(with backoff, resuming at the first unwritten chunk) on a transient one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as gexc


class SourceError(Exception):
    """A BigQuery failure, with a reason fit for `failedReason` and API answers."""

    permanent = True


class SourceNotFoundError(SourceError):
    """The dataset or table does not exist."""


class SourceQueryError(SourceError):
    """BigQuery rejected the query (bad SQL, wrong column types, invalid parameters)."""


class SourceAccessError(SourceError):
    """Missing permission or credentials."""


class SourceUnavailableError(SourceError):
    """BigQuery kept failing with server errors or rate limits; a later retry may work."""

    permanent = False


# 403 reasons that are rate limits, not missing permissions.
_RATE_LIMIT_REASONS = {"rateLimitExceeded", "backendError"}


@contextmanager
def bigquery_errors(what: str) -> Iterator[None]:
    """Turn client-library exceptions raised while doing `what` into SourceErrors."""
    try:
        yield
    except gexc.NotFound as exc:
        raise SourceNotFoundError(f"{what}: not found: {_message(exc)}") from exc
    except gexc.Forbidden as exc:
        if _reasons(exc) & _RATE_LIMIT_REASONS:
            raise SourceUnavailableError(f"{what}: rate limited: {_message(exc)}") from exc
        raise SourceAccessError(f"{what}: permission denied: {_message(exc)}") from exc
    except gexc.Unauthorized as exc:
        raise SourceAccessError(f"{what}: permission denied: {_message(exc)}") from exc
    except gexc.BadRequest as exc:  # also gRPC's InvalidArgument, FailedPrecondition
        raise SourceQueryError(f"{what}: rejected: {_message(exc)}") from exc
    except (gexc.GoogleAPIError, OSError) as exc:  # RetryError, 5xx, requests' errors
        raise SourceUnavailableError(f"{what}: BigQuery unavailable: {exc}") from exc


def _message(exc: gexc.GoogleAPICallError) -> str:
    return str(exc.message or exc).splitlines()[0][:500]


def _reasons(exc: gexc.GoogleAPICallError) -> set[str]:
    return {str(error.get("reason")) for error in exc.errors or [] if isinstance(error, dict)}
