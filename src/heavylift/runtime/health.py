"""The worker's small HTTP server on PORT: /healthz for Cloud Run probes, /metrics."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from heavylift.runtime import metrics

if TYPE_CHECKING:
    from heavylift.runtime.runner import WorkerRuntime


class HealthServer:
    def __init__(self, port: int, runtime: WorkerRuntime) -> None:
        self.port = port
        self.runtime = runtime
        self._runner: web.AppRunner | None = None

    async def healthz(self, _: web.Request) -> web.Response:
        """Alive while the loop answers and we are not shutting down; Redis state is reported."""
        runtime = self.runtime
        body = {
            "status": "stopping" if runtime.stopping.is_set() else "ok",
            "redis": "down" if runtime.redis.down_since is not None else "ok",
            "queues": [str(queue) for queue in runtime.registry],
            "activeJobs": len(runtime.active),
        }
        return web.json_response(body, status=503 if runtime.stopping.is_set() else 200)

    async def metrics(self, _: web.Request) -> web.Response:
        """Prometheus text format; queue depth is read from Redis at scrape time."""
        with contextlib.suppress(OSError, RedisError):
            await metrics.refresh_queue_depth(self.runtime.queues, list(self.runtime.registry))
        return web.Response(body=metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self.port).start()  # noqa: S104 (container)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
