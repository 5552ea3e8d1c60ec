"""Extract normalised text page by page; runs in the worker's process pool (CPU-bound)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from heavylift.documents.detect import DocumentType, detect_type
from heavylift.documents.errors import EmptyDocumentError
from heavylift.documents.pages import PageSource, RawPage
from heavylift.documents.pdf_pdfium import open_pdfium
from heavylift.documents.pdf_pypdf import open_pypdf
from heavylift.documents.text import normalize_text

PdfEngine = Literal["pypdfium2", "pypdf"]
Engine = Literal["pypdfium2", "pypdf", "text"]
ProgressReport = Callable[[float], None]

_PDF_ENGINES: dict[PdfEngine, Callable[[Path], PageSource]] = {
    "pypdfium2": open_pdfium,
    "pypdf": open_pypdf,
}
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
    page_count: int
    pages: list[Page]
    needs_ocr: list[int]  # 1-based numbers of pages with images but no text layer


def extract_pages(
    path: Path,
    engine: PdfEngine = "pypdfium2",
    *,
    report: ProgressReport | None = None,
) -> ExtractResult:
    """Pages of the document at `path`; raises a DocumentError subclass for unusable files."""
    document_type = detect_type(path)
    if document_type is not DocumentType.PDF:
        pages = _text_pages(path)
        if report is not None:
            report(1.0)
        return ExtractResult(
            document_type=document_type,
            engine="text",
            page_count=len(pages),
            pages=pages,
            needs_ocr=[],
        )
    source = _PDF_ENGINES[engine](path)
    pages, needs_ocr = [], []
    for raw in _reporting(source, report):
        text = normalize_text(raw.text)
        pages.append(Page(number=raw.number, text=text, chars=len(text)))
        if raw.has_images:
            needs_ocr.append(raw.number)
    return ExtractResult(
        document_type=document_type,
        engine=engine,
        page_count=source.page_count,
        pages=pages,
        needs_ocr=needs_ocr,
    )


def _reporting(source: PageSource, report: ProgressReport | None) -> Iterator[RawPage]:
    last_step = 0
    for done, raw in enumerate(source.pages, start=1):
        yield raw
        step = done * _REPORT_STEPS // source.page_count
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
