"""The `datasets` job: its queue and name, its data (`SyncSpec`), where its files live, and
how it is queued.

The API's queued syncs and the CLI (through the API) queue with `enqueue`; the worker runs
`PROCESSOR`. Storage layout: `datasets/<syncId>/` holds the part files, `checkpoint.json` while
the sync runs and `manifest.json` once it is done; the sync id is the job id.
"""

from __future__ import annotations

import uuid

from heavylift.datasets.request import SyncSpec
from heavylift.queue import JobKind, Priority, QueueName, Queues
from heavylift.settings import Settings

KIND = JobKind(QueueName.DATASETS, "sync", "heavylift.datasets.pipeline:sync_dataset")
# A distributed sync's children: one slice of its read each (datasets.flow).
SLICE_KIND = JobKind(QueueName.DATASETS, "sync-slice", "heavylift.datasets.flow:sync_slice")
QUEUE = KIND.queue
OUTPUT_PREFIX = "datasets/"


def sync_folder(sync_id: str) -> str:
    """Where one sync's parts and manifest live (no trailing slash)."""
    return f"{OUTPUT_PREFIX}{sync_id}"


def planned_streams(settings: Settings, total: int) -> int:
    """1: the sync reads in its own job; more: it runs as a flow of that many children at most."""
    return settings.sync_max_streams if total >= settings.sync_distribute_rows else 1


async def enqueue(queues: Queues, spec: SyncSpec, total: int) -> str:
    """Queue the sync; the job id is unique (it names the sync's storage folder and table)."""
    job_id = f"ds-{uuid.uuid4().hex}"
    streams = planned_streams(queues.settings, total)
    data = {**spec.model_copy(update={"streams": streams}).job_data(), "totalCount": total}
    return await queues.add(QUEUE, KIND.name, data, Priority.REGULAR, job_id=job_id)
