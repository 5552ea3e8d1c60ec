"""The async queue layer over bullmq that both roles use: add with the product's defaults, read job
views and counts, and the admin operations (retry, clean, pause). One bullmq `Queue` (one Redis
connection) per queue name, created on first use and reused.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from heavylift.queue import cancel, records
from heavylift.queue.names import Priority, QueueName
from heavylift.queue.views import job_detail, job_view, user_state
from heavylift.schemas import JobDetail, JobPage, JobState, JobView, QueueCounts
from heavylift.settings import Settings
from heavylift.tenancy import DEFAULT_TENANT

log = logging.getLogger("heavylift.queue")

# bullmq's own state names behind each user-facing state.
_BULL_STATES: dict[JobState, tuple[str, ...]] = {
    "waiting": ("waiting", "prioritized", "paused"),
    "active": ("active", "waiting-children"),  # a flow's parent: its children run
    "completed": ("completed",),
    "failed": ("failed",),
    "delayed": ("delayed",),
}
_ALL_BULL_STATES = tuple(s for states in _BULL_STATES.values() for s in states)
# One clean call is one Lua script: bounded, so Redis (and lock renewal) never stalls on it.
_CLEAN_BATCH = 1000
_CLEANABLE = {"completed", "failed", "delayed", "waiting", "prioritized", "paused", "active"}
# A page of one tenant's jobs is filtered from the newest jobs of the state: at most this many
# are read (in batches), so a page costs bounded Redis work however long the history is.
TENANT_SCAN_LIMIT = 5000
_SCAN_BATCH = 500

REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class QueueUnavailableError(RuntimeError):
    """Redis could not be reached; HTTP answers 503 and nothing is reported as done."""


class JobNotFoundError(LookupError):
    pass


class JobStateError(RuntimeError):
    """The job exists but is not in a state that allows the operation (HTTP 409)."""


def job_options(
    settings: Settings, priority: Priority, job_id: str | None = None
) -> dict[str, Any]:
    """The product's defaults: 3 attempts, exponential backoff, a priority, bounded history."""
    opts: dict[str, Any] = {
        "attempts": settings.job_attempts,
        "backoff": {"type": "exponential", "delay": settings.backoff_base_ms},
        "priority": int(priority),
        "removeOnComplete": {"count": settings.keep_completed},
        "removeOnFail": {"count": settings.keep_failed},
    }
    if job_id is not None:
        opts["jobId"] = job_id
    return opts


def own_key(settings: Settings, *parts: str) -> str:
    """A Redis key of ours beside BullMQ's: `<QUEUE_PREFIX>:heavylift:<parts...>`."""
    return ":".join([settings.queue_prefix, "heavylift", *parts])


# What `redis_client` gives: code that only runs commands on our keys takes either.
AnyRedis = aioredis.Redis | RedisCluster


def redis_client(settings: Settings, **options: Any) -> AnyRedis:
    """An asyncio Redis client for our own keys and streams: a `RedisCluster` (it follows the
    slots it discovers from the endpoint) with REDIS_CLUSTER=true, else a plain one. Same URL,
    so TLS, the CA file and AUTH are the same in both modes. `options`: redis-py's own."""
    url = settings.redis_connection_url()
    if settings.redis_cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, **options)


def bull_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every bullmq Queue and Worker we create."""
    connection: Any = settings.redis_connection_url()
    if settings.redis_cluster:
        # bullmq takes a cluster only as a client. Given a URL it builds a plain client with this
        # retry policy; its blocking waits (BZPOPMIN for up to DRAIN_DELAY_S) need no timeout.
        # A Worker uses this one client for its blocking and its other commands: a cluster
        # client opens a connection per command in flight, so they do not queue behind a wait.
        connection = redis_client(
            settings, decode_responses=True, socket_timeout=None,
            retry=Retry(ExponentialBackoff(cap=20, base=1), 20),
            retry_on_error=[BusyLoadingError, RedisConnectionError, RedisTimeoutError])
    return {"connection": connection, "prefix": settings.queue_prefix}


def tenant_of(data: Any) -> str:
    """The tenant a job belongs to: its data's `tenant` (jobs queued before tenants: default)."""
    tenant = data.get("tenant") if isinstance(data, dict) else None
    return str(tenant) if tenant else DEFAULT_TENANT


