"""Wake workers for delayed jobs that are due: a workaround for bullmq-py 3.4.4.

Measured here with a bare bullmq Worker (no heavylift code): a job retried with a backoff longer
than a few seconds (6 s, 12 s, 30 s) stays in `delayed` for good. The worker's blocking wait on
the queue's marker keeps being re-armed without the `moveToActive` call that would promote the
job. Adding a marker entry makes the waiting worker run `moveToActive` at once, and that
promotes every due delayed job (BullMQ's own script does the promotion).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

# BullMQ scores delayed jobs as timestamp_ms * 0x1000 + a counter.
_SCORE_SHIFT = 0x1000


async def wake_for_due_delayed(client: Any, prefix: str, queues: Iterable[str]) -> list[str]:
    """For each queue with a delayed job due now, add a marker; returns the queues woken."""
    due_below = (int(time.time() * 1000) + 1) * _SCORE_SHIFT
    woken = []
    for queue in queues:
        due = await client.zrangebyscore(f"{prefix}:{queue}:delayed", 0, f"({due_below}",
                                         start=0, num=1)
        if due:
            await client.zadd(f"{prefix}:{queue}:marker", {"0": 0})
            woken.append(queue)
    return woken
