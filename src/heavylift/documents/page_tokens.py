"""Token ids of a document's pages, as extraction shards encode them for the chunk stage.

Each shard saves its pages' tokens to an .npz file as it reads them (`PageTokenWriter`, in the
pool process that extracts them); the chunk stage joins the shards' files (`load_page_tokens`)
instead of encoding the whole document again on one core.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from heavylift.text import get_encoding

PAGE_SEPARATOR = "\n\n"
# Token ids fit in 32 bits (cl100k_base and o200k_base have < 2**18): half the memory of int64.
TokenArray = npt.NDArray[np.int32]


class EncodedPages(NamedTuple):
    numbers: list[int]  # of the pages with text
    starts: npt.NDArray[np.intp]  # each one's first token
    tokens: TokenArray  # all of them


class PageTokenWriter:
    """An extraction shard's pages encoded as they are read, saved to `path` (.npz). A shard
    cannot know which page is the document's last with text, which gets no separator: every
    page is encoded with it, and the shard's last page also without it (a separator after
    punctuation can merge into one token), for `load_page_tokens` to choose."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path, self.enc = path, get_encoding(encoding)
        self.numbers: list[int] = []
        self.encoded: list[TokenArray] = []
        self.last_text = ""

    def add(self, number: int, text: str) -> None:
        text = text.strip()
        if text:
            self.numbers.append(number)
            tokens = self.enc.encode_ordinary(text + PAGE_SEPARATOR)
            self.encoded.append(np.asarray(tokens, dtype=np.int32))
            self.last_text = text

    def save(self) -> None:
        with self.path.open("wb") as out:
            np.savez(out, numbers=np.asarray(self.numbers, dtype=np.int64),
                     counts=np.asarray([len(part) for part in self.encoded], dtype=np.int64),
                     tokens=joined(self.encoded),
                     last_plain=np.asarray(self.enc.encode_ordinary(self.last_text),
                                           dtype=np.int32))


def load_page_tokens(paths: list[Path]) -> EncodedPages:
    """The shards' token files in page order: what `encode_pages` gives for their pages."""
    numbers: list[int] = []
    counts: list[int] = []
    parts: list[TokenArray] = []
    for path in paths:
        with np.load(path) as shard:
            if not len(shard["numbers"]):
                continue
            numbers += shard["numbers"].tolist()
            counts += shard["counts"].tolist()
            parts.append(shard["tokens"].astype(np.int32, copy=False))
            last_plain = shard["last_plain"].astype(np.int32, copy=False)
    if not parts:
        return EncodedPages([], np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int32))
    # The document's last page with text takes its encoding without the separator.
    parts[-1] = np.concatenate((parts[-1][: len(parts[-1]) - counts[-1]], last_plain))
    counts[-1] = len(last_plain)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.intp)
    return EncodedPages(numbers, starts, joined(parts))


def joined(parts: list[TokenArray]) -> TokenArray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
