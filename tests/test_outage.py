"""`heavylift.outage.through_outage`: a budget of seconds means a last try at its end, whatever
the jittered waits drew (they reach up to 10 s)."""

from __future__ import annotations

import time

import pytest

from heavylift.outage import through_outage


class Down(Exception):
    """The service is not there (yet)."""


def back_after(seconds: float, tries: list[float]) -> str:
    """A call that fails until `seconds` after the first of `tries` (its start times)."""
    tries.append(time.monotonic())
    if tries[-1] - tries[0] < seconds:
        raise Down()
    return "up"


def test_a_service_back_in_the_last_moments_of_the_budget_is_met() -> None:
    for _ in range(3):  # the waits are random: a lucky draw must not be what passes
        tries: list[float] = []
        result = through_outage(lambda tries=tries: back_after(1.85, tries), transient=(Down,),
                                budget_s=2.0, event="test_retry")
        assert result == "up"
        assert 1.85 <= tries[-1] - tries[0] <= 2.1, tries


def test_it_gives_up_after_a_last_try_at_the_end_of_the_budget() -> None:
    tries: list[float] = []
    with pytest.raises(Down):
        through_outage(lambda: back_after(60, tries), transient=(Down,), budget_s=1.0,
                       event="test_retry")
    assert 0.99 <= tries[-1] - tries[0] <= 1.1, tries
    assert time.monotonic() - tries[0] < 1.2


def test_other_errors_are_not_retried() -> None:
    tries: list[float] = []

    def broken() -> None:
        tries.append(time.monotonic())
        raise ValueError("not an outage")

    with pytest.raises(ValueError, match="not an outage"):
        through_outage(broken, transient=(Down,), budget_s=5.0, event="test_retry")
    assert len(tries) == 1
