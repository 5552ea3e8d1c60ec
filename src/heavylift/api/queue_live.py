"""GET /api/queues/events: what the dashboard needs to move without a reload, as Server-Sent
Events over all queues' event streams: `counts` (the /api/queues overview: at once, then after
each burst of state changes) and, for admin keys, `progress` ({"queue", "id", "progress"} of any
job; other keys get counts only: the ids would be other tenants' jobs)."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import StreamingResponse

from heavylift.api.queue_admin import overview_of
from heavylift.api.services import Services
from heavylift.api.sse import Answer, open_reader, sse_event, sse_response
from heavylift.queue import QueueName
from heavylift.queue.event_stream import QueueEvent, QueueEventReader
from heavylift.tenancy import Principal


class CountsFollower:
    def __init__(self, svc: Services, progress: bool) -> None:
        self.svc, self.progress = svc, progress

    async def _counts(self) -> str:
        return sse_event("counts", (await self.svc.queues.arun(overview_of)).model_dump())

    async def opening(self) -> Answer:
        return [await self._counts()], False

    async def handle(self, events: list[QueueEvent]) -> Answer:
        latest: dict[tuple[QueueName, str], str] = {}
        changed = False
        for event in events:
            if event.name == "progress" and event.job_id is not None:
                if self.progress:
                    latest[event.queue, event.job_id] = event.fields.get("data", "0")
            else:
                changed = True
        out = [sse_event("progress", {"queue": queue, "id": job_id, "progress": json.loads(data)})
               for (queue, job_id), data in latest.items()]
        if changed:
            # Coalesce a burst (a thousand jobs finishing) into one count per interval; what
            # arrives meanwhile is read next time round.
            await asyncio.sleep(self.svc.settings.sse_counts_interval_s)
            out.append(await self._counts())
        return out, False


async def queue_events(request: Request, svc: Services,
                       principal: Principal) -> StreamingResponse:
    settings = svc.settings
    reader = QueueEventReader(settings, list(QueueName), settings.sse_heartbeat_s)
    await open_reader(reader)
    return sse_response(CountsFollower(svc, principal.has("admin")), reader, settings)
