"""GET /api/jobs/<jobId>/events: one job's progress and state changes as Server-Sent Events.

Events: `state` (the job view: sent at once on (re)connect, then on each state change),
`progress` ({"id", "progress"}), and last `completed` (view with result) or `failed` (view with
failedReason), after which the stream ends. Ids are the queue's event-stream ids.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import StreamingResponse

from heavylift.api.queue_admin import job_id_of, queue_named
from heavylift.api.services import Services
from heavylift.api.sse import Answer, open_reader, sse_event, sse_response
from heavylift.queue import JobNotFoundError, QueueName
from heavylift.queue.event_stream import QueueEvent, QueueEventReader
from heavylift.schemas import JobView
from heavylift.tenancy import Principal

_FINAL = {"completed", "failed"}


class JobFollower:
    def __init__(self, svc: Services, queue: QueueName, view: JobView, position: str,
                 tenant: str | None) -> None:
        self.svc, self.queue, self.view, self.position = svc, queue, view, position
        self.tenant = tenant

    def _state_event(self, event_id: str) -> Answer:
        name = self.view.state if self.view.state in _FINAL else "state"
        return [sse_event(name, self.view.model_dump(), event_id)], self.view.state in _FINAL

    async def opening(self) -> Answer:
        # The snapshot reflects every event up to `position` (read before it), so a reconnect
        # needs no replay from Last-Event-ID: it continues from here and misses nothing.
        return self._state_event(self.position)

    async def handle(self, events: list[QueueEvent]) -> Answer:
        out: list[str] = []
        for event in events:
            if event.job_id != self.view.id:
                continue
            if event.name == "progress":
                progress = json.loads(event.fields.get("data", "0"))
                out.append(sse_event("progress", {"id": self.view.id, "progress": progress},
                                     event.id))
                continue
            # Any other event of this job (active, waiting, delayed, completed, failed, ...):
            # the job's own view says where it stands now, retries included.
            try:
                view = await self.svc.queues.arun(
                    lambda q: q.view(self.queue, self.view.id, self.tenant))
            except JobNotFoundError:
                return out, True  # removed: a reconnect gets the 404
            if view != self.view:
                self.view = view
                state, done = self._state_event(event.id)
                out += state
                if done:
                    return out, True
        return out, False


async def job_events(request: Request, svc: Services, job_id: str,
                     principal: Principal) -> StreamingResponse:
    queue = queue_named(request.query_params.get("queue", QueueName.DOCUMENTS), status=400)
    job_id, tenant = job_id_of(job_id), principal.scope
    settings = svc.settings
    reader = QueueEventReader(settings, [queue], settings.sse_heartbeat_s)
    position = await open_reader(reader)
    try:
        # An unknown job, or another tenant's: 404 JSON.
        view = await svc.queues.arun(lambda q: q.view(queue, job_id, tenant))
    except BaseException:
        await reader.close()
        raise
    return sse_response(JobFollower(svc, queue, view, position, tenant), reader, settings)
