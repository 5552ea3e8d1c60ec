"""What every extraction engine yields: one raw page at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

# pdfium keeps what it parses (fonts, page objects) until the document closes: ~25 MB per 100
# pages of LilyPond's manuals, ~1 MB on R's fullrefman. Reopening once reading has allocated
# PDF_REOPEN_MB more bounds memory where it grows and costs nothing where it does not; reopening
# every N pages instead slowed fullrefman by ~25% at N=100 (each reopen re-parses fonts).
REOPEN_MB = 20

# (index, of): the index-th of `of` equal runs of consecutive pages; (0, 1) is every page.
Shard = tuple[int, int]
WHOLE: Shard = (0, 1)


class RawPage(NamedTuple):
    number: int  # 1-based
    text: str  # as the engine returned it, not yet normalised
    has_images: bool  # only looked up for pages without text (to flag them for OCR)


class PageSource(NamedTuple):
    """An opened document: the page count up front (for progress), pages as they are read."""

    page_count: int  # of the whole document
    pages: Iterator[RawPage]  # those of `selected` only
    selected: range  # 0-based page indexes this source reads


def shard_pages(page_count: int, shard: Shard) -> range:
    """The 0-based page indexes of `shard`; shards of one document cover it without overlap."""
    index, of = shard
    if not 0 <= index < of:
        raise ValueError(f"shard {index} of {of} does not exist")
    return range(page_count * index // of, page_count * (index + 1) // of)
