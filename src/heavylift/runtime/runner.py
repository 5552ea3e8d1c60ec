"""The long-running worker: one bullmq Worker per queue, lifecycle logs, graceful shutdown,
Redis outage handling and the /healthz server.

Shutdown (SIGTERM/SIGINT): stop taking jobs, give active ones `SHUTDOWN_GRACE_S` to finish, then
hand the rest back (moved to delayed with no attempt counted, so any worker picks them up at once)
and exit 0, all within SHUTDOWN_GRACE_S + 1 s even when a job hangs (see runtime.deadline).

A SIGKILLed worker's jobs come back through BullMQ's stalled check (see README, "recovery"); that
is a stall, not a failure: no attempt is used, bullmq counts it on the job (`stc`, shown as
`stalls`) and fails the job only after MAX_STALLS of them.

JOB_CONCURRENCY bounds the jobs running in this process across all its queues: each queue's
bullmq Worker may take up to that many (QUEUE_CONCURRENCY caps one queue lower), and a shared
semaphore lets only JOB_CONCURRENCY of them run. A job waiting for a slot is already taken (active
in Redis) and bullmq keeps renewing its lock, so it cannot stall; the cost is that other worker
processes cannot take it meanwhile (a process holds at most queues x per-queue concurrency jobs).
Gating bullmq's fetch loop instead would need its internals; a taken job that finds the worker
stopping is handed back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import redis.asyncio as aioredis
from bullmq import Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError
from tenacity import AsyncRetrying, RetryCallState, stop_after_delay, wait_exponential

from heavylift.logs import log_event
from heavylift.queue import QueueName, Queues, bull_options, records, redis_client
from heavylift.queue.cancel import JobCancelledError
from heavylift.resources import Resources
from heavylift.runtime import metrics
from heavylift.runtime.cancel import CancelWatch, clear_mark
from heavylift.runtime.context import JobContext, Registry
from heavylift.runtime.deadline import ShutdownDeadline, own_default_executor
from heavylift.runtime.delayed import wake_for_due_delayed
from heavylift.runtime.health import Health, HealthServer
from heavylift.runtime.offload import CpuPool
from heavylift.runtime.watchdog import JobStuckError, watch_progress
from heavylift.settings import Settings

log = logging.getLogger("heavylift.worker")

EXIT_OK = 0
EXIT_REDIS_DOWN = 3


class RedisWatch:
    """Pings Redis on its own connection; tracks how long it has been unreachable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = redis_client(settings, socket_timeout=2, socket_connect_timeout=2)
        self.down_since: float | None = None

    async def ping(self) -> bool:
        try:
            await self.client.ping()
        except (OSError, aioredis.RedisError):
            return False
        return True

    async def wait_until_up(self) -> None:
        """Start-up: retry with exponential backoff, logging each failure, up to the limit."""

        def log_retry(state: RetryCallState) -> None:
            log.warning(
                "redis unreachable, retrying",
                extra={"event": "redis_down", "redis": self.settings.redacted_redis_url(),
                       "attempt": state.attempt_number},
            )

        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.settings.redis_max_outage_s),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=log_retry,
            reraise=True,
        ):
            with attempt:
                await self.client.ping()

    async def outage_exceeded(self) -> bool:
        """One check; logs transitions; True once the outage is longer than allowed."""
        if await self.ping():
            if self.down_since is not None:
                log.info("redis reachable again", extra={
                    "event": "redis_up", "downFor": round(time.monotonic() - self.down_since, 1)})
            self.down_since = None
            return False
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("redis unreachable", extra={
                "event": "redis_down", "redis": self.settings.redacted_redis_url()})
        return now - self.down_since > self.settings.redis_max_outage_s

    async def close(self) -> None:
        await self.client.aclose()


