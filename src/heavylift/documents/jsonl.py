"""Stage outputs as JSON Lines files: one pydantic model per line, streamed both ways."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound=BaseModel)


def write_jsonl(path: Path, items: Iterable[BaseModel]) -> int:
    """Write one JSON object per line (JSON escapes newlines inside strings); the item count."""
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for item in items:
            out.write(item.model_dump_json())
            out.write("\n")
            count += 1
    return count


def read_jsonl(path: Path, model: type[ModelT]) -> list[ModelT]:
    return list(iter_jsonl(path, model))


def iter_jsonl(path: Path, model: type[ModelT]) -> Iterator[ModelT]:
    """One item at a time: a stage that streams never holds the whole file's objects."""
    with path.open(encoding="utf-8", newline="\n") as source:
        for line in source:
            if line.strip():
                yield model.model_validate_json(line)
