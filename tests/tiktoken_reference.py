"""tiktoken itself, offline: the reference our tokenizer's ids must equal."""

from __future__ import annotations

import os
from functools import lru_cache

import tiktoken

from heavylift.text.encoding import TokenizerEncoding
from heavylift.text.tokenizer import install_shipped_encoding, tiktoken_cache_dir


@lru_cache(maxsize=2)
def reference(name: TokenizerEncoding) -> tiktoken.Encoding:
    directory = tiktoken_cache_dir()
    install_shipped_encoding(name, directory)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)  # tiktoken reads it at each load
    return tiktoken.get_encoding(name)
