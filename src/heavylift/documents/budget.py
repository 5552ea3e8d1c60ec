"""The decoded-size budget of one extraction (issue 13: a 10 KB PDF inflated to 4 GiB).

Where a budget can act depends on the engine:
- pypdf decodes streams in Python under limits of its own (`pypdf.Configuration`, 75 MB per
  stream by default): they are set to PDF_PAGE_DECODED_MB and its LimitReachedError becomes
  DecodedSizeLimitError. Its `extract_text` swallows that error (a bomb page reads as empty), so
  the engine decodes a page's contents first, where the error propagates.
- pdfium inflates a page's whole content stream in native code while loading the page
  (FPDF_LoadPage), without a size limit or a callback: 4 GiB of zeros took 5.2 GB and 8 s. No
  budget can stop it half-way; the pool process's memory cap (POOL_MEMORY_MB) does. It does not
  decode image XObjects to extract text (a 4 GiB image costs nothing).
Both engines: a page's text of more than PDF_PAGE_DECODED_MB Mi characters, or a document's of
more than PDF_DOCUMENT_DECODED_MB, fails the job (the text feeds chunking, embeddings and AI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from heavylift.documents.errors import DecodedSizeLimitError

if TYPE_CHECKING:  # pool processes that extract need not import the settings machinery
    from heavylift.settings import Settings

_MB = 1 << 20
# pypdf's per-filter output limits, all held to the page budget.
_PYPDF_OUTPUT_LIMITS = (
    "zlib_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "brotli_maximum_output_length",
    "jbig2_maximum_output_length",
    "array_based_stream_maximum_output_length",
)


class DecodeBudget(BaseModel):
    model_config = ConfigDict(frozen=True)

    page_mb: int
    document_mb: int

    @classmethod
    def of(cls, settings: Settings) -> DecodeBudget:
        return cls(page_mb=settings.pdf_page_decoded_mb,
                   document_mb=settings.pdf_document_decoded_mb)

    def pypdf_limits(self) -> dict[str, int]:
        return dict.fromkeys(_PYPDF_OUTPUT_LIMITS, self.page_mb * _MB)

    def page_error(self, number: int) -> DecodedSizeLimitError:
        return DecodedSizeLimitError(
            f"Page {number} decodes to more than the limit of PDF_PAGE_DECODED_MB="
            f"{self.page_mb} MB (a decompression bomb?); the document was not processed."
        )

    def check_page(self, number: int, chars: int) -> None:
        if chars > self.page_mb * _MB:
            raise self.page_error(number)

    def check_document(self, chars: int) -> None:
        if chars > self.document_mb * _MB:
            raise DecodedSizeLimitError(
                "The document's text is longer than the limit of PDF_DOCUMENT_DECODED_MB="
                f"{self.document_mb} MB; the document was not processed."
            )
