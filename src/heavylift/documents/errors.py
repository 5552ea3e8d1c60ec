"""Errors a document can cause that no retry will fix; each carries a message fit for a user."""

from __future__ import annotations


class DocumentError(Exception):
    """The document cannot be processed; `str(error)` is the user-facing reason."""

    default_message = "The document could not be processed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class PasswordProtectedError(DocumentError):
    default_message = "The PDF is password-protected; upload a copy without a password."


class CorruptDocumentError(DocumentError):
    default_message = "The file is damaged or truncated and cannot be read."


class EmptyDocumentError(DocumentError):
    default_message = "The document is empty."


class UnsupportedTypeError(DocumentError):
    default_message = (
        "Unsupported file type: upload a PDF, an image (PNG, JPEG, TIFF), plain text or markdown."
    )


class ExtractionTimeoutError(DocumentError):
    default_message = "Reading the document's text took longer than the time limit."


class DecodedSizeLimitError(DocumentError):
    default_message = "The document decodes to more data than the limit allows."
