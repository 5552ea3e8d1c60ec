"""Text normalisation shared by every extraction engine."""

from __future__ import annotations

import re
import unicodedata

# pdfium marks a hyphen that TeX & co. inserted at a line break as "\x02" (U+00AD is the
# real soft hyphen): both join the two halves of one word, so drop them with any line break.
_SOFT_HYPHEN = re.compile(r"[\x02\u00ad](?:\r\n|\r|\n)?")
_LINE_BREAK = re.compile(r"\r\n?")
# Remaining C0/C1 controls (form feeds, stray \x14 ...) carry no text; keep tab and newline.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")
_ASCII_CONTROLS = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])


def normalize_text(text: str) -> str:
    """NFKC, pdfium soft hyphens joined, \\r\\n as \\n, control characters dropped."""
    if "\x02" in text or "\u00ad" in text:
        text = _SOFT_HYPHEN.sub("", text)
    text = _LINE_BREAK.sub("\n", text)
    if text.isascii():
        # NFKC leaves ASCII as it is, and deleting bytes is ~10x the regex (most pages of
        # technical PDFs are ASCII: normalising was 5% of reading R's fullrefman).
        return text.encode("ascii").translate(None, _ASCII_CONTROLS).decode("ascii")
    return _CONTROLS.sub("", unicodedata.normalize("NFKC", text))
