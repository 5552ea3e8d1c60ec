"""OCR of pages without a text layer, and of images (issue 14): Tesseract through tesserocr.

tesserocr calls Tesseract's C++ API in the pool process: the language data loads once per
process and a page goes from pypdfium2's render to Tesseract as raw grey pixels, with no image
file written and no process started per page (pytesseract does both per page; measured slower,
see the README). Each page is one task in the worker's CPU pool, like extraction under
POOL_MEMORY_MB, with a time limit (OCR_PAGE_TIMEOUT_S) that Tesseract itself honours: it stops at
the deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, computed_field

from heavylift.documents.detect import DocumentType
from heavylift.documents.errors import DocumentError
from heavylift.documents.extract import Page, ProgressReport
from heavylift.documents.images import reading_image
from heavylift.documents.jsonl import iter_jsonl, write_jsonl
from heavylift.memory import keep_between_tasks, release_memory
from heavylift.text import normalize_text

if TYPE_CHECKING:
    from tesserocr import PyTessBaseAPI

# A page is rendered at OCR_DPI unless that makes it bigger than this (a poster-sized page); then
# at the resolution that fits, so one render stays far below POOL_MEMORY_MB (64 MB of grey).
MAX_RENDER_PIXELS = 64_000_000
# Images that do not say their resolution: what scanners use most.
_DEFAULT_IMAGE_DPI = 300
_LOWEST_DPI = 70  # below it Tesseract ignores a declared resolution and guesses
_cached: tuple[tuple[str, str], PyTessBaseAPI] | None = None  # this process's Tesseract


class OcrLanguageError(DocumentError):
    default_message = "Tesseract has no data for the OCR language."


class OcrTimeoutError(DocumentError):
    default_message = "OCR of a page took longer than the time limit."


class OcrPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    page: int  # 1-based
    confidence: int  # Tesseract's mean word confidence, 0-100 (0 when nothing was recognised)
    chars: int


class OcrSummary(BaseModel):
    """What the OCR stage did (kept in the checkpoint, shown in the manifest as `ocr`)."""

    model_config = ConfigDict(frozen=True)

    engine: str  # "tesseract 5.5.4"
    languages: str
    dpi: int
    pages: list[OcrPage]  # every page OCR'd, in page order

    @computed_field  # type: ignore[prop-decorator]
    @property
    def meanConfidence(self) -> float | None:
        """Over the pages where something was recognised."""
        read = [page.confidence for page in self.pages if page.chars]
        return round(sum(read) / len(read), 1) if read else None

    @property
    def text_pages(self) -> int:
        return sum(1 for page in self.pages if page.chars)

    @property
    def chars(self) -> int:
        return sum(page.chars for page in self.pages)


def installed_languages(tessdata: Path) -> list[str]:
    return sorted(path.name.removesuffix(".traineddata") for path in tessdata.glob("*.traineddata"))


def check_languages(languages: str, tessdata: Path) -> None:
    """Raise OcrLanguageError, naming the Debian packages to install, unless Tesseract has data
    for every language of `languages` ("eng+deu") in `tessdata`."""
    installed = installed_languages(tessdata)
    missing = [language for language in languages.split("+") if language not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{name.replace('_', '-').lower()}" for name in missing)
        raise OcrLanguageError(
            f"OCR_LANGUAGES={languages}: Tesseract has no language data for {', '.join(missing)} "
            f"in {tessdata} (OCR_TESSDATA_DIR; installed: {', '.join(installed) or 'none'}). "
            f"Install {packages}."
        )


class OcrResult(BaseModel):
    """One page's OCR, as a pool task returns it."""

    model_config = ConfigDict(frozen=True)

    text: Page
    page: OcrPage
    engine: str


def ocr_page(
    source: Path,
    kind: DocumentType,
    number: int,
    *,
    dpi: int,
    languages: str,
    tessdata: Path,
    page_timeout_s: float,
    report: ProgressReport | None = None,
) -> OcrResult:
    """Process-pool entry point: OCR page `number` of `source` (a PDF or an image file)."""
    api = _api(languages, tessdata)
    # Tesseract copies the pixels: ours are gone before it recognises them (~4 MB a page at
    # 200 dpi), and with them the render's buffers (pdfium's decoded page, its bitmap), freed
    # but still held by the allocator: handed back before Tesseract allocates its own, or the
    # process's peak is the sum of both (~20 MB more per process at 200 dpi).
    _set_image(api, _page_pixels(source, kind, number, dpi))
    release_memory()
    try:
        text, confidence = _recognise(api, number, page_timeout_s)
    finally:
        # Tesseract keeps the page's image and results until the next page replaces them (~12
        # MB per process, idle or beside the next render): gone now (the pool hands the freed
        # memory back after every task).
        api.Clear()
    return OcrResult(text=Page(number=number, text=text, chars=len(text)),
                     page=OcrPage(page=number, confidence=confidence, chars=len(text)),
                     engine=f"tesseract {api.Version()}")


