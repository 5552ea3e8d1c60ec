"""The seed's document routes: async-upload (multipart + status), upload-url, the local signed
PUT, the result manifest and reprocess."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode

from flask import Request, Response
from pydantic import BaseModel, Field

from heavylift.api.auth import principal_of
from heavylift.api.errors import ApiError, as_api_error, json_response, read_json
from heavylift.api.queue_admin import seed_status
from heavylift.api.services import Services
from heavylift.api.upload_finalized import enqueue_finalized
from heavylift.documents import job
from heavylift.documents.intake import AcceptedUpload
from heavylift.documents.job import (
    MANIFEST,
    TENANT_META,
    DocumentJobData,
    UploadOptions,
    document_id_of,
    new_document_id,
    output_key,
    tenant_of_upload,
    upload_key,
    uploads_of,
)
from heavylift.queue import JobNotFoundError, Priority, QueueUnavailableError
from heavylift.queue.idempotency import Claim
from heavylift.storage import ObjectNotFoundError, SignedUpload
from heavylift.storage.local import LocalStore, metadata_from_headers, verify_local_upload
from heavylift.tenancy import DEFAULT_TENANT

DOCS = job.QUEUE
# What a signed upload may declare; the worker still reads the type from the bytes. Images are
# OCR'd (documents.ocr).
ALLOWED_TYPES = {"application/pdf", "text/plain", "text/markdown", "image/png", "image/jpeg",
                 "image/tiff"}
_FLAGS = ("useAI", "generateSummary", "generateEmbeddings")


class UploadUrlRequest(UploadOptions):
    filename: str = Field(min_length=1, max_length=1024)
    size: int = Field(gt=0)
    contentType: str


class UploadUrlResponse(BaseModel):
    documentId: str
    objectName: str
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str]
    expiresAt: str


def _flag(request: Request, name: str) -> bool:
    value = request.form.get(name, "false").strip().lower()
    if value not in {"true", "false"}:
        raise ApiError(400, "invalid_field", f"{name} must be 'true' or 'false'", name)
    return value == "true"


def _queue_status(svc: Services) -> dict[str, int]:
    counts = svc.queues.run(lambda q: q.counts(DOCS))
    return counts.model_dump(include={"waiting", "active", "completed", "failed"})


def upload(request: Request, svc: Services) -> Response:
    """POST /api/documents/async-upload: every file checked before any is stored."""
    files = [f for f in request.files.getlist("files") if f.filename is not None]
    if not files:
        raise ApiError(400, "no_files", "no files: send one or more 'files' form fields")
    limit = svc.settings.max_files_per_request
    if len(files) > limit:
        raise ApiError(400, "too_many_files", f"{len(files)} files; at most {limit} per request")
    options = UploadOptions(**{name: _flag(request, name) for name in _FLAGS})
    for file in files:
        try:
            svc.intake.check(file.stream)  # type: ignore[arg-type]
        except Exception as error:
            raise ApiError(**_with_filename(error, file.filename or "")) from error
    key = request.headers.get("Idempotency-Key")
    tenant = principal_of(request).tenant
    accepted: list[AcceptedUpload] = [
        svc.intake.accept(file.stream, file.filename or "document",  # type: ignore[arg-type]
                          options, tenant, f"{key}#{index}" if key else None)
        for index, file in enumerate(files)
    ]
    body: dict[str, Any] = {
        "success": True,
        "message": f"{len(accepted)} documents queued for processing",
        "jobs": [_job_entry(item) for item in accepted],
        "queueStatus": _queue_status(svc),
    }
    duplicates = sum(item.duplicate for item in accepted)
    if duplicates:
        body["message"] += f" ({duplicates} already queued: existing job returned)"
    return json_response(body, 202)


def _with_filename(error: Exception, filename: str) -> dict[str, Any]:
    api_error = as_api_error(error)
    return {"status": api_error.status, "code": api_error.code,
            "message": f"{filename}: {api_error.message}", "field": "files"}


def _job_entry(item: AcceptedUpload) -> dict[str, Any]:
    """The seed's fields, plus where to find the result: `statusUrl` (the job view, kept for
    RESULT_TTL_S after BullMQ removes the job) and `documentId` (GET /api/documents/<id>: the
    stored manifest, for as long as storage keeps it). The URL is relative to the API's base."""
    entry: dict[str, Any] = {
        "jobId": item.jobId, "filename": item.filename, "size": item.size,
        "documentId": item.documentId,
        "statusUrl": f"/api/documents/async-upload?{urlencode({'jobId': item.jobId})}",
    }
    if item.duplicate:
        entry["duplicate"] = True
    return entry


def upload_status(request: Request, svc: Services) -> Response:
    """GET /api/documents/async-upload[?jobId=ID]: one job's view, or the queue counts."""
    return seed_status(request, svc, DOCS)