def _check_tenant(data: Any, tenant: str | None, name: QueueName, job_id: str) -> None:
    """Another tenant's job is answered exactly like an unknown one (a 403 would confirm it)."""
    if tenant is not None and tenant_of(data) != tenant:
        raise JobNotFoundError(f"job {job_id} not found in queue {name}")


class Queues:
    """Async access to all heavylift queues. Create one per event loop and reuse it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queues: dict[QueueName, Queue] = {}

    def bull(self, name: QueueName) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(str(name), bull_options(self.settings))
        return self._queues[name]

    async def close(self) -> None:
        for queue in self._queues.values():
            await queue.close()
        self._queues.clear()

    @property
    def redis(self) -> Any:
        """A Redis client (decoded strings) for our own small keys: the first queue's."""
        return self.bull(next(iter(QueueName))).client

    async def ping(self) -> None:
        await self.redis.ping()

    # --- producing ---------------------------------------------------------------------------

    async def add(
        self,
        name: QueueName,
        job_name: str,
        data: dict[str, Any],
        priority: Priority,
        job_id: str | None = None,
        parent_id: str | None = None,
    ) -> str:
        """Enqueue one job; with `job_id`, adding the same id twice keeps the first job. With
        `parent_id`, as a child of that job of the same queue (a BullMQ flow): the parent waits
        for it, and its failure wakes the parent (`continueParentOnFailure`)."""
        opts = job_options(self.settings, priority, job_id)
        if parent_id is not None:
            opts["parent"] = {"id": parent_id, "queue": self.bull(name).qualifiedName}
            opts["continueParentOnFailure"] = True
        job = await self.bull(name).add(job_name, data, opts)
        # DEBUG here: a log line costs a third of an enqueue (bench/queue.py). Producers log
        # "queued" once per request at INFO (documents.intake).
        log.debug(
            "job queued",
            extra={"event": "queued", "queue": str(name), "jobId": str(job.id),
                   "jobName": job_name, "priority": int(priority)},
        )
        return str(job.id)

    async def add_bulk(
        self, name: QueueName, job_name: str, items: list[dict[str, Any]], priority: Priority
    ) -> list[str]:
        opts = job_options(self.settings, priority)
        if self.settings.redis_cluster:
            # bullmq's addBulk is a MULTI of EVALSHAs, which redis-py's cluster pipeline refuses:
            # one add per job (each atomic, the batch not), in order.
            return [await self.add(name, job_name, data, priority) for data in items]
        jobs = await self.bull(name).addBulk(
            [{"name": job_name, "data": data, "opts": opts} for data in items]
        )
        return [str(job.id) for job in jobs]

    # --- reading -----------------------------------------------------------------------------

    async def counts(self, name: QueueName) -> QueueCounts:
        raw = await self.bull(name).getJobCounts(*_ALL_BULL_STATES)
        return QueueCounts(**{state: sum(raw[s] for s in bull_states)
                              for state, bull_states in _BULL_STATES.items()})

    async def _job_and_state(self, name: QueueName, job_id: str) -> tuple[Any, JobState]:
        """The job hash and its state are two reads: read the state first, and re-read the job
        when it finished in between, so a view never says `failed` with empty fields."""
        queue = self.bull(name)
        state = user_state(await queue.getJobState(job_id))
        job = await queue.getJob(job_id)
        if job is None or state is None:
            raise JobNotFoundError(f"job {job_id} not found in queue {name}")
        if state in ("waiting", "active", "delayed") and job.finishedOn:
            state = user_state(await queue.getJobState(job_id)) or state
        return job, state

    async def view(self, name: QueueName, job_id: str, tenant: str | None = None) -> JobView:
        """The job's view; with `tenant`, only if the job is that tenant's."""
        try:
            job, state = await self._job_and_state(name, job_id)
        except JobNotFoundError:
            record = await self._record(name, job_id)
            _check_tenant(record.data, tenant, name, job_id)
            return records.as_view(record)
        _check_tenant(job.data, tenant, name, job_id)
        return job_view(job, state)

    async def detail(self, name: QueueName, job_id: str) -> JobDetail:
        try:
            job, state = await self._job_and_state(name, job_id)
        except JobNotFoundError:
            return await self._record(name, job_id)
        return job_detail(job, state, str(name))

    # --- durable records of finished jobs (queue.records) ---------------------------------------

    def _record_key(self, name: QueueName, job_id: str) -> str:
        return own_key(self.settings, "record", str(name), job_id)

    async def _record(self, name: QueueName, job_id: str) -> JobDetail:
        """A job BullMQ no longer knows, from its record; JobNotFoundError when there is none."""
        record = await records.load(self.redis, self._record_key(name, job_id))
        if record is None:
            raise JobNotFoundError(f"job {job_id} not found in queue {name}")
        return record

    async def record_finished(
        self, name: QueueName, job: Any, result: Any = None, error: BaseException | None = None
    ) -> None:
        """Called by the processor as a job completes (`result`) or fails (`error`): keep its view
        for RESULT_TTL_S. A failure BullMQ will retry is not terminal and is not recorded."""
        if error is not None and records.will_retry(job, error):
            return
        record = records.finished_record(job, str(name), result, error)
        try:
            await records.save(self.redis, self._record_key(name, record.id), record,
                               self.settings.result_ttl_s)
        except REDIS_DOWN_ERRORS as down:
            # Redis is down, so BullMQ cannot store the outcome either; the job itself is not
            # failed for it (the stalled check hands it back, and the next run records it).
            log.warning("job record not written", extra={
                "event": "record_failed", "queue": str(name), "jobId": record.id,
                "reason": str(down)})

    async def page(
        self, name: QueueName, state: JobState, page: int = 1, page_size: int = 20,
        tenant: str | None = None,
    ) -> JobPage:
        """One page of jobs in a state, newest first (Bull's order for finished jobs); with
        `tenant`, of that tenant's jobs only (`_tenant_page`)."""
        if tenant is not None:
            return await self._tenant_page(name, state, page, page_size, tenant)
        start = (page - 1) * page_size
        queue = self.bull(name)
        bull_states = _BULL_STATES[state]
        jobs = await queue.getJobs(list(bull_states), start, start + page_size - 1, asc=False)
        total = sum((await queue.getJobCounts(*bull_states)).values())
        return JobPage(
            state=state, page=page, pageSize=page_size, total=total,
            jobs=[job_view(job, state) for job in jobs],
        )

    async def _tenant_page(
        self, name: QueueName, state: JobState, page: int, page_size: int, tenant: str
    ) -> JobPage:
        """Filtered from the newest TENANT_SCAN_LIMIT jobs in the state: `total` counts the
        tenant's jobs among those (older ones are not listed)."""
        queue, bull_states = self.bull(name), list(_BULL_STATES[state])
        mine: list[Any] = []
        for start in range(0, TENANT_SCAN_LIMIT, _SCAN_BATCH):
            batch = await queue.getJobs(bull_states, start, start + _SCAN_BATCH - 1, asc=False)
            mine += [job for job in batch if tenant_of(job.data) == tenant]
            if len(batch) < _SCAN_BATCH:
                break
        first = (page - 1) * page_size
        return JobPage(state=state, page=page, pageSize=page_size, total=len(mine),
                       jobs=[job_view(job, state) for job in mine[first:first + page_size]])

    # --- admin -------------------------------------------------------------------------------

    async def retry(self, name: QueueName, job_id: str) -> JobView:
        job, state = await self._job_and_state(name, job_id)
        if state != "failed":
            raise JobStateError(f"job {job_id} is {state}; only failed jobs can be retried")
        await self.clear_cancel(name, job_id)  # a mark left by a cancel that lost a race
        await job.retry("failed", {"resetAttemptsMade": True})
        log.info("job retried", extra={"event": "retried", "queue": str(name), "jobId": job_id})
        return await self.view(name, job_id)

    async def cancel(self, name: QueueName, job_id: str) -> JobView:
        """Fail a job no worker holds as cancelled at once; for an active one, ask the worker
        holding it (queue.cancel). Returns the view right after: `active` until that worker
        has stopped it. JobStateError for a finished job."""
        try:
            _, state = await self._job_and_state(name, job_id)
        except JobNotFoundError:  # trimmed by BullMQ: finished, if its record says so
            record = await self._record(name, job_id)
            raise JobStateError(f"job {job_id} already {record.state}") from None
        if state in ("completed", "failed"):
            raise JobStateError(f"job {job_id} already {state}")
        if await self._fail_untaken(name, job_id):  # no worker holds it (the script checks)
            return await self.view(name, job_id)
        # Active, or taken by a worker since we looked: the holder stops it.
        key = cancel.mark_key(self.settings.queue_prefix, str(name), job_id)
        await self.redis.set(key, "1", ex=cancel.MARK_TTL_S)
        await self.redis.publish(cancel.channel(self.settings.queue_prefix),
                                 cancel.message(str(name), job_id))
        log.info("job cancel requested", extra={"event": "cancel_requested",
                                                "queue": str(name), "jobId": job_id})
        return await self.view(name, job_id)

    async def _fail_untaken(self, name: QueueName, job_id: str) -> bool:
        """Fail a job no worker holds as cancelled (queue.cancel.FAIL_UNTAKEN) and record it;
        False if a worker holds it (or it finished) by now."""
        queue = self.bull(name)
        keys = queue.keys
        job_key = f"{keys['']}{job_id}"
        taken_from = await self.redis.eval(
            cancel.FAIL_UNTAKEN, 9, job_key, f"{job_key}:lock", keys["wait"], keys["paused"],
            keys["prioritized"], keys["delayed"], keys["failed"], keys["events"],
            keys["waiting-children"], job_id, int(time.time() * 1000), cancel.CANCELLED_REASON)
        if not taken_from:
            return False
        if taken_from == "waiting-children":  # a flow's parent: its unfinished children too
            # Let go of them first, so their cancellations do not record child failures on it.
            children = await self.redis.smembers(f"{job_key}:dependencies")
            await self.redis.delete(f"{job_key}:dependencies")
            for child_key in children:
                with contextlib.suppress(JobNotFoundError, JobStateError):
                    await self.cancel(name, str(child_key).removeprefix(keys[""]))
        job = await queue.getJob(job_id)
        record = job_detail(job, "failed", str(name))
        await records.save(self.redis, self._record_key(name, job_id), record,
                           self.settings.result_ttl_s)
        log.info("job cancelled", extra={"event": "cancelled", "queue": str(name),
                                         "jobId": job_id, "from": taken_from})
        return True

    async def clear_cancel(self, name: QueueName, job_id: str) -> None:
        await self.redis.delete(cancel.mark_key(self.settings.queue_prefix, str(name), job_id))

    async def retry_all_failed(self, name: QueueName) -> int:
        failed = (await self.counts(name)).failed
        await self.bull(name).retryJobs({"state": "failed", "count": 1000})
        log.info("failed jobs retried", extra={"event": "retried", "queue": str(name),
                                                "count": failed})
        return failed

    async def clean(self, name: QueueName, state: str, older_than_ms: int = 0) -> int:
        """Remove jobs in `state` that finished (or were created) more than `older_than_ms` ago."""
        if state not in _CLEANABLE:
            raise ValueError(f"cannot clean state {state!r}; use one of {sorted(_CLEANABLE)}")
        targets = _BULL_STATES.get(state, (state,))  # type: ignore[call-overload]
        removed = 0
        for bull_state in targets:
            while True:
                batch = await self.bull(name).clean(older_than_ms, _CLEAN_BATCH, bull_state)
                removed += len(batch)
                if len(batch) < _CLEAN_BATCH:
                    break
        return removed

    async def pause(self, name: QueueName) -> None:
        await self.bull(name).pause()

    async def resume(self, name: QueueName) -> None:
        await self.bull(name).resume()

    async def is_paused(self, name: QueueName) -> bool:
        return bool(await self.bull(name).isPaused())

