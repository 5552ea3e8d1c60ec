"""Accepting documents: validate by content, store under uploads/, enqueue one job, idempotently.

Used by the HTTP function (multipart uploads, the local signed-upload route) and by the
object-finalize event (uploads that went straight to the bucket).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import unicodedata
import uuid
from typing import BinaryIO

from pydantic import BaseModel

from heavylift.documents.detect import DocumentType, detect_stream
from heavylift.documents.errors import DocumentError, EmptyDocumentError
from heavylift.queue import BlockingQueues, Priority, QueueName, Queues, QueueUnavailableError
from heavylift.queue.idempotency import Claim
from heavylift.settings import Settings
from heavylift.storage import ObjectStore

log = logging.getLogger("heavylift.intake")

UPLOAD_PREFIX = "uploads/"
JOB_NAME = "process"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
# Set on objects whose job this module queued itself: the bucket's finalize event for them
# (fired on GCP for every write) must not queue a second job.
QUEUED_HERE = {"queued-by": "api"}
_FLAG_KEYS = {"useAI": "use-ai", "generateSummary": "generate-summary",
              "generateEmbeddings": "generate-embeddings"}


class TooLargeError(DocumentError):
    """The file is over MAX_UPLOAD_BYTES."""


class UploadInProgressError(RuntimeError):
    """The same upload (same Idempotency-Key or content) is being accepted right now."""


class UploadOptions(BaseModel):
    """The seed's three form flags."""

    useAI: bool = False
    generateSummary: bool = False
    generateEmbeddings: bool = False

    @property
    def priority(self) -> Priority:
        return Priority.AI if self.useAI else Priority.REGULAR

    def metadata(self) -> dict[str, str]:
        """As object metadata (lower-case names: S3 lower-cases them anyway)."""
        return {meta: str(getattr(self, flag)).lower() for flag, meta in _FLAG_KEYS.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> UploadOptions:
        return cls(**{flag: metadata.get(meta) == "true" for flag, meta in _FLAG_KEYS.items()})

    def fingerprint(self) -> str:
        return "".join("1" if getattr(self, flag) else "0" for flag in _FLAG_KEYS)


class DocumentJobData(BaseModel):
    """The data of a `documents` job: what the worker needs to find and process the upload."""

    documentId: str
    objectKey: str
    filename: str
    size: int
    options: UploadOptions
    sha256: str | None = None
    reprocess: bool = False


class AcceptedUpload(BaseModel):
    jobId: str
    filename: str
    size: int
    documentId: str
    duplicate: bool = False


def new_document_id() -> str:
    return f"doc_{uuid.uuid4().hex}"


def safe_filename(name: str) -> str:
    """A name that is safe as the last segment of an object key (no paths, no control chars)."""
    base = re.split(r"[\\/]", name)[-1]
    base = unicodedata.normalize("NFKC", base)
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "document"


def upload_key(document_id: str, filename: str) -> str:
    return f"{UPLOAD_PREFIX}{document_id}/{safe_filename(filename)}"


def document_id_of(key: str) -> str | None:
    """`uploads/<documentId>/<name>` -> documentId; None for anything else."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] + "/" == UPLOAD_PREFIX and parts[1].startswith("doc_"):
        return parts[1]
    return None


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
        idempotency_key: str | None = None,
    ) -> AcceptedUpload:
        """Store one checked, seekable upload and queue its job (or return the existing job)."""
        size, sha256 = _size_of(stream), _sha256_of(stream)
        key = idempotency_key or f"sha256:{sha256}:{options.fingerprint()}"
        claim = Claim(self.queues, key, self.settings.idempotency_ttl_s)
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
                                  {**options.metadata(), "sha256": sha256, **QUEUED_HERE})
            data = DocumentJobData(documentId=document_id, objectKey=object_key,
                                   filename=safe_filename(filename), size=size,
                                   options=options, sha256=sha256)
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
        """Queue the job for a stored upload and remember which job serves the document."""
        chosen = priority or data.options.priority
        ttl = self.settings.idempotency_ttl_s

        async def add(q: Queues) -> str:
            added = await q.add(QueueName.DOCUMENTS, JOB_NAME, data.model_dump(), chosen, job_id)
            await q.remember_document_job(data.documentId, added, ttl)
            return added

        queued = self.queues.run(add)
        log.info("job queued", extra={
            "event": "queued", "queue": str(QueueName.DOCUMENTS), "jobId": queued,
            "documentId": data.documentId, "priority": int(chosen)})
        return queued
