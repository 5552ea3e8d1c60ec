"""The embeddings stage: one float32 vector per chunk, stored as .npy beside the chunk ids.

numpy and the local provider are imported by the functions, which run in a pool process: the
worker's own process imports this module for the stage's models only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from heavylift.ai import make_provider
from heavylift.ai.base import ProviderInfo, TokenBudget, Vectors
from heavylift.documents.jsonl import read_jsonl
from heavylift.text import Chunk
from heavylift.text.encoding import TokenizerEncoding

if TYPE_CHECKING:
    from heavylift.settings import Settings
    from heavylift.text.tokenizer import TokenArray

# Chunks per provider call: progress moves after each, and OpenAI requests stay moderate.
EMBED_BATCH = 256


class EmbeddingIndex(BaseModel):
    """embeddings.json: what the rows of embeddings.npy are."""

    model: str
    dimensions: int
    dtype: Literal["float32"] = "float32"
    chunkIds: list[str]  # row i is the vector of chunkIds[i]


class EmbeddingSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: ProviderInfo
    vectors: int
    dimensions: int
    tokens_used: int  # the job's token budget spent so far, this stage included


@dataclass(frozen=True)
class VectorFiles:
    """The embeddings stage's outputs: embeddings.npy and embeddings.json."""

    vectors: Path
    index: Path


def embed_jsonl(
    chunks_file: Path,
    files: VectorFiles,
    *,
    settings: Settings,
    tokens_used: int,
    report: Callable[[float], None] | None = None,
) -> EmbeddingSummary:
    """Process-pool entry point: embed the chunks of `chunks_file` (hashing embeddings are
    CPU-bound; the OpenAI client blocks: neither belongs on the event loop). The local
    provider's vectors are usually stored by the chunk task already (`store_local_vectors`):
    this embeds their text when the chunks come from an earlier attempt (the same vectors)."""
    chunks = read_jsonl(chunks_file, Chunk)
    budget = TokenBudget(settings.job_token_budget, tokens_used)
    provider = make_provider(settings, budget)
    parts = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        parts.append(provider.embed([chunk.text for chunk in batch]))
        if report is not None:
            report((start + len(batch)) / len(chunks))
    return _store(parts, [chunk.id for chunk in chunks], provider.info, files, budget.used)


def store_local_vectors(
    tokens: TokenArray,
    spans: list[tuple[str, int, int]],
    encoding: TokenizerEncoding,
    files: VectorFiles,
) -> EmbeddingSummary:
    """The local provider's vectors of chunks given as (id, start_token, end_token) over the
    document's token ids, stored as `embed_jsonl` stores them: the chunk task calls this with
    the ids in hand, so nothing is encoded or read back (a local provider spends no tokens)."""
    from heavylift.ai.local import LocalProvider

    provider = LocalProvider(encoding)
    parts = [
        provider.embed_tokens([tokens[start:end] for _, start, end in spans[at : at + EMBED_BATCH]])
        for at in range(0, len(spans), EMBED_BATCH)  # batched: bounded temporary arrays
    ]
    return _store(parts, [chunk_id for chunk_id, _, _ in spans], provider.info, files, 0)


def _store(
    parts: list[Vectors],
    chunk_ids: list[str],
    provider: ProviderInfo,
    files: VectorFiles,
    tokens_used: int,
) -> EmbeddingSummary:
    import numpy as np

    vectors = np.concatenate(parts).astype(np.float32, copy=False)
    with files.vectors.open("wb") as out:
        np.save(out, vectors, allow_pickle=False)
    index = EmbeddingIndex(
        model=provider.embedding_model, dimensions=vectors.shape[1], chunkIds=chunk_ids
    )
    files.index.write_text(index.model_dump_json(), encoding="utf-8")
    return EmbeddingSummary(
        provider=provider, vectors=len(vectors), dimensions=vectors.shape[1],
        tokens_used=tokens_used,
    )
