"""Shorthands for tests that push documents through real workers: store an upload, queue its
job as intake does, poll the job's view, read and check the stored outputs."""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heavylift.ai.base import Analysis
from heavylift.documents.intake import Intake
from heavylift.documents.job import DocumentJobData, UploadOptions, new_document_id, upload_key
from heavylift.queue import BlockingQueues, QueueName
from heavylift.schemas import JobView
from heavylift.settings import Settings
from heavylift.storage import ObjectStore
from heavylift.text import Chunk

DOCS = QueueName.DOCUMENTS
RESULT_KEYS = {"documentId", "status", "chunks", "themes", "quotes", "insights"}
OUTPUTS = ("pages.jsonl", "chunks.jsonl", "analysis.json", "embeddings.npy", "embeddings.json")


@dataclass(frozen=True)
class DocJob:
    job_id: str
    data: DocumentJobData

    @property
    def document_id(self) -> str:
        return self.data.documentId


def queue_document(
    queues: BlockingQueues,
    store: ObjectStore,
    settings: Settings,
    content: bytes | Path,
    name: str,
    *,
    options: UploadOptions,
    document_id: str | None = None,
    reprocess: bool = False,
) -> DocJob:
    """Store `content` under uploads/ with its sha256 and queue its job, as the API does."""
    data_bytes = content.read_bytes() if isinstance(content, Path) else content
    sha256 = hashlib.sha256(data_bytes).hexdigest()
    document_id = document_id or new_document_id()
    key = upload_key(document_id, name)
    store.put_bytes(key, data_bytes, "application/octet-stream", {"sha256": sha256})
    data = DocumentJobData(
        documentId=document_id, objectKey=key, filename=name, size=len(data_bytes),
        options=options, sha256=sha256, reprocess=reprocess,
    )
    return DocJob(Intake(settings, queues, store).enqueue(data), data)


def view(queues: BlockingQueues, job_id: str) -> JobView:
    return queues.run(lambda q: q.view(DOCS, job_id))


def wait_finished(
    queues: BlockingQueues, job_id: str, timeout: float = 60.0, progress: list[float] | None = None
) -> JobView:
    """Poll until the job completes or fails; progress values seen are appended to `progress`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = view(queues, job_id)
        if progress is not None and isinstance(current.progress, int | float):
            progress.append(float(current.progress))
        if current.state in ("completed", "failed"):
            # The view reads the job, then its state: read again for fields of the final state.
            return view(queues, job_id)
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} not finished within {timeout}s: {current}")


def wait_progress(
    queues: BlockingQueues, job_id: str, at_least: float, timeout: float = 30.0
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = view(queues, job_id)
        assert current.state != "completed", "the job finished before the wanted progress"
        if isinstance(current.progress, int | float) and current.progress >= at_least:
            return float(current.progress)
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached progress {at_least}")


def read(store: ObjectStore, document_id: str, name: str) -> bytes:
    with store.open_read(f"documents/{document_id}/{name}") as stream:
        return stream.read()


def manifest(store: ObjectStore, document_id: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(read(store, document_id, "manifest.json"))
    return loaded


def outputs(store: ObjectStore, document_id: str) -> dict[str, bytes]:
    """Every stage output that exists for the document."""
    return {
        name: read(store, document_id, name)
        for name in OUTPUTS
        if store.exists(f"documents/{document_id}/{name}")
    }


def vectors_of(data: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    loaded: np.ndarray[Any, np.dtype[np.float32]] = np.load(io.BytesIO(data), allow_pickle=False)
    return loaded


def check_completed(
    store: ObjectStore, finished: JobView, dimensions: int | None = None
) -> dict[str, Any]:
    """The job result is the seed's shape and agrees with every stored output; the manifest."""
    assert finished.state == "completed", finished
    result = finished.result
    assert isinstance(result, dict) and set(result) == RESULT_KEYS, result
    assert result["status"] == "COMPLETED"
    document_id = result["documentId"]
    stored = manifest(store, document_id)
    assert stored["status"] == "COMPLETED" and stored["error"] is None
    assert stored["documentId"] == document_id and stored["jobId"] == finished.id
    counts = stored["counts"]
    for name in ("chunks", "themes", "quotes", "insights"):
        assert counts[name] == result[name], name
    lines = read(store, document_id, "chunks.jsonl").decode().splitlines()
    assert len(lines) == result["chunks"] > 0
    chunks = [Chunk.model_validate_json(line) for line in lines]
    pages = read(store, document_id, "pages.jsonl").decode().splitlines()
    assert len(pages) == stored["pageCount"] == counts["pages"]
    options = stored["options"]
    if options["generateEmbeddings"]:
        vectors = vectors_of(read(store, document_id, "embeddings.npy"))
        assert vectors.dtype == np.float32
        assert vectors.shape == (len(chunks), dimensions or stored["embeddingDimensions"])
        index = json.loads(read(store, document_id, "embeddings.json"))
        assert index["chunkIds"] == [chunk.id for chunk in chunks]
    if options["useAI"] or options["generateSummary"]:
        analysis = Analysis.model_validate_json(read(store, document_id, "analysis.json"))
        assert len(analysis.themes) == result["themes"]
        assert len(analysis.quotes) == result["quotes"]
        assert len(analysis.insights) == result["insights"]
        by_id = {chunk.id: chunk for chunk in chunks}
        for quote in analysis.quotes:
            assert quote.text in by_id[quote.chunk_id].text, quote
            assert by_id[quote.chunk_id].first_page <= quote.page <= by_id[quote.chunk_id].last_page
    else:
        assert result["themes"] == result["quotes"] == result["insights"] == 0
    return stored
