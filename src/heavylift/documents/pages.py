"""What every extraction engine yields: one raw page at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple


class RawPage(NamedTuple):
    number: int  # 1-based
    text: str  # as the engine returned it, not yet normalised
    has_images: bool  # only looked up for pages without text (to flag them for OCR)


class PageSource(NamedTuple):
    """An opened document: the page count up front (for progress), pages as they are read."""

    page_count: int
    pages: Iterator[RawPage]
