"""The worker's small HTTP server on PORT: /healthz for Cloud Run probes, /metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from redis.exceptions import RedisError

from heavylift.runtime import metrics


class Health(BaseModel):
    """The /healthz body."""

    status: Literal["ok", "stopping"]
    redis: Literal["ok", "down"]
    queues: list[str]
    activeJobs: int


class HealthServer:
    def __init__(
        self,
        port: int,
        status: Callable[[], Health],
        refresh_metrics: Callable[[], Awaitable[None]],
    ) -> None:
        self.port = port
        self.status = status
        self.refresh_metrics = refresh_metrics
        self._runner: web.AppRunner | None = None

    async def healthz(self, _: web.Request) -> web.Response:
        """Alive while the loop answers and we are not shutting down; Redis state is reported."""
        health = self.status()
        return web.json_response(health.model_dump(),
                                 status=503 if health.status == "stopping" else 200)

    async def metrics(self, _: web.Request) -> web.Response:
        """Prometheus text format; queue depth is read from Redis at scrape time."""
        with contextlib.suppress(OSError, RedisError):
            await self.refresh_metrics()
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
