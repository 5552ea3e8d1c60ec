"""pypdf engine: pure Python, selectable with PDF_ENGINE=pypdf (slower; reads the whole file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from heavylift.documents.errors import (
    CorruptDocumentError,
    DocumentError,
    EmptyDocumentError,
    PasswordProtectedError,
)
from heavylift.documents.pages import WHOLE, PageSource, RawPage, Shard, shard_pages


def open_pypdf(path: Path, shard: Shard = WHOLE) -> PageSource:
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise PasswordProtectedError()
        count = len(reader.pages)
    except DocumentError:
        raise
    except Exception as error:
        raise _map_error(error) from error
    if count == 0:
        raise EmptyDocumentError("The PDF has no pages.")
    selected = shard_pages(count, shard)
    return PageSource(count, _read(reader, selected), selected)


def _read(reader: PdfReader, selected: range) -> Iterator[RawPage]:
    for index in selected:
        try:
            page = reader.pages[index]
            text = page.extract_text()
            has_images = not text.strip() and len(page.images) > 0
        except Exception as error:
            raise _map_error(error, f"Page {index + 1} of the PDF is damaged.") from error
        yield RawPage(index + 1, text, has_images)


def _map_error(error: Exception, corrupt_message: str | None = None) -> DocumentError:
    # pypdf raises many exception types (KeyError, ValueError, ...) on damaged files.
    if isinstance(error, FileNotDecryptedError):
        return PasswordProtectedError()
    if isinstance(error, DependencyError):
        return PasswordProtectedError(
            "The PDF uses an encryption scheme this server cannot decrypt; "
            "upload an unencrypted copy."
        )
    return CorruptDocumentError(corrupt_message)
