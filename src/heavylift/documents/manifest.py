"""What a document job leaves for its users: the job result (the seed's exact shape) and
`manifest.json` (everything about the run; served by GET /api/documents/<documentId>)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from heavylift.ai.base import ProviderInfo
from heavylift.documents.detect import DocumentType
from heavylift.documents.job import UploadOptions
from heavylift.documents.ocr import OcrSummary
from heavylift.documents.store import StageTiming


class DocumentResult(BaseModel):
    """The job's return value, as the Node seed returned it."""

    documentId: str
    status: Literal["COMPLETED"] = "COMPLETED"
    chunks: int
    themes: int
    quotes: int
    insights: int


class ManifestCounts(BaseModel):
    pages: int = 0
    textPages: int = 0  # with text, from the text layer or OCR
    ocrPages: int = 0
    characters: int = 0
    chunks: int = 0
    tokens: int = 0
    themes: int = 0
    quotes: int = 0
    insights: int = 0
    embeddings: int = 0
    aiTokens: int = 0  # spent on the paid provider (0 for the local one)


class ManifestError(BaseModel):
    type: str
    message: str


class DocumentManifest(BaseModel):
    documentId: str
    tenant: str  # whose document: GET /api/documents/<id> answers only that tenant (and admins)
    jobId: str
    attempt: int
    status: Literal["COMPLETED", "FAILED", "CANCELLED"]
    filename: str
    size: int
    sha256: str | None
    options: UploadOptions
    provider: ProviderInfo | None  # None when neither analysis nor embeddings ran
    documentType: DocumentType | None
    engine: str | None
    pageCount: int | None
    pagesNeedingOcr: list[int]  # pages without a text layer
    ocr: OcrSummary | None  # None when no page was OCR'd
    embeddingDimensions: int | None
    counts: ManifestCounts
    files: dict[str, str]  # output name -> object key
    timings: dict[str, StageTiming]  # seconds per stage and when it finished
    warnings: list[str]
    error: ManifestError | None
    finishedAt: str  # ISO 8601, UTC
