"""Text primitives beneath both `documents` and `ai`: chunks, the offline tokenizer, clean text."""

from heavylift.text.chunk import Chunk
from heavylift.text.normalize import normalize_text
from heavylift.text.tokenizer import TokenArray, Tokenizer, load_tokenizer

__all__ = ["Chunk", "TokenArray", "Tokenizer", "load_tokenizer", "normalize_text"]
