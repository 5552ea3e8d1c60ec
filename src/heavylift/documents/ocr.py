"""OCR of pages without a text layer, and of images (issue 14): Tesseract through tesserocr.

tesserocr calls Tesseract's C++ API in the pool process: the language data loads once per task
and a page goes from pypdfium2's render to Tesseract as a PIL image, with no PNG written and no
process started per page (pytesseract does both per page; measured slower, see the README). It
runs in the worker's CPU pool like extraction, so under POOL_MEMORY_MB, and each page has a time
limit (OCR_PAGE_TIMEOUT_S) that Tesseract itself honours: recognition stops at the deadline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, computed_field

from heavylift.documents.detect import DocumentType
from heavylift.documents.errors import DocumentError
from heavylift.documents.extract import Page, ProgressReport
from heavylift.documents.images import reading_image
from heavylift.documents.jsonl import iter_jsonl, write_jsonl
from heavylift.text import normalize_text

if TYPE_CHECKING:
    from PIL.Image import Image
    from tesserocr import PyTessBaseAPI

# A page is rendered at OCR_DPI unless that makes it bigger than this (a poster-sized page); then
# at the resolution that fits, so one render stays far below POOL_MEMORY_MB (64 MB of grey).
MAX_RENDER_PIXELS = 64_000_000
# Images that do not say their resolution: what scanners use most.
_DEFAULT_IMAGE_DPI = 300
_LOWEST_DPI = 70  # below it Tesseract ignores a declared resolution and guesses


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


def ocr_to_jsonl(
    source: Path,
    kind: DocumentType,
    numbers: list[int],
    out: Path,
    *,
    dpi: int,
    languages: str,
    tessdata: Path,
    page_timeout_s: float,
    report: ProgressReport | None = None,
) -> OcrSummary:
    """Process-pool entry point: OCR pages `numbers` of `source` (a PDF or an image) into `out`
    as JSON Lines of pages, as they are recognised."""
    from tesserocr import PyTessBaseAPI

    check_languages(languages, tessdata)
    done: list[OcrPage] = []

    def recognised(api: PyTessBaseAPI) -> Iterator[Page]:
        for number, image, resolution in _page_images(source, kind, numbers, dpi):
            text, confidence = _recognise(api, number, image, resolution, page_timeout_s)
            done.append(OcrPage(page=number, confidence=confidence, chars=len(text)))
            if report is not None:
                report(len(done) / len(numbers))
            yield Page(number=number, text=text, chars=len(text))

    with PyTessBaseAPI(path=f"{tessdata}/", lang=languages) as api:
        write_jsonl(out, recognised(api))
        engine = f"tesseract {api.Version()}"
    return OcrSummary(engine=engine, languages=languages, dpi=dpi, pages=done)


def merge_summaries(shards: list[OcrSummary]) -> OcrSummary:
    pages = sorted((page for shard in shards for page in shard.pages), key=lambda p: p.page)
    return shards[0].model_copy(update={"pages": pages})


def merge_into(pages_file: Path, parts: list[Path]) -> None:
    """Replace the pages of `pages_file` that `parts` (OCR output) hold, keeping page order."""
    recognised = {page.number: page for part in parts for page in iter_jsonl(part, Page)}
    merged = pages_file.with_suffix(".ocr.jsonl")
    write_jsonl(merged, (recognised.get(page.number, page)
                         for page in iter_jsonl(pages_file, Page)))
    merged.replace(pages_file)


def _recognise(
    api: PyTessBaseAPI, number: int, image: Image, resolution: int, timeout_s: float
) -> tuple[str, int]:
    api.SetImage(image)
    api.SetSourceResolution(resolution)
    if not api.Recognize(timeout=max(1, int(timeout_s * 1000))):
        raise OcrTimeoutError(
            f"OCR of page {number} took longer than the limit of OCR_PAGE_TIMEOUT_S="
            f"{timeout_s:g} s."
        )
    text = normalize_text(api.GetUTF8Text())
    return (text, api.MeanTextConf()) if text.strip() else ("", 0)


def _page_images(
    source: Path, kind: DocumentType, numbers: list[int], dpi: int
) -> Iterator[tuple[int, Image, int]]:
    """(page number, 8-bit grey image, its resolution in dpi) for each of `numbers`."""
    if kind is DocumentType.IMAGE:
        yield from _frames(source, numbers)
    else:
        yield from _rendered(source, numbers, dpi)


def _rendered(path: Path, numbers: list[int], dpi: int) -> Iterator[tuple[int, Image, int]]:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)  # extraction opened it already: it opens
    try:
        for number in numbers:
            page = document[number - 1]
            try:
                width, height = page.get_size()  # in points, 72 per inch
                scale = min(dpi / 72, math.sqrt(MAX_RENDER_PIXELS / max(width * height, 1.0)))
                image = page.render(scale=scale, grayscale=True).to_pil()
            finally:
                page.close()
            yield number, image, max(_LOWEST_DPI, round(scale * 72))
    finally:
        document.close()


def _frames(path: Path, numbers: list[int]) -> Iterator[tuple[int, Image, int]]:
    with reading_image(path) as image:
        declared = image.info.get("dpi", (0, 0))[0]
        resolution = round(declared) if declared >= _LOWEST_DPI else _DEFAULT_IMAGE_DPI
        for number in numbers:
            image.seek(number - 1)
            yield number, image.convert("L"), resolution  # palette, RGBA, CMYK, 1-bit: grey
