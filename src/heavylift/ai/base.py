"""The provider interface, its result models, the per-job token budget and quote verification."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from heavylift.text import Chunk

if TYPE_CHECKING:  # numpy only where vectors are made: the worker's own process never does
    import numpy as np
    import numpy.typing as npt

Vectors: TypeAlias = "npt.NDArray[np.float32]"  # shape (texts, dimensions)


class AIError(Exception):
    """An AI stage failed; `str(error)` is fit for a job's failedReason."""


class BudgetExceededError(AIError):
    def __init__(self, limit: int, needed: int) -> None:
        super().__init__(f"AI token budget exceeded: the job needs {needed} of {limit} tokens")
        self.limit, self.needed = limit, needed

    def __reduce__(self) -> tuple[type[BudgetExceededError], tuple[int, int]]:
        return type(self), (self.limit, self.needed)  # crosses the process pool intact


class TokenBudget:
    """Tokens one job may spend on a paid provider; requests that would overrun are refused."""

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit, self.used = limit, used

    def reserve(self, tokens: int) -> None:
        """Refuse a request before it is sent when its worst case would overrun the budget."""
        if self.used + tokens > self.limit:
            raise BudgetExceededError(self.limit, self.used + tokens)

    def charge(self, tokens: int) -> None:
        """Record what a request really used (its worst case was reserved before sending)."""
        self.used += tokens
        if self.used > self.limit:
            raise BudgetExceededError(self.limit, self.used)


class ProviderInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: Literal["openai", "local"]
    chat_model: str
    embedding_model: str


class Summary(BaseModel):
    text: str


class Theme(BaseModel):
    name: str
    description: str
    chunk_ids: list[str] = Field(description="Chunks that support the theme.")


class Quote(BaseModel):
    text: str = Field(description="A verbatim substring of the document text.")
    page: int
    chunk_id: str


class Insight(BaseModel):
    title: str
    detail: str
    chunk_ids: list[str]


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Analysis(BaseModel):
    provider: ProviderInfo
    summary: Summary
    themes: list[Theme]
    quotes: list[Quote]
    insights: list[Insight]
    usage: TokenUsage


class AnalysisLimits(BaseModel):
    """How many items an analysis keeps (the seed reported 8 themes, 25 quotes, 15 insights)."""

    model_config = ConfigDict(frozen=True)

    themes: int = 8
    quotes: int = 25
    insights: int = 15
    summary_sentences: int = 8


class AIProvider(ABC):
    info: ProviderInfo

    @abstractmethod
    def analyze(self, chunks: Sequence[Chunk], limits: AnalysisLimits | None = None) -> Analysis:
        """Summary (map-reduce over chunks), themes, verified quotes and insights."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Vectors:
        """One float32 vector per text, in order."""


def verify_quote(text: str, chunk_id: str, chunks: Sequence[Chunk]) -> Quote | None:
    """The quote as it stands in the document, or None when the document does not contain it.

    Models re-flow whitespace (PDF text breaks lines mid-sentence), so after an exact search we
    accept a match that differs only in whitespace, and return the document's own characters.
    Its claimed chunk is searched first; a quote found in another chunk is credited to that one.
    """
    words = text.split()
    if not words:
        return None
    loose = re.compile(r"\s+".join(map(re.escape, words)))
    ordered = sorted(chunks, key=lambda chunk: chunk.id != chunk_id)
    for chunk in ordered:
        offset = chunk.text.find(text)
        if offset >= 0:
            return Quote(text=text, page=chunk.page_at(offset), chunk_id=chunk.id)
        match = loose.search(chunk.text)
        if match:
            return Quote(text=match.group(), page=chunk.page_at(match.start()), chunk_id=chunk.id)
    return None


def verified_quotes(
    candidates: Iterable[tuple[str, str]], chunks: Sequence[Chunk], limit: int
) -> list[Quote]:
    """Verified, de-duplicated quotes from (text, chunk id) candidates; unverifiable ones drop."""
    quotes: list[Quote] = []
    seen: set[str] = set()
    for text, chunk_id in candidates:
        quote = verify_quote(text, chunk_id, chunks)
        if quote is not None and quote.text not in seen:
            seen.add(quote.text)
            quotes.append(quote)
            if len(quotes) == limit:
                break
    return quotes


def known_ids(ids: Iterable[str], chunks: Sequence[Chunk]) -> list[str]:
    """Chunk ids that exist, in first-seen order (models invent or garble ids)."""
    valid = {chunk.id for chunk in chunks}
    return list(dict.fromkeys(chunk_id for chunk_id in ids if chunk_id in valid))
