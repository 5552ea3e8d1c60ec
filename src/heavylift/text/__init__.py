"""Text primitives beneath both `documents` and `ai`: chunks, clean text, and the offline
tokenizer (`heavylift.text.tokenizer`: numpy and gigatoken, imported only where text is
encoded, never by the worker's own process)."""

from heavylift.text.chunk import Chunk
from heavylift.text.normalize import normalize_text

__all__ = ["Chunk", "normalize_text"]
