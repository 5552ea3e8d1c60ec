"""The chunk stage: its pool tasks, what they are given and what they return.

The worker's own process imports this module to submit the tasks; the work itself
(`heavylift.documents.chunker`: numpy, the tokenizer) is imported by the pool process that does
it. For a job that wants the local provider's embeddings, the task stores them too
(`ChunkTask.vectors`): they hash the chunks' token ids, which it holds; the embeddings stage then
has nothing left to do (the same vectors as embedding each chunk's text).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from heavylift.documents.embed import EmbeddingSummary, VectorFiles
from heavylift.text.encoding import TokenizerEncoding

# How often a waiting chunk task looks for its pages (a stat call: nothing next to a page's cost).
_READY_POLL_S = 0.005
_FINAL = "pages"


class ChunkSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    chunks: int
    tokens: int  # sum over chunks (overlaps counted twice)


@dataclass(frozen=True)
class ChunkTask:
    """What the chunk stage reads, writes and how it cuts (a pool task's arguments)."""

    pages_file: Path
    out: Path  # the chunks, JSON Lines
    document_id: str
    max_tokens: int
    overlap: int
    encoding: TokenizerEncoding
    vectors: VectorFiles | None = None  # the local provider's embeddings of the chunks, if wanted


@dataclass(frozen=True)
class ChunkOutcome:
    summary: ChunkSummary
    embeddings: EmbeddingSummary | None  # when the task stored `vectors`


def chunk_jsonl(task: ChunkTask, report: Callable[[float], None] | None = None) -> ChunkOutcome:
    """Process-pool entry point: the pages of `task.pages_file` chunked into `task.out`."""
    from heavylift.documents.chunker import chunk_file
    from heavylift.text.tokenizer import load_tokenizer

    # Loaded for this task only: the next document's extraction gets the process's memory.
    return chunk_file(load_tokenizer(task.encoding), task, report)


def chunk_when_ready(
    ready: Path, task: ChunkTask, report: Callable[[float], None] | None = None
) -> ChunkOutcome | None:
    """`chunk_jsonl` queued behind the extraction shards: it starts in the first process they
    free and loads the tokenizer while the other shards finish, then waits for `ready`
    (`signal_pages`). None, at once, when the pages are not final (they need OCR first, or the
    extraction failed)."""
    from heavylift.documents.chunker import chunk_file
    from heavylift.text.tokenizer import load_tokenizer

    enc = load_tokenizer(task.encoding)
    while not ready.exists():
        time.sleep(_READY_POLL_S)
    if ready.read_text() != _FINAL:
        return None
    return chunk_file(enc, task, report)


def signal_pages(ready: Path, final: bool) -> None:
    """Tell a waiting `chunk_when_ready` that the pages file is final, or that it will not be
    (written whole, then renamed: the task never reads half a marker)."""
    partial = ready.with_name(f"{ready.name}.tmp")
    partial.write_text(_FINAL if final else "stop")
    partial.replace(ready)
