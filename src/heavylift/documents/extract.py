"""Extract normalised text page by page; runs in the worker's process pool (CPU-bound)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from heavylift.documents.budget import DecodeBudget
from heavylift.documents.detect import DocumentType, detect_type
from heavylift.documents.errors import EmptyDocumentError
from heavylift.documents.images import image_page_count
from heavylift.documents.jsonl import write_jsonl
from heavylift.documents.pages import REOPEN_MB, WHOLE, PageSource, RawPage, Shard
from heavylift.text import normalize_text

PdfEngine = Literal["pypdfium2", "pypdf"]
Engine = Literal["pypdfium2", "pypdf", "text", "image"]
ProgressReport = Callable[[float], None]

# Progress crosses a pipe to the event loop: send whole percents, not one message per page.
_REPORT_STEPS = 100


class Page(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int  # 1-based
    text: str
    chars: int


class ExtractResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    document_type: DocumentType
    engine: Engine
    page_count: int  # of the whole document
    pages: list[Page]  # those of the requested shard
    needs_ocr: list[int]  # 1-based numbers of pages with images but no text layer


def extract_pages(
    path: Path,
    engine: PdfEngine = "pypdfium2",
    *,
    shard: Shard = WHOLE,
    reopen_mb: int = REOPEN_MB,
    budget: DecodeBudget | None = None,
    report: ProgressReport | None = None,
) -> ExtractResult:
    """Pages of the document at `path` (of one shard of a PDF's pages, to extract in parallel);
    raises a DocumentError subclass for unusable files (or ones over `budget`)."""
    extraction = _extraction(path, engine, shard, reopen_mb, budget, report)
    pages = list(extraction.pages)
    return ExtractResult(
        document_type=extraction.document_type,
        engine=extraction.engine,
        page_count=extraction.page_count,
        pages=pages,
        needs_ocr=extraction.needs_ocr,
    )


@dataclass
class _Extraction:
    document_type: DocumentType
    engine: Engine
    page_count: int
    pages: Iterator[Page]  # read lazily, so a caller can stream them
    needs_ocr: list[int]  # complete once `pages` is exhausted


def _extraction(
    path: Path,
    engine: PdfEngine,
    shard: Shard,
    reopen_mb: int,
    budget: DecodeBudget | None,
    report: ProgressReport | None,
) -> _Extraction:
    document_type = detect_type(path)
    if document_type is DocumentType.IMAGE:
        return _image_extraction(path, shard, report)
    if document_type is not DocumentType.PDF:
        if shard != WHOLE:
            raise ValueError("only PDF pages can be extracted in shards")
        pages = _text_pages(path)
        if budget is not None:
            budget.check_document(sum(page.chars for page in pages))
        if report is not None:
            report(1.0)
        return _Extraction(document_type, "text", len(pages), iter(pages), [])
    # Engines are imported here, in the pool process that reads: the worker's own process
    # imports this module for its models only. pypdf adds ~25 MB: only when it is chosen.
    if engine == "pypdfium2":
        from heavylift.documents.pdf_pdfium import open_pdfium

        source = open_pdfium(path, reopen_mb, shard)
    else:
        from heavylift.documents.pdf_pypdf import open_pypdf

        source = open_pypdf(path, shard, budget)
    needs_ocr: list[int] = []
    normalized = _normalized(source, budget, report, needs_ocr)
    return _Extraction(document_type, engine, source.page_count, normalized, needs_ocr)


def _image_extraction(path: Path, shard: Shard, report: ProgressReport | None) -> _Extraction:
    """An image has no text layer: each frame is an empty page that needs OCR."""
    if shard != WHOLE:
        raise ValueError("only PDF pages can be extracted in shards")
    count = image_page_count(path)
    if report is not None:
        report(1.0)
    pages = (Page(number=number, text="", chars=0) for number in range(1, count + 1))
    return _Extraction(DocumentType.IMAGE, "image", count, pages, list(range(1, count + 1)))


def _normalized(
    source: PageSource,
    budget: DecodeBudget | None,
    report: ProgressReport | None,
    needs_ocr: list[int],
) -> Iterator[Page]:
    chars = 0
    for raw in _reporting(source, report):
        if budget is not None:
            chars += len(raw.text)
            budget.check_page(raw.number, len(raw.text))
            budget.check_document(chars)
        text = normalize_text(raw.text)
        if raw.has_images:
            needs_ocr.append(raw.number)
        yield Page(number=raw.number, text=text, chars=len(text))


def _reporting(source: PageSource, report: ProgressReport | None) -> Iterator[RawPage]:
    last_step = 0
    for done, raw in enumerate(source.pages, start=1):
        yield raw
        step = done * _REPORT_STEPS // len(source.selected)
        if report is not None and step > last_step:
            last_step = step
            report(step / _REPORT_STEPS)


def _text_pages(path: Path) -> list[Page]:
    """Plain text and markdown: form feeds split pages, as `pr` and many exports use them."""
    raw = path.read_text(encoding="utf-8-sig")
    texts = [normalize_text(part) for part in raw.split("\f")]
    if not any(text.strip() for text in texts):
        raise EmptyDocumentError("The document contains only whitespace.")
    return [
        Page(number=number, text=text, chars=len(text))
        for number, text in enumerate(texts, start=1)
    ]


class ExtractSummary(BaseModel):
    """What the pipeline keeps of one extraction shard (the pages themselves go to a file)."""

    model_config = ConfigDict(frozen=True)

    document_type: DocumentType
    engine: Engine
    page_count: int  # of the whole document
    pages: int  # extracted (this shard's, or all once merged)
    text_pages: int  # pages with more than whitespace
    chars: int
    needs_ocr: list[int]


def extract_to_jsonl(
    path: Path,
    out: Path,
    *,
    engine: PdfEngine,
    shard: Shard = WHOLE,
    reopen_mb: int = REOPEN_MB,
    budget: DecodeBudget | None = None,
    report: ProgressReport | None = None,
) -> ExtractSummary:
    """Process-pool entry point: one shard's pages written to `out` as JSON Lines, as they are
    read (a shard's pages never sit in memory all at once)."""
    extraction = _extraction(path, engine, shard, reopen_mb, budget, report)
    text_pages = chars = 0

    def counted(pages: Iterator[Page]) -> Iterator[Page]:
        nonlocal text_pages, chars
        for page in pages:
            text_pages += bool(page.text.strip())
            chars += page.chars
            yield page

    count = write_jsonl(out, counted(extraction.pages))
    return ExtractSummary(
        document_type=extraction.document_type,
        engine=extraction.engine,
        page_count=extraction.page_count,
        pages=count,
        text_pages=text_pages,
        chars=chars,
        needs_ocr=extraction.needs_ocr,
    )
