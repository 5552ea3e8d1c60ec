"""Accepting documents: validate by content, store under uploads/, enqueue one job, idempotently.

Used by the HTTP function (multipart uploads, the local signed-upload route) and by the
object-finalize event (uploads that went straight to the bucket).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import BinaryIO

from pydantic import BaseModel

from heavylift.documents import job
from heavylift.documents.detect import DocumentType, detect_stream
from heavylift.documents.errors import DocumentError, EmptyDocumentError
from heavylift.documents.job import (
    QUEUED_HERE,
    TENANT_META,
    DocumentJobData,
    UploadOptions,
    new_document_id,
    safe_filename,
    upload_key,
)
from heavylift.queue import BlockingQueues, Priority, QueueUnavailableError
from heavylift.queue.idempotency import Claim
from heavylift.settings import Settings
from heavylift.storage import ObjectStore


class TooLargeError(DocumentError):
    """The file is over MAX_UPLOAD_BYTES."""


class UploadInProgressError(RuntimeError):
    """The same upload (same Idempotency-Key or content) is being accepted right now."""


class AcceptedUpload(BaseModel):
    jobId: str
    filename: str
    size: int
    documentId: str
    duplicate: bool = False


def _size_of(stream: BinaryIO) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while block := stream.read(1 << 20):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


class Intake:
    def __init__(self, settings: Settings, queues: BlockingQueues, store: ObjectStore) -> None:
        self.settings = settings
        self.queues = queues
        self.store = store

    def check(self, stream: BinaryIO) -> DocumentType:
        """Size and type by content; raises before anything is stored."""
        size = _size_of(stream)
        if size == 0:
            raise EmptyDocumentError("The file is empty (0 bytes).")
        if size > self.settings.max_upload_bytes:
            raise TooLargeError(
                f"The file is {size} bytes; the limit is {self.settings.max_upload_bytes}."
            )
        kind = detect_stream(stream)
        stream.seek(0)
        return kind

    def accept(
        self,
        stream: BinaryIO,
        filename: str,
        options: UploadOptions,
        tenant: str,
        idempotency_key: str | None = None,
    ) -> AcceptedUpload:
        """Store one checked, seekable upload and queue its job (or return the existing job).
        Duplicates are found within the tenant only: another tenant's upload of the same bytes
        (or with the same Idempotency-Key) is a new job, and nobody learns of the other."""
        size, sha256 = _size_of(stream), _sha256_of(stream)
        key = idempotency_key or f"sha256:{sha256}:{options.fingerprint()}"
        claim = Claim(self.queues, job.QUEUE, f"{tenant}:{key}", self.settings.idempotency_ttl_s)
        existing = claim.existing()
        if existing is not None:
            return AcceptedUpload(**existing, duplicate=True)
        document_id = new_document_id()
        if not claim.take():
            raise UploadInProgressError("the same upload is being accepted right now; retry")
        object_key = upload_key(document_id, filename)
        accepted: AcceptedUpload | None = None
        try:
            self.store.put_stream(object_key, stream, "application/octet-stream",
                                  {**options.metadata(), "sha256": sha256, TENANT_META: tenant,
                                   **QUEUED_HERE})
            data = DocumentJobData(documentId=document_id, objectKey=object_key,
                                   filename=safe_filename(filename), size=size,
                                   options=options, sha256=sha256, tenant=tenant)
            try:
                job_id = self.enqueue(data)
            except QueueUnavailableError:
                # Redis went away after the bytes landed: remove them, nothing is half-accepted.
                self.store.delete(object_key)
                raise
            accepted = AcceptedUpload(jobId=job_id, filename=data.filename, size=size,
                                      documentId=document_id)
            claim.complete(accepted.model_dump(exclude={"duplicate"}))
            return accepted
        finally:
            if accepted is None:  # a retry with the same key must not wait for the claim
                with contextlib.suppress(QueueUnavailableError):
                    claim.release()

    def enqueue(
        self, data: DocumentJobData, priority: Priority | None = None, job_id: str | None = None
    ) -> str:
        """Queue the job for a stored upload (see `documents.job.enqueue`)."""
        # Which job serves the document is remembered as long as that job's record (RESULT_TTL_S),
        # so GET /api/documents/<documentId> can still answer with the job once BullMQ dropped it.
        ttl = max(self.settings.idempotency_ttl_s, self.settings.result_ttl_s)
        return self.queues.run(lambda q: job.enqueue(q, data, ttl, priority, job_id))
