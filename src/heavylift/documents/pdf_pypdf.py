"""pypdf engine: pure Python, selectable with PDF_ENGINE=pypdf (slower; reads the whole file)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from pypdf import PasswordType, PdfReader, apply_configuration
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

from heavylift.documents.budget import DecodeBudget
from heavylift.documents.errors import (
    CorruptDocumentError,
    DocumentError,
    EmptyDocumentError,
    PasswordProtectedError,
)
from heavylift.documents.pages import WHOLE, PageSource, RawPage, Shard, shard_pages

# pypdf logs a warning per font it cannot fully decode (thousands on a 47 MB manual); the text
# we extract does not depend on them, and the job's log should not drown in them.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def open_pypdf(
    path: Path, shard: Shard = WHOLE, budget: DecodeBudget | None = None
) -> PageSource:
    try:
        with _limits(budget):
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
    return PageSource(count, _read(reader, selected, budget), selected)


def _limits(budget: DecodeBudget | None) -> AbstractContextManager[Any]:
    return nullcontext() if budget is None else apply_configuration(None, **budget.pypdf_limits())


def _read(reader: PdfReader, selected: range, budget: DecodeBudget | None) -> Iterator[RawPage]:
    for index in selected:
        try:
            with _limits(budget):
                page = reader.pages[index]
                page.get_contents()  # decoded here, a LimitReachedError is not swallowed
                text = page.extract_text()
                has_images = not text.strip() and len(page.images) > 0
        except LimitReachedError as error:
            if budget is None:
                raise CorruptDocumentError(str(error)) from error
            raise budget.page_error(index + 1) from error
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