def upload_url(request: Request, svc: Services) -> Response:
    """POST /api/documents/upload-url: a signed URL straight to the bucket (no 32 MB cap)."""
    payload = UploadUrlRequest.model_validate(read_json(request))
    if payload.size > svc.settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"size {payload.size} is over the limit of "
                       f"{svc.settings.max_upload_bytes} bytes", "size")
    if payload.contentType not in ALLOWED_TYPES:
        raise ApiError(415, "unsupported_type", f"contentType must be one of "
                       f"{sorted(ALLOWED_TYPES)}", "contentType")
    document_id = new_document_id()
    key = upload_key(document_id, payload.filename)
    # The tenant is signed into the URL with the other metadata: the client cannot change it,
    # and the finalize event stamps it on the job.
    metadata = {**payload.metadata(), TENANT_META: principal_of(request).tenant}
    signed: SignedUpload = svc.store.signed_upload(
        key, payload.contentType, payload.size, metadata, svc.settings.upload_url_expiry_s,
    )
    body = UploadUrlResponse(documentId=document_id, objectName=key, url=signed.url,
                             headers=signed.headers, expiresAt=signed.expiresAt)
    return json_response(body.model_dump())


def admit_local_put(headers: Mapping[str, str], query: Mapping[str, str],
                    svc: Services) -> None:
    """The checks of PUT /api/storage/upload that need no body: the front door runs them before
    reading it, so a PUT without a valid signature is refused without being received."""
    if not isinstance(svc.store, LocalStore):  # buckets take their signed PUTs themselves
        raise ApiError(404, "not_found", "local uploads are only served for file:// storage")
    raw_size = headers.get("Content-Length")
    if raw_size is None or not raw_size.isdigit():
        raise ApiError(411, "length_required", "Content-Length is required")
    size = int(raw_size)
    if size > svc.settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"{size} bytes is over the limit")
    verify_local_upload(svc.settings, query.get("key", ""), query.get("expires", ""),
                        query.get("sig", ""), headers.get("Content-Type", ""), size,
                        metadata_from_headers(headers))


def local_put(request: Request, svc: Services) -> Response:
    """PUT /api/storage/upload: the file:// stand-in for a bucket's signed URL, admitted by
    `admit_local_put`; on success it enqueues like the bucket's finalize event would."""
    size = request.content_length or 0
    metadata = metadata_from_headers(dict(request.headers))
    key = request.args.get("key", "")
    content_type = request.headers.get("Content-Type", "")
    # One claim per object (each URL names a fresh one), held until the URL expires (its expiry
    # was verified by `admit_local_put`): a replayed or concurrent PUT gets 409.
    lifetime = max(1, int(request.args.get("expires", "0")) - int(time.time()) + 1)
    once = Claim(svc.queues, DOCS, f"signed-put:{key}", lifetime, pending_ttl_s=lifetime)
    if not once.take():
        raise ApiError(409, "already_uploaded", "this upload URL was already used (it works "
                       "once); ask POST /api/documents/upload-url for a new one")
    try:
        job_id = _store_and_enqueue(svc, key, request, content_type, size, metadata)
    except BaseException:  # an interrupted or refused PUT leaves the URL usable again
        with contextlib.suppress(QueueUnavailableError):
            once.release()
        raise
    once.complete({"jobId": job_id})
    return json_response({"success": True, "objectName": key, "jobId": job_id}, 200)


def _store_and_enqueue(svc: Services, key: str, request: Request, content_type: str,
                       size: int, metadata: dict[str, str]) -> str | None:
    """The body under `key` and its job; nothing stays stored when either step fails."""
    info = svc.store.put_stream(key, request.stream, content_type, metadata)
    try:
        if info.size != size:
            raise ApiError(400, "incomplete_body", f"received {info.size} of {size} bytes")
        return enqueue_finalized(svc, info.key, info.size, metadata)
    except BaseException:
        svc.store.delete(key)
        raise


def document(request: Request, svc: Services, doc_id: str) -> Response:
    """GET /api/documents/<documentId>: the result manifest; 202 with the job while it runs.
    Another tenant's document is answered like an unknown one."""
    tenant = principal_of(request).scope
    try:
        with svc.store.open_read(output_key(doc_id, MANIFEST)) as stream:
            manifest = json.loads(stream.read())
    except ObjectNotFoundError:
        manifest = None
    if manifest is not None:
        if tenant is not None and manifest.get("tenant", DEFAULT_TENANT) != tenant:
            raise ApiError(404, "not_found", f"no document {doc_id}")
        return json_response(manifest)
    job_id = svc.queues.run(lambda q: job.job_of(q, doc_id))
    if job_id is None:
        raise ApiError(404, "not_found", f"no document {doc_id}")
    try:
        view = svc.queues.run(lambda q: q.view(DOCS, job_id, tenant))
    except JobNotFoundError:
        raise ApiError(404, "not_found", f"no document {doc_id}") from None
    return json_response({"documentId": doc_id, "jobId": job_id, "job": view.model_dump()}, 202)


def reprocess(request: Request, svc: Services, doc_id: str) -> Response:
    """POST /api/documents/<documentId>/reprocess: a priority-3 job on the stored upload (of
    the key's tenant: another tenant's document is unknown here)."""
    uploads = [info for info in svc.store.list(uploads_of(doc_id))
               if document_id_of(info.key) == doc_id]
    stored = svc.store.info(uploads[0].key) if uploads else None
    tenant = principal_of(request).scope
    if stored is None or tenant not in (None, tenant_of_upload(stored.metadata)):
        raise ApiError(404, "not_found", f"no stored upload for document {doc_id}")
    data = DocumentJobData.for_stored(stored.key, stored.size, stored.metadata, reprocess=True)
    job_id = svc.intake.enqueue(data, Priority.REPROCESSING)
    return json_response({"success": True, "documentId": doc_id, "jobId": job_id}, 202)