def summarize(results: list[OcrResult], languages: str, dpi: int) -> OcrSummary:
    pages = sorted((result.page for result in results), key=lambda page: page.page)
    return OcrSummary(engine=results[0].engine, languages=languages, dpi=dpi, pages=pages)


def merge_into(pages_file: Path, recognised: list[Page]) -> None:
    """Replace the pages of `pages_file` that OCR read, keeping page order."""
    by_number = {page.number: page for page in recognised}
    merged = pages_file.with_suffix(".ocr.jsonl")
    write_jsonl(merged, (by_number.get(page.number, page)
                         for page in iter_jsonl(pages_file, Page)))
    merged.replace(pages_file)


def _api(languages: str, tessdata: Path) -> PyTessBaseAPI:
    """This pool process's Tesseract, kept between pages: loading a language's data costs
    more than rendering a page. Ended when the process runs any other task (~35 MB)."""
    from tesserocr import PyTessBaseAPI

    global _cached
    key = (languages, str(tessdata))
    if _cached is None or _cached[0] != key:
        check_languages(languages, tessdata)
        _end_api()
        _cached = (key, PyTessBaseAPI(path=f"{tessdata}/", lang=languages))
        keep_between_tasks(ocr_page, _end_api)
    return _cached[1]


def _end_api() -> None:
    global _cached
    if _cached is not None:
        _cached[1].End()
        _cached = None


@dataclass(frozen=True)
class _Grey:
    """A page as 8-bit grey pixels, rows `stride` bytes apart, at `dpi`."""

    pixels: bytes
    width: int
    height: int
    stride: int
    dpi: int


def _set_image(api: PyTessBaseAPI, grey: _Grey) -> None:
    # Raw pixels, not a PIL image: SetImage would encode it to BMP and decode that to a Pix,
    # two more copies of the page beside Tesseract's own (~6 MB of each process's peak).
    # (tesserocr's stub says str; it takes bytes, which it passes to Tesseract as they are.)
    api.SetImageBytes(grey.pixels, grey.width, grey.height, 1, grey.stride)  # type: ignore[arg-type]
    api.SetSourceResolution(grey.dpi)


def _recognise(api: PyTessBaseAPI, number: int, timeout_s: float) -> tuple[str, int]:
    if not api.Recognize(timeout=max(1, int(timeout_s * 1000))):
        raise OcrTimeoutError(
            f"OCR of page {number} took longer than the limit of OCR_PAGE_TIMEOUT_S="
            f"{timeout_s:g} s."
        )
    text = normalize_text(api.GetUTF8Text())
    return (text, api.MeanTextConf()) if text.strip() else ("", 0)


def _page_pixels(source: Path, kind: DocumentType, number: int, dpi: int) -> _Grey:
    """Page `number` as grey pixels."""
    if kind is DocumentType.IMAGE:
        return _frame(source, number)
    return _rendered(source, number, dpi)


def _rendered(path: Path, number: int, dpi: int) -> _Grey:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)  # extraction opened it already: it opens
    try:
        page = document[number - 1]
        try:
            width, height = page.get_size()  # in points, 72 per inch
            scale = min(dpi / 72, math.sqrt(MAX_RENDER_PIXELS / max(width * height, 1.0)))
            bitmap = page.render(scale=scale, grayscale=True)  # one byte per pixel
        finally:
            page.close()
    finally:
        document.close()
    try:
        return _Grey(bytes(bitmap.buffer), bitmap.width, bitmap.height, bitmap.stride,
                     max(_LOWEST_DPI, round(scale * 72)))
    finally:
        bitmap.close()


def _frame(path: Path, number: int) -> _Grey:
    with reading_image(path) as image:
        declared = image.info.get("dpi", (0, 0))[0]
        image.seek(number - 1)
        grey = image.convert("L")  # palette, RGBA, CMYK, 1-bit: all grey for Tesseract
    with grey:
        dpi = round(declared) if declared >= _LOWEST_DPI else _DEFAULT_IMAGE_DPI
        return _Grey(grey.tobytes(), grey.width, grey.height, grey.width, dpi)
