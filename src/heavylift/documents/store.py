"""One document's outputs in object storage (`documents/<documentId>/...`) and the checkpoint
that says which of them a later attempt of the same job may reuse.

Calls here block (storage is synchronous): the pipeline runs them in threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from heavylift.documents.analyze import AnalysisSummary
from heavylift.documents.chunk import ChunkSummary
from heavylift.documents.embed import EmbeddingSummary
from heavylift.documents.extract import ExtractSummary
from heavylift.documents.job import MANIFEST, output_key
from heavylift.documents.ocr import OcrSummary
from heavylift.storage import ObjectNotFoundError, ObjectStore

PAGES = "pages.jsonl"
CHUNKS = "chunks.jsonl"
ANALYSIS = "analysis.json"
VECTORS = "embeddings.npy"
VECTOR_INDEX = "embeddings.json"
CHECKPOINT = "checkpoint.json"

_CONTENT_TYPES = {".jsonl": "application/x-ndjson", ".json": "application/json"}


class StageTiming(BaseModel):
    seconds: float
    # When the stage finished; a stage reused after a retry or a stalled-job recovery keeps its
    # own (BullMQ does not count a recovery as an attempt, so attempt numbers cannot tell).
    finishedAt: str


class Checkpoint(BaseModel):
    """Stages whose outputs are stored, for one run: the same job, upload and settings."""

    run: str
    extract: ExtractSummary | None = None
    ocr: OcrSummary | None = None
    chunk: ChunkSummary | None = None
    analysis: AnalysisSummary | None = None
    embeddings: EmbeddingSummary | None = None
    timings: dict[str, StageTiming] = Field(default_factory=dict)


class DocumentFiles:
    """A document's stored outputs, and their local copies in the job's work folder."""

    def __init__(self, store: ObjectStore, document_id: str, workdir: Path) -> None:
        self.store = store
        self.document_id = document_id
        self.workdir = workdir

    def key(self, name: str) -> str:
        return output_key(self.document_id, name)

    def local(self, name: str) -> Path:
        return self.workdir / name

    def ensure_local(self, name: str) -> Path:
        """The local copy of a stored output, downloaded when this attempt did not make it."""
        path = self.local(name)
        if not path.exists():
            self.store.download_to(self.key(name), path)
        return path

    def load_checkpoint(self) -> Checkpoint | None:
        try:
            with self.store.open_read(self.key(CHECKPOINT)) as stream:
                return Checkpoint.model_validate_json(stream.read())
        except (ObjectNotFoundError, ValidationError):
            return None

    def start_fresh(self) -> None:
        """Forget another run's outputs (a stage this run skips must not leave stale files);
        the manifest stays until this run replaces it."""
        for info in list(self.store.list(self.key(""))):
            if info.key != self.key(MANIFEST):
                self.store.delete(info.key)

    def commit(self, names: Iterable[str], checkpoint: Checkpoint) -> None:
        """Store a finished stage's outputs, then the checkpoint that vouches for them."""
        for name in names:
            content_type = _CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
            self.store.put_file(self.key(name), self.local(name), content_type)
        self.store.put_bytes(self.key(CHECKPOINT), checkpoint.model_dump_json().encode())

    def write_manifest(self, manifest: BaseModel, retry_s: float | None = None) -> None:
        """`retry_s`: how long to ride out an outage, if not the store's STORAGE_RETRY_S."""
        self.store.put_bytes(self.key(MANIFEST), manifest.model_dump_json(indent=1).encode(),
                             retry_s=retry_s)
