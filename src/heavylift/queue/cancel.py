"""Cancelling a job wherever it is (issue 15).

A job no worker holds (waiting, prioritized, paused, delayed, or a flow's parent waiting for its
children, whose children are then cancelled too) is failed on the spot by one Lua
script (`FAIL_UNTAKEN`), atomically with taking it out of its list or set, so no worker can take
it meanwhile: it never runs. A job a worker holds (active) can only be stopped by that worker:
BullMQ's lock token is the worker's, and bullmq-py's own `Worker.cancelJob` only reaches the
process that runs the job. So the API leaves a cancel mark (`<QUEUE_PREFIX>:heavylift:cancel:
<queue>:<jobId>`, with a TTL) and publishes `<queue>:<jobId>` on `<QUEUE_PREFIX>:heavylift:cancel`;
every worker process listens on that channel and, as a backstop for a missed message, reads the
marks of the jobs it holds twice a second (`runtime.cancel`). The holder stops the job and fails it
with `JobCancelledError` (unrecoverable: no retry).

Knows no job kind.
"""

from __future__ import annotations

from bullmq.custom_errors import UnrecoverableError

CANCELLED_REASON = "cancelled"
# A mark outlives any wait for its job: one whose worker died goes back to waiting and is
# cancelled by the next worker that takes it. The holder deletes it once the job has failed.
MARK_TTL_S = 24 * 3600


class JobCancelledError(UnrecoverableError):  # type: ignore[misc]
    """The job was cancelled through the API: failed at once, never retried."""

    def __init__(self) -> None:
        super().__init__(CANCELLED_REASON)


def mark_key(prefix: str, queue: str, job_id: str) -> str:
    return f"{prefix}:heavylift:cancel:{queue}:{job_id}"


def channel(prefix: str) -> str:
    return f"{prefix}:heavylift:cancel"


def message(queue: str, job_id: str) -> str:
    return f"{queue}:{job_id}"


def parse_message(data: str | bytes) -> tuple[str, str]:
    text = data.decode() if isinstance(data, bytes) else data
    queue, _, job_id = text.partition(":")
    return queue, job_id


# KEYS: job hash, its lock, wait, paused, prioritized, delayed, failed, events, waiting-children.
# ARGV: job id, now (ms), reason. Returns the state the job was taken from, or false when no
# worker-free list or set holds it (it is active, finished or gone). The fields and the event
# are the ones BullMQ's moveToFinished writes for a failure (attemptsMade stays: it never ran).
# BullMQ trims the failed set (removeOnFail) at its next failure; the job's record outlives that.
FAIL_UNTAKEN = """
if redis.call("EXISTS", KEYS[1]) == 0 or redis.call("EXISTS", KEYS[2]) == 1 then
  return false
end
local id = ARGV[1]
local from
if redis.call("LREM", KEYS[3], 0, id) > 0 then from = "wait"
elseif redis.call("LREM", KEYS[4], 0, id) > 0 then from = "paused"
elseif redis.call("ZREM", KEYS[5], id) > 0 then from = "prioritized"
elseif redis.call("ZREM", KEYS[6], id) > 0 then from = "delayed"
elseif redis.call("ZREM", KEYS[9], id) > 0 then from = "waiting-children"
else return false end
redis.call("HSET", KEYS[1], "failedReason", ARGV[3], "finishedOn", ARGV[2])
redis.call("ZADD", KEYS[7], ARGV[2], id)
redis.call("XADD", KEYS[8], "*", "event", "failed", "jobId", id, "failedReason", ARGV[3],
           "prev", from)
return from
"""
