"""Riding out a short outage inside one call: the same call again, after capped exponential
waits with full jitter, until a budget of seconds is spent; then the last error is raised and
the job's attempt fails (BullMQ retries it with its own, longer backoff)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

T = TypeVar("T")
log = logging.getLogger("heavylift.outage")

# A random wait below 0.5, 1, 2, 4... s, capped at 10 s: many callers hitting one recovering
# service do not come back in step.
_WAIT = wait_random_exponential(multiplier=0.5, max=10)


def through_outage(
    call: Callable[[], T],
    *,
    transient: tuple[type[BaseException], ...],
    budget_s: float,
    event: str,
    **fields: Any,
) -> T:
    """`call()`, tried again on `transient` errors until `budget_s` has passed: the last wait
    is cut short so that a last try starts at the budget's end (it gives up within the budget
    plus one try). Each retry logs `event`."""

    def wait(state: RetryCallState) -> float:
        # A jittered wait may reach past the budget (up to 10 s): giving up rather than waiting
        # less once cut an 8 s budget to 4.6 s, and lost the FAILED manifest it was for.
        left = budget_s - (state.seconds_since_start or 0.0)
        return max(0.0, min(_WAIT(state), left))

    def log_retry(state: RetryCallState) -> None:
        outcome = state.outcome
        log.warning("unavailable, retrying", extra={
            "event": event, **fields, "attempt": state.attempt_number,
            "reason": str(outcome.exception()) if outcome is not None else None,
            "waitS": round(state.upcoming_sleep, 2)})

    retrying = Retrying(
        retry=retry_if_exception_type(transient),
        stop=stop_after_delay(budget_s),
        wait=wait,
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(call)
