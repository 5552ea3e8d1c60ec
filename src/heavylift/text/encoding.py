"""The names of the BPE encodings the worker ships (`heavylift.text.tokenizer`): nothing is
downloaded. Apart from the settings so that pool processes that only chunk and embed name an
encoding without importing pydantic-settings (~6 MB in each process)."""

from typing import Literal

TokenizerEncoding = Literal["cl100k_base", "o200k_base"]
