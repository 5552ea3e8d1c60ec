"""The `documents` job: its queue and name, its data, where its files live, how it is queued.

Every producer (multipart upload, the bucket's finalize event, the local signed PUT, reprocess,
the CLI through the API) builds its data here and queues it with `enqueue`; the worker runs
`PROCESSOR`; readers find a document's job with `job_of` and its files with `output_key`.

Storage layout: the upload at `uploads/<documentId>/<safe name>`, outputs under
`documents/<documentId>/` (`manifest.json` last). Redis: `<prefix>:heavylift:doc:<documentId>`
names the job that serves a document.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid

from pydantic import BaseModel

from heavylift.queue import JobKind, Priority, QueueName, Queues, own_key
from heavylift.tenancy import DEFAULT_TENANT

log = logging.getLogger("heavylift.documents")

KIND = JobKind(QueueName.DOCUMENTS, "process", "heavylift.documents.pipeline:process_document")
QUEUE = KIND.queue

UPLOAD_PREFIX = "uploads/"
OUTPUT_PREFIX = "documents/"
MANIFEST = "manifest.json"
# Set on objects whose job the api queued itself: the bucket's finalize event for them (fired on
# GCP for every write) must not queue a second job.
QUEUED_HERE = {"queued-by": "api"}
# The object metadata naming the upload's tenant: signed into upload URLs, so the finalize event
# (and reprocess) can tell whose document it is.
TENANT_META = "tenant"

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_FLAG_KEYS = {"useAI": "use-ai", "generateSummary": "generate-summary",
              "generateEmbeddings": "generate-embeddings"}


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
    tenant: str = DEFAULT_TENANT

    @classmethod
    def for_stored(
        cls, key: str, size: int, metadata: dict[str, str], *, reprocess: bool = False
    ) -> DocumentJobData:
        """For an upload already in storage (finalize event, local PUT, reprocess): the options
        and checksum come from its metadata."""
        document_id = document_id_of(key)
        if document_id is None:
            raise ValueError(f"{key!r} is not an upload key")
        return cls(documentId=document_id, objectKey=key, filename=key.rsplit("/", 1)[-1],
                   size=size, options=UploadOptions.from_metadata(metadata),
                   sha256=metadata.get("sha256"), reprocess=reprocess,
                   tenant=tenant_of_upload(metadata))


def tenant_of_upload(metadata: dict[str, str]) -> str:
    """Whose upload this is (uploads stored before tenants: default)."""
    return metadata.get(TENANT_META) or DEFAULT_TENANT


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


def uploads_of(document_id: str) -> str:
    """The prefix under which a document's upload is stored."""
    return f"{UPLOAD_PREFIX}{document_id}/"


def document_id_of(key: str) -> str | None:
    """`uploads/<documentId>/<name>` -> documentId; None for anything else."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] + "/" == UPLOAD_PREFIX and parts[1].startswith("doc_"):
        return parts[1]
    return None


def output_key(document_id: str, name: str) -> str:
    """Where an output of the document lives (`name` "" gives its folder)."""
    return f"{OUTPUT_PREFIX}{document_id}/{name}"


def _job_key(queues: Queues, document_id: str) -> str:
    return own_key(queues.settings, "doc", document_id)


async def enqueue(
    queues: Queues,
    data: DocumentJobData,
    ttl_s: int,
    priority: Priority | None = None,
    job_id: str | None = None,
) -> str:
    """Queue the job for a stored upload and remember, for `ttl_s`, which job serves it."""
    chosen = priority or data.options.priority
    queued = await queues.add(QUEUE, KIND.name, data.model_dump(), chosen, job_id)
    await queues.redis.set(_job_key(queues, data.documentId), queued, ex=ttl_s)
    log.info("job queued", extra={
        "event": "queued", "queue": str(QUEUE), "jobId": queued,
        "documentId": data.documentId, "priority": int(chosen)})
    return queued


async def job_of(queues: Queues, document_id: str) -> str | None:
    """The job that serves (or last served) a document, while remembered."""
    job_id = await queues.redis.get(_job_key(queues, document_id))
    return str(job_id) if job_id is not None else None
