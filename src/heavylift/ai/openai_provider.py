"""OpenAI (or any compatible server): structured outputs into pydantic models, batched embeddings.

The client retries 429/5xx itself and honours Retry-After (`OPENAI_MAX_RETRIES`, a few seconds
in all); an outage longer than that is ridden out around each request for `OPENAI_RETRY_S`
(`heavylift.outage`). Every token counts against the job's budget, once per request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
import openai
from openai.types import CompletionUsage
from pydantic import BaseModel

from heavylift.ai.base import (
    AIError,
    AIProvider,
    Analysis,
    AnalysisLimits,
    Insight,
    ProviderInfo,
    Summary,
    Theme,
    TokenBudget,
    TokenUsage,
    Vectors,
    known_ids,
    verified_quotes,
)
from heavylift.outage import through_outage
from heavylift.settings import Settings
from heavylift.text import Chunk
from heavylift.text.tokenizer import load_tokenizer

# OpenAI's embeddings limits per request.
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_TOKENS = 300_000
# Map step input size: large enough for few calls, small enough for a detailed reading.
MAP_INPUT_TOKENS = 12_000
MAX_OUTPUT_TOKENS = 4_000
# Chat messages carry a few tokens of framing each, beyond their text.
_MESSAGE_OVERHEAD = 8

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
# What a retry may cure; anything else (400, 401, 404, a refusal) fails at once.
_TRANSIENT = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)

_MAP_PROMPT = """You read one part of a document, given as chunks headed [chunk <id>].
Return: a summary of this part; its main themes (each with the ids of supporting chunks);
up to {quotes} short quotes copied EXACTLY, character for character, from the chunk text
(with the id of the chunk they come from); and insights (non-obvious conclusions, risks,
figures worth attention) with supporting chunk ids. Never invent text or ids."""

_REDUCE_PROMPT = """You are given notes on consecutive parts of one document, as JSON.
Merge them into: one summary of the whole document; at most {themes} distinct themes (merge
overlapping ones, keep their chunk ids); at most {insights} insights (keep their chunk ids)."""


class _ThemeDraft(BaseModel):
    name: str
    description: str
    chunk_ids: list[str]


class _QuoteDraft(BaseModel):
    text: str
    chunk_id: str


class _InsightDraft(BaseModel):
    title: str
    detail: str
    chunk_ids: list[str]


class SectionNotes(BaseModel):
    """Map step output for one group of chunks."""

    summary: str
    themes: list[_ThemeDraft]
    quotes: list[_QuoteDraft]
    insights: list[_InsightDraft]


class DocumentNotes(BaseModel):
    """Reduce step output over all groups."""

    summary: str
    themes: list[_ThemeDraft]
    insights: list[_InsightDraft]


class OpenAIProvider(AIProvider):
    def __init__(self, settings: Settings, budget: TokenBudget) -> None:
        if settings.openai_api_key is None:
            raise AIError("OPENAI_API_KEY is not set")
        self.client = openai.OpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            max_retries=settings.openai_max_retries,
            timeout=settings.openai_timeout_s,
        )
        self.info = ProviderInfo(
            name="openai",
            chat_model=settings.openai_chat_model,
            embedding_model=settings.openai_embedding_model,
        )
        self.retry_s = settings.openai_retry_s
        self.budget = budget
        self.usage = TokenUsage()
        self._tokenizer = load_tokenizer(settings.tokenizer_encoding)

    def analyze(self, chunks: Sequence[Chunk], limits: AnalysisLimits | None = None) -> Analysis:
        limits = limits or AnalysisLimits()
        groups = list(_groups(chunks, MAP_INPUT_TOKENS))
        per_group = max(1, -(-limits.quotes // max(1, len(groups))))
        notes = [
            self._parse(_MAP_PROMPT.format(quotes=per_group), _chunk_text(group), SectionNotes)
            for group in groups
        ]
        if len(notes) == 1:
            merged = DocumentNotes(
                summary=notes[0].summary, themes=notes[0].themes, insights=notes[0].insights
            )
        else:
            prompt = _REDUCE_PROMPT.format(themes=limits.themes, insights=limits.insights)
            parts = json.dumps([note.model_dump(exclude={"quotes"}) for note in notes])
            merged = self._parse(prompt, parts, DocumentNotes)
        candidates = [(quote.text, quote.chunk_id) for note in notes for quote in note.quotes]
        return Analysis(
            provider=self.info,
            summary=Summary(text=merged.summary),
            themes=[
                Theme(
                    name=t.name, description=t.description, chunk_ids=known_ids(t.chunk_ids, chunks)
                )
                for t in merged.themes[: limits.themes]
            ],
            quotes=verified_quotes(candidates, chunks, limits.quotes),
            insights=[
                Insight(title=i.title, detail=i.detail, chunk_ids=known_ids(i.chunk_ids, chunks))
                for i in merged.insights[: limits.insights]
            ],
            usage=self.usage.model_copy(),
        )

    def embed(self, texts: Sequence[str]) -> Vectors:
        counts = [len(self._tokenizer.encode(text)) for text in texts]
        vectors: list[list[float]] = []
        for start, end in embedding_batches(counts):
            self.budget.reserve(sum(counts[start:end]))
            response = self._request(partial(
                self.client.embeddings.create, model=self.info.embedding_model,
                input=list(texts[start:end])))
            self._charge(response.usage.prompt_tokens, 0)
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def _parse(self, instructions: str, content: str, model: type[ModelT]) -> ModelT:
        prompt_tokens = sum(
            len(self._tokenizer.encode(text)) + _MESSAGE_OVERHEAD
            for text in (instructions, content)
        )
        self.budget.reserve(prompt_tokens + MAX_OUTPUT_TOKENS)
        completion = self._request(lambda: self.client.chat.completions.parse(
            model=self.info.chat_model,
            messages=[
                {"role": "system", "content": instructions},
                {"role": "user", "content": content},
            ],
            response_format=model,
            max_completion_tokens=MAX_OUTPUT_TOKENS,
        ))
        self._charge_usage(completion.usage)
        message = completion.choices[0].message
        if message.parsed is None:
            raise AIError(f"The model returned no {model.__name__}: {message.refusal or 'empty'}")
        return message.parsed

    def _request(self, call: Callable[[], T]) -> T:
        """One API request, riding out an outage (connection errors, timeouts, 5xx, 429 after
        the client's own retries) for OPENAI_RETRY_S."""
        return through_outage(call, transient=_TRANSIENT, budget_s=self.retry_s,
                              event="openai_retry", model=self.info.chat_model)

    def _charge_usage(self, usage: CompletionUsage | None) -> None:
        if usage is not None:
            self._charge(usage.prompt_tokens, usage.completion_tokens)

    def _charge(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.budget.charge(prompt_tokens + completion_tokens)


def embedding_batches(
    token_counts: Sequence[int],
    max_inputs: int = MAX_EMBEDDING_INPUTS,
    max_tokens: int = MAX_EMBEDDING_TOKENS,
) -> Iterator[tuple[int, int]]:
    """[start, end) ranges of inputs, each within the per-request input and token limits."""
    start, tokens = 0, 0
    for index, count in enumerate(token_counts):
        if index > start and (index - start == max_inputs or tokens + count > max_tokens):
            yield start, index
            start, tokens = index, 0
        tokens += count
    if start < len(token_counts):
        yield start, len(token_counts)


def _groups(chunks: Sequence[Chunk], max_tokens: int) -> Iterator[list[Chunk]]:
    group: list[Chunk] = []
    tokens = 0
    for chunk in chunks:
        if group and tokens + chunk.tokens > max_tokens:
            yield group
            group, tokens = [], 0
        group.append(chunk)
        tokens += chunk.tokens
    if group:
        yield group


def _chunk_text(chunks: Sequence[Chunk]) -> str:
    return "\n\n".join(f"[chunk {chunk.id}]\n{chunk.text}" for chunk in chunks)
