"""The bucket's object-finalize event (Eventarc, at least once): queue the upload's job once.

The job id is derived from object name + generation, so a redelivered event adds nothing, while a
new upload to the same name (a new generation) is processed again.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pydantic import BaseModel, Field

from heavylift.api.services import Services, services
from heavylift.documents.job import QUEUED_HERE, DocumentJobData, document_id_of

log = logging.getLogger("heavylift.events")

FINALIZED = "google.cloud.storage.object.v1.finalized"


class StorageObjectData(BaseModel):
    """The fields we use of a Cloud Storage object event's data."""

    bucket: str
    name: str
    generation: str | int = "0"
    size: int | str = 0
    metadata: dict[str, str] = Field(default_factory=dict)


def finalize_job_id(object_name: str, generation: str) -> str:
    return "upl-" + hashlib.sha256(f"{object_name}#{generation}".encode()).hexdigest()[:32]


def enqueue_finalized(
    svc: Services, key: str, generation: str, size: int, metadata: dict[str, str]
) -> str | None:
    """Queue the job for a finished upload under uploads/; None for other objects."""
    if document_id_of(key) is None:
        log.info("ignored object outside uploads/", extra={"event": "ignored", "object": key})
        return None
    if metadata.items() >= QUEUED_HERE.items():
        log.info("ignored upload already queued by the api", extra={
            "event": "ignored", "object": key})
        return None
    data = DocumentJobData.for_stored(key, size, metadata)
    return svc.intake.enqueue(data, job_id=finalize_job_id(key, generation))


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
    return enqueue_finalized(svc, key, str(data.generation), int(data.size), data.metadata)
