"""The embeddings stage: one float32 vector per chunk, stored as .npy beside the chunk ids.

numpy and the local provider are imported by the functions, which run in a pool process: the
worker's own process imports this module for the stage's models only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from heavylift.ai import make_provider
from heavylift.ai.base import AIProvider, ProviderInfo, TokenBudget, Vectors
from heavylift.documents.jsonl import read_jsonl
from heavylift.settings import Settings
from heavylift.text import Chunk

if TYPE_CHECKING:
    pass

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


def embed_jsonl(
    chunks_file: Path,
    vectors_out: Path,
    index_out: Path,
    *,
    settings: Settings,
    tokens_used: int,
    tokens_file: Path | None = None,
    report: Callable[[float], None] | None = None,
) -> EmbeddingSummary:
    """Process-pool entry point: embed the chunks of `chunks_file` (hashing embeddings are
    CPU-bound; the OpenAI client blocks: neither belongs on the event loop). The local
    provider hashes the chunk stage's token ids from `tokens_file` when it is there."""
    import numpy as np

    chunks = read_jsonl(chunks_file, Chunk)
    budget = TokenBudget(settings.job_token_budget, tokens_used)
    provider = make_provider(settings, budget)
    embed = _embedder(provider, tokens_file)
    parts = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        parts.append(embed(batch))
        if report is not None:
            report((start + len(batch)) / len(chunks))
    vectors = np.concatenate(parts).astype(np.float32, copy=False)
    with vectors_out.open("wb") as out:
        np.save(out, vectors, allow_pickle=False)
    index = EmbeddingIndex(
        model=provider.info.embedding_model,
        dimensions=vectors.shape[1],
        chunkIds=[chunk.id for chunk in chunks],
    )
    index_out.write_text(index.model_dump_json(), encoding="utf-8")
    return EmbeddingSummary(
        provider=provider.info,
        vectors=len(vectors),
        dimensions=vectors.shape[1],
        tokens_used=budget.used,
    )


def _embedder(
    provider: AIProvider, tokens_file: Path | None
) -> Callable[[list[Chunk]], Vectors]:
    """How a batch of chunks becomes vectors: the local provider hashes the chunk stage's token
    ids when they are there, anything else embeds the chunks' text."""
    import numpy as np

    from heavylift.ai.local import LocalProvider

    if isinstance(provider, LocalProvider) and tokens_file is not None and tokens_file.is_file():
        local, tokens = provider, np.load(tokens_file, allow_pickle=False)
        return lambda batch: local.embed_tokens(
            [tokens[chunk.start_token : chunk.end_token] for chunk in batch])
    return lambda batch: provider.embed([chunk.text for chunk in batch])
