"""Tell a document's type from its bytes; the file name and the declared MIME type can lie."""

from __future__ import annotations

import codecs
import re
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from heavylift.documents.errors import EmptyDocumentError, UnsupportedTypeError

# PDF readers accept the header anywhere in the first KiB (some generators prepend junk).
_PDF_HEADER_WINDOW = 1024
_READ_BLOCK = 1 << 20
_MARKDOWN_SAMPLE = 64 * 1024
_MARKDOWN_PATTERNS = tuple(
    re.compile(pattern, re.MULTILINE)
    for pattern in (
        r"^#{1,6} \S",  # ATX heading
        r"^(```|~~~)",  # code fence
        r"\[[^\]\n]+\]\([^)\s]+\)",  # inline link
        r"^\s{0,3}[-*+] \S",  # bullet list item
        r"^\s{0,3}> \S",  # block quote
        r"^\S.*\n(=+|-+)\s*$",  # setext heading
        r"\*\*[^*\n]+\*\*|__[^_\n]+__",  # strong emphasis
    )
)
# Images OCR can read, by their magic bytes: PNG, JPEG, TIFF (little- and big-endian).
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")
# A single stray "- item" or "**" in prose is not enough to call a file markdown.
_MARKDOWN_MIN_KINDS = 2


class DocumentType(StrEnum):
    PDF = "pdf"
    TEXT = "text"
    MARKDOWN = "markdown"
    IMAGE = "image"  # PNG, JPEG or TIFF: every frame is a page to OCR


def detect_type(path: Path) -> DocumentType:
    """The type of the file at `path`; raises EmptyDocumentError or UnsupportedTypeError."""
    with path.open("rb") as file:
        return detect_stream(file)


def detect_stream(file: BinaryIO) -> DocumentType:
    """Like `detect_type`, reading a binary stream from its current position to the end."""
    head = file.read(_READ_BLOCK)
    if not head:
        raise EmptyDocumentError("The file is empty (0 bytes).")
    if b"%PDF-" in head[:_PDF_HEADER_WINDOW]:
        return DocumentType.PDF
    if head.startswith(_IMAGE_MAGIC):
        return DocumentType.IMAGE
    decoder = codecs.getincrementaldecoder("utf-8")()
    block = head
    while block:
        if b"\x00" in block:
            raise UnsupportedTypeError()
        try:
            decoder.decode(block)
        except UnicodeDecodeError:
            raise UnsupportedTypeError() from None
        block = file.read(_READ_BLOCK)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UnsupportedTypeError() from None
    sample = head[:_MARKDOWN_SAMPLE].decode("utf-8", errors="ignore")
    return DocumentType.MARKDOWN if looks_like_markdown(sample) else DocumentType.TEXT


def looks_like_markdown(text: str) -> bool:
    kinds = sum(1 for pattern in _MARKDOWN_PATTERNS if pattern.search(text))
    return kinds >= _MARKDOWN_MIN_KINDS