class WorkerRuntime:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.cpu = CpuPool(settings.cpu_workers, settings.pool_memory_mb)
        self.resources = Resources(settings)
        self.redis = RedisWatch(settings)
        self.queues = Queues(settings)  # counts for /metrics
        self.workers: list[Worker] = []
        self.active: dict[str, JobContext] = {}  # taken jobs, running or waiting for a slot
        self.slots = asyncio.Semaphore(settings.job_concurrency)  # shared by every queue
        self.deadline = ShutdownDeadline(settings.shutdown_grace_s)
        self.stopping = asyncio.Event()
        self.exit_code = EXIT_OK
        self.health = HealthServer(settings.port, self.health_status, self._refresh_metrics)
        self.cancels = CancelWatch(self.redis.client, settings.queue_prefix,
                                   self.active.values, self._cancel)
        self._watch: asyncio.Future[None] | None = None
        self._cancel_watch: asyncio.Future[None] | None = None

    def health_status(self) -> Health:
        return Health(
            status="stopping" if self.stopping.is_set() else "ok",
            redis="down" if self.redis.down_since is not None else "ok",
            queues=[str(queue) for queue in self.registry],
            activeJobs=sum(1 for ctx in self.active.values() if ctx.started_at is not None),
        )

    async def _refresh_metrics(self) -> None:
        await metrics.refresh_queue_depth(self.queues, list(self.registry))

    # --- job dispatch ------------------------------------------------------------------------

    def _processor_for(self, queue: QueueName) -> Any:
        processors = self.registry[queue]

        async def process(job: Any, token: str) -> Any:
            ctx = JobContext(job, token, queue, self.cpu, self.resources)
            fields = {"queue": str(queue), "jobId": ctx.id, "jobName": ctx.name,
                      "attempt": ctx.attempt}
            processor = processors.get(ctx.name)
            if processor is None:
                error = UnrecoverableError(f"no processor for job name {ctx.name!r} on {queue}")
                self._log_failure(job, error, fields, 0.0)
                raise error
            key = f"{queue}:{ctx.id}:{token}"
            self.active[key] = ctx
            ctx.task = asyncio.current_task()  # cancelled by a shutdown hand-back
            try:
                async with self.slots:
                    return await self._run(processor, ctx, fields)
            except asyncio.CancelledError:
                if ctx.handed_back:  # still waiting for a slot when it was handed back
                    raise DelayedError() from None
                if ctx.cancelled:  # cancelled while waiting for a slot
                    cancelled = JobCancelledError()
                    await self._failed(ctx, cancelled, fields, 0.0)
                    raise cancelled from None
                raise
            finally:
                self.active.pop(key, None)

        return process

    async def _run(self, processor: Any, ctx: JobContext, fields: dict[str, Any]) -> Any:
        """One attempt of a job that holds a slot: logs, metrics, the watchdog."""
        if self.stopping.is_set():  # taken while we were stopping: give it straight back
            await self._hand_back(ctx)
            raise DelayedError()
        ctx.started_at = started = time.monotonic()
        ctx.last_activity = started
        log_event(log, "job started", event="started", **fields)
        active = metrics.ACTIVE_JOBS.labels(str(ctx.queue))
        active.inc()
        watchdog = asyncio.ensure_future(
            watch_progress(ctx, self.settings.job_stall_timeout_s))
        try:
            result = await self._call(processor, ctx)
            # A durable record before BullMQ may remove the job (queue.records).
            await self.queues.record_finished(ctx.queue, ctx.job, result=result)
        except DelayedError:
            log.info("job handed back", extra={"event": "handed_back", **fields})
            raise
        except WaitingChildrenError:  # a flow's parent: BullMQ runs it again after its children
            log_event(log, "job waiting for its children", event="waiting_children",
                      duration=round(time.monotonic() - started, 3), **fields)
            raise
        except Exception as error:
            if ctx.handed_back:  # its CPU work was stopped by the hand-back
                raise DelayedError() from None
            await self._failed(ctx, error, fields, time.monotonic() - started)
            raise
        finally:
            watchdog.cancel()
            active.dec()
            metrics.JOB_SECONDS.labels(str(ctx.queue)).observe(time.monotonic() - started)
        metrics.JOBS_COMPLETED.labels(str(ctx.queue)).inc()
        log_event(log, "job completed", event="completed",
                  duration=round(time.monotonic() - started, 3), **fields)
        return result

    @staticmethod
    async def _call(processor: Any, ctx: JobContext) -> Any:
        """The processor's own call; a cancellation becomes what caused it."""
        try:
            result = await processor(ctx)
            ctx.returned = True
            await ctx.flush_progress()
            return result
        except asyncio.CancelledError:
            if ctx.handed_back:
                raise DelayedError() from None
            if ctx.cancelled:  # through the API: fail it, no retry
                raise JobCancelledError() from None
            if ctx.stuck is not None:  # the watchdog: fail this attempt, it retries
                raise JobStuckError(ctx.stuck) from None
            # Cancelled without a hand-back (Redis was down): fail this attempt so it retries.
            raise RuntimeError("job interrupted by worker shutdown") from None

    async def _failed(
        self, ctx: JobContext, error: BaseException, fields: dict[str, Any], duration: float
    ) -> None:
        # Recorded only when no retry is left (queue.records).
        await self.queues.record_finished(ctx.queue, ctx.job, error=error)
        self._log_failure(ctx.job, error, fields, duration)
        if isinstance(error, JobCancelledError):
            await clear_mark(self.redis.client, self.settings.queue_prefix, ctx)

    def _cancel(self, ctx: JobContext) -> None:
        """Stop a job the API cancelled, as the watchdog stops a silent one (its CPU-pool work
        is killed with it, runtime.offload); it fails with JobCancelledError, not retried."""
        if ctx.cancelled or ctx.returned or ctx.handed_back or ctx.task is None:
            return
        ctx.cancelled = True
        ctx.task.cancel()

    def _log_failure(
        self, job: Any, error: BaseException, fields: dict[str, Any], duration: float
    ) -> None:
        retry = records.will_retry(job, error)
        queue = str(fields["queue"])
        metrics.JOBS_FAILED.labels(queue, str(not retry).lower()).inc()
        if retry:
            metrics.JOBS_RETRIED.labels(queue).inc()
        log.warning("job failed", extra={
            "event": "failed", "reason": str(error) or type(error).__name__,
            "willRetry": retry, "duration": round(duration, 3), **fields})
        if retry:
            backoff = job.opts.get("backoff") or {}
            delay = int(backoff.get("delay", 0)) * 2 ** int(job.attemptsMade)
            log.info("job retrying", extra={"event": "retrying", "delayMs": delay, **fields})

    def _on_bull_failed(self, queue: QueueName, job: Any, error: BaseException) -> None:
        """bullmq fails a job that stalled more than MAX_STALLS times without calling our
        processor (a deferred failure): log it, so every terminal state has a reason."""
        if job is None or not getattr(job, "deferredFailure", None):
            return  # our processor ran and has logged it
        fields = {"queue": str(queue), "jobId": str(job.id), "jobName": str(job.name),
                  "attempt": int(job.attemptsMade) + 1, "stalls": int(job.stalledCounter)}
        self._log_failure(job, UnrecoverableError(str(error)), fields, 0.0)

    # --- lifecycle ---------------------------------------------------------------------------

    async def _start_workers(self) -> None:
        opts = {
            **bull_options(self.settings),
            # Per queue; the shared semaphore bounds the whole process to JOB_CONCURRENCY.
            "concurrency": min(self.settings.job_concurrency,
                               self.settings.queue_concurrency or self.settings.job_concurrency),
            "lockDuration": self.settings.lock_duration_ms,
            "stalledInterval": self.settings.stalled_interval_ms,
            "maxStalledCount": self.settings.max_stalls,
            "drainDelay": self.settings.drain_delay_s,
            "runRetryDelay": 1000,
        }
        for queue in self.registry:
            worker = Worker(str(queue), self._processor_for(queue), opts)
            worker.on("error", lambda error, *_: log.warning(
                "worker error", extra={"event": "error", "reason": str(error)}))
            worker.on("stalled", lambda job_id, q=str(queue): log.warning(
                "job stalled, back to waiting", extra={"event": "stalled", "queue": q,
                                                       "jobId": str(job_id)}))
            worker.on("failed", lambda job, error, *_, q=queue: self._on_bull_failed(q, job, error))
            self.workers.append(worker)
            # bullmq-py reads the server version (and so whether BZPOPMIN takes fractional
            # timeouts) only on demand; unread, every delay and backoff rounds up to whole seconds.
            for connection in (worker.redisConnection, worker.blockingRedisConnection):
                await connection.getRedisVersion()

    def request_stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            log.info("shutdown requested", extra={"event": "shutdown", "reason": reason})
            self.deadline.start(lambda: self.exit_code)
            self.stopping.set()

    async def _watch_redis(self) -> None:
        """Every second: Redis reachable? (exit after too long an outage) and are delayed jobs
        due (bullmq-py does not always promote them itself, see runtime.delayed)?"""
        while not self.stopping.is_set():
            if await self.redis.outage_exceeded():
                log.error("redis unreachable for too long, exiting", extra={
                    "event": "redis_gone", "limit": self.settings.redis_max_outage_s})
                self.exit_code = EXIT_REDIS_DOWN
                self.request_stop("redis outage")
                return
            if self.redis.down_since is None:
                with contextlib.suppress(OSError, aioredis.RedisError):
                    await wake_for_due_delayed(self.redis.client, self.settings.queue_prefix,
                                               [str(q) for q in self.registry])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)

    async def _shutdown(self) -> None:
        closing = [asyncio.ensure_future(worker.close()) for worker in self.workers]
        if closing:
            _, pending = await asyncio.wait(closing, timeout=self.settings.shutdown_grace_s)
            if pending:
                await self._hand_back_active()
                # Cancelled jobs end at once, even one stuck in a thread (the thread lives on).
                await asyncio.wait(pending, timeout=self.deadline.left())
        self.cpu.kill()

    async def _hand_back_active(self) -> None:
        """Jobs still running after the grace period go back to the queue with no attempt used.
        Every job is marked and moved first; only then is work stopped, so no job sees its CPU
        work die while it still counts as running (that would use up an attempt)."""
        now = int(time.time() * 1000)
        contexts = list(self.active.values())
        for ctx in contexts:
            await self._hand_back(ctx, now)
        for ctx in contexts:
            if ctx.task is not None:
                ctx.task.cancel()
        self.cpu.kill()

    @staticmethod
    async def _hand_back(ctx: JobContext, now: int | None = None) -> None:
        ctx.handed_back = True
        with contextlib.suppress(Exception):  # Redis down: the stalled check recovers it
            await ctx.job.moveToDelayed(now or int(time.time() * 1000), ctx.token)

    async def start(self) -> bool:
        """Serve /healthz, wait for Redis (bounded), start one bullmq Worker per queue."""
        log.info("worker starting", extra={
            "event": "starting", "queues": [str(q) for q in self.registry],
            "concurrency": self.settings.job_concurrency,
            "redis": self.settings.redacted_redis_url()})
        await self.health.start()
        try:
            await self.redis.wait_until_up()
        except (OSError, aioredis.RedisError) as error:
            log.error("redis unreachable at start-up, exiting", extra={
                "event": "redis_gone", "reason": str(error)})
            self.exit_code = EXIT_REDIS_DOWN
            return False
        await self._start_workers()
        self._watch = asyncio.ensure_future(self._watch_redis())
        self._cancel_watch = asyncio.ensure_future(self.cancels.run())
        log.info("worker ready", extra={"event": "ready"})
        return True

    async def stop(self) -> int:
        self.stopping.set()
        await self._shutdown()
        for watch in (self._watch, self._cancel_watch):
            if watch is not None:
                watch.cancel()
        await self.redis.close()
        await self.queues.close()
        with contextlib.suppress(TimeoutError):  # a client stuck closing must not hold up exit
            await asyncio.wait_for(asyncio.to_thread(self.resources.close), self.deadline.left())
        await self.health.stop()
        log.info("worker stopped", extra={"event": "stopped", "exitCode": self.exit_code})
        return self.exit_code

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or a Redis outage longer than REDIS_MAX_OUTAGE_S."""
        loop = asyncio.get_running_loop()
        threads = own_default_executor(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        if await self.start():
            await self.stopping.wait()
        self.deadline.start(lambda: self.exit_code)  # a Redis outage stops without a signal
        code = await self.stop()
        await self.deadline.finish(threads, code)
        return code
