"""The bucket's object-finalize event (Eventarc, at least once): queue the upload's job once.

One job per object name, whatever its generation: a redelivered event and a replayed PUT that
overwrote the object (a new generation) alike add nothing. The document's remembered job
(`job_of`) answers while it is kept; the job id derived from the name covers two deliveries at once
(BullMQ keeps the first job of an id). A deliberate second run is POST .../reprocess.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pydantic import BaseModel, Field

from heavylift.api.services import Services, services
from heavylift.documents.job import QUEUED_HERE, DocumentJobData, document_id_of, job_of

log = logging.getLogger("heavylift.events")

FINALIZED = "google.cloud.storage.object.v1.finalized"


class StorageObjectData(BaseModel):
    """The fields we use of a Cloud Storage object event's data."""

    bucket: str
    name: str
    size: int | str = 0
    metadata: dict[str, str] = Field(default_factory=dict)


def finalize_job_id(object_name: str) -> str:
    return "upl-" + hashlib.sha256(object_name.encode()).hexdigest()[:32]


def enqueue_finalized(svc: Services, key: str, size: int, metadata: dict[str, str]) -> str | None:
    """Queue the job for a finished upload under uploads/ (or return the document's job);
    None for other objects."""
    if document_id_of(key) is None:
        log.info("ignored object outside uploads/", extra={"event": "ignored", "object": key})
        return None
    if metadata.items() >= QUEUED_HERE.items():
        log.info("ignored upload already queued by the api", extra={
            "event": "ignored", "object": key})
        return None
    data = DocumentJobData.for_stored(key, size, metadata)
    existing = svc.queues.run(lambda q: job_of(q, data.documentId))
    if existing is not None:
        log.info("ignored upload whose document has a job", extra={
            "event": "ignored", "object": key, "jobId": existing})
        return existing
    return svc.intake.enqueue(data, job_id=finalize_job_id(key))


def handle_upload_event(event: Any) -> str | None:
    """CloudEvent entry point body; returns the job id (or None when the event is not ours)."""
    svc = services()
    if event["type"] != FINALIZED:
        log.info("ignored event", extra={"event": "ignored", "type": event["type"]})
        return None
    data = StorageObjectData.model_validate(event.data)
    key = svc.store.key_of(data.bucket, data.name)
    if key is None:
        log.info("ignored object of another store", extra={
            "event": "ignored", "bucket": data.bucket, "object": data.name})
        return None
    return enqueue_finalized(svc, key, int(data.size), data.metadata)
