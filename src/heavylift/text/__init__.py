"""Text primitives beneath both `documents` and `ai`: chunks, the offline tokenizer, clean text."""

from heavylift.text.chunk import Chunk
from heavylift.text.normalize import normalize_text
from heavylift.text.tokenizer import get_encoding

__all__ = ["Chunk", "get_encoding", "normalize_text"]
