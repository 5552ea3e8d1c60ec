"""AI providers: the local one offline, the OpenAI one against a fake server on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
from pydantic import SecretStr

from heavylift.ai import make_provider
from heavylift.ai.base import AnalysisLimits, BudgetExceededError, TokenBudget
from heavylift.ai.local import LocalProvider
from heavylift.ai.openai_provider import OpenAIProvider, embedding_batches
from heavylift.documents.chunker import chunk_pages
from heavylift.documents.extract import extract_pages
from heavylift.settings import Settings
from heavylift.text import Chunk
from tests.fake_openai import EMBEDDING_DIMENSIONS, FakeOpenAI, embedding_for, fake_openai_server
from tests.pdf_fixtures import real_manuals

INVENTED = "The moon is made of green cheese."


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    pages = extract_pages(real_manuals() / "R-data.pdf").pages
    return chunk_pages(pages, document_id="doc_ai")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with fake_openai_server() as server:
        server.chat = _notes
        yield server


def _provider(
    fake: FakeOpenAI, budget: int = 2_000_000, retry_s: float = 60.0
) -> OpenAIProvider:
    settings = Settings(
        openai_api_key=SecretStr("sk-test"), openai_base_url=fake.url, openai_max_retries=2,
        openai_retry_s=retry_s,
    )
    provider = make_provider(settings, TokenBudget(budget))
    assert isinstance(provider, OpenAIProvider)
    return provider


def _notes(body: dict[str, Any]) -> dict[str, Any]:
    """What a well-behaved model answers: content that fits the requested schema."""
    schema = body["response_format"]["json_schema"]
    assert schema["strict"] is True
    user = body["messages"][-1]["content"]
    if schema["name"] == "DocumentNotes":
        return {
            "summary": "The whole document.",
            "themes": [{"name": "Import", "description": "d", "chunk_ids": ["c99999-bogus"]}],
            "insights": [{"title": "I", "detail": "d", "chunk_ids": []}],
        }
    ids = re.findall(r"\[chunk (\S+)\]", user)
    first_text = user.split("]\n", 1)[1]
    return {
        "summary": f"A part of {len(ids)} chunks.",
        "themes": [{"name": "Data", "description": "d", "chunk_ids": [ids[0], "c99999-bogus"]}],
        "quotes": [
            {"text": first_text[:60], "chunk_id": ids[0]},
            {"text": INVENTED, "chunk_id": ids[0]},
            # Re-flowed whitespace: found, and returned as the document has it.
            {"text": " ".join(first_text[200:320].split()), "chunk_id": ids[0]},
        ],
        "insights": [{"title": "Insight", "detail": "d", "chunk_ids": ids[:2]}],
    }


def _assert_verbatim(quotes: list[Any], chunks: list[Chunk]) -> None:
    by_id = {chunk.id: chunk for chunk in chunks}
    for quote in quotes:
        chunk = by_id[quote.chunk_id]
        offset = chunk.text.find(quote.text)
        assert offset >= 0, quote.text
        assert quote.page == chunk.page_at(offset)


def test_structured_outputs_map_reduce(fake: FakeOpenAI, chunks: list[Chunk]) -> None:
    analysis = _provider(fake).analyze(chunks)

    maps = len(fake.requests) - 1
    assert maps >= 2 and set(fake.paths()) == {"/v1/chat/completions"}
    assert analysis.provider.name == "openai" and analysis.provider.chat_model == "gpt-4o-mini"
    assert analysis.summary.text == "The whole document."
    assert analysis.themes[0].chunk_ids == []  # the invented id is dropped
    assert len(analysis.quotes) == 2 * maps  # the invented quote of every part is dropped
    assert all(INVENTED not in quote.text for quote in analysis.quotes)
    assert any("\n" in quote.text for quote in analysis.quotes)  # the document's own spacing
    _assert_verbatim(analysis.quotes, chunks)
    assert analysis.usage.prompt_tokens > 0 and analysis.usage.completion_tokens == 50 * (maps + 1)


def test_single_part_needs_no_reduce_call(fake: FakeOpenAI, chunks: list[Chunk]) -> None:
    analysis = _provider(fake).analyze(chunks[:3])
    assert len(fake.requests) == 1
    assert analysis.summary.text == "A part of 3 chunks."
    assert analysis.themes[0].chunk_ids == [chunks[0].id]


def test_embeddings_come_back_as_base64_float32(fake: FakeOpenAI) -> None:
    texts = ["a b c", "hello"]
    vectors = _provider(fake).embed(texts)

    assert fake.requests[0].body["encoding_format"] == "base64"
    assert vectors.dtype == np.float32 and vectors.shape == (2, EMBEDDING_DIMENSIONS)
    assert vectors.tolist() == [embedding_for(text) for text in texts]


def test_429_with_retry_after_is_honoured(fake: FakeOpenAI) -> None:
    fake.fail_next(429, {"Retry-After": "1"})
    vectors = _provider(fake).embed(["retry me"])

    first, second = fake.requests
    assert second.at - first.at >= 0.95
    assert vectors.shape == (1, EMBEDDING_DIMENSIONS)


def test_an_outage_longer_than_the_clients_retries_is_ridden_out(fake: FakeOpenAI) -> None:
    # 8 answers of 503: the client's own 2 retries give up twice, our budget goes on.
    fake.fail_next(503, times=8)
    vectors = _provider(fake, retry_s=30).embed(["after the outage"])

    assert len(fake.requests) == 9
    assert vectors.shape == (1, EMBEDDING_DIMENSIONS)


def test_without_an_outage_budget_the_error_surfaces(fake: FakeOpenAI) -> None:
    fake.fail_next(503, times=3)
    with pytest.raises(openai.InternalServerError):
        _provider(fake, retry_s=0).embed(["no budget"])
    assert len(fake.requests) == 3  # the client's own tries only


def test_budget_overrun_raises(fake: FakeOpenAI, chunks: list[Chunk]) -> None:
    with pytest.raises(BudgetExceededError, match="budget"):
        _provider(fake, budget=20_000).analyze(chunks)
    assert len(fake.requests) == 1  # stopped before the request that would overrun

    fake.requests.clear()
    provider = _provider(fake, budget=5)
    with pytest.raises(BudgetExceededError):
        provider.embed(["one two three four five six"])
    assert fake.requests == []


def test_embedding_requests_split_at_2048_inputs_and_300k_tokens(fake: FakeOpenAI) -> None:
    provider = _provider(fake)
    assert len(provider.embed(["x"] * 2049)) == 2049
    assert [len(r.body["input"]) for r in fake.requests] == [2048, 1]

    fake.requests.clear()
    thousand_tokens = "hello" + " hello" * 999
    assert len(provider.embed([thousand_tokens] * 301)) == 301
    assert [len(r.body["input"]) for r in fake.requests] == [300, 1]


def test_embedding_batches() -> None:
    assert list(embedding_batches([1] * 5, max_inputs=2)) == [(0, 2), (2, 4), (4, 5)]
    assert list(embedding_batches([6, 5, 5, 11], max_tokens=10)) == [(0, 1), (1, 3), (3, 4)]
    assert list(embedding_batches([])) == []


def test_make_provider_without_a_key_is_local() -> None:
    provider = make_provider(Settings(openai_api_key=None))
    assert isinstance(provider, LocalProvider) and provider.info.name == "local"


def test_local_analysis_is_deterministic_and_verbatim(chunks: list[Chunk]) -> None:
    limits = AnalysisLimits(themes=8, quotes=25, insights=15)
    analysis = LocalProvider().analyze(chunks, limits)

    assert analysis == LocalProvider().analyze(chunks, limits)
    assert analysis.provider.name == "local"
    assert len(analysis.themes) == 8 and len(analysis.quotes) == 25
    assert 8 <= len(analysis.insights) <= 15
    assert 200 < len(analysis.summary.text) < 4000
    _assert_verbatim(analysis.quotes, chunks)
    ids = {chunk.id for chunk in chunks}
    for item in [*analysis.themes, *analysis.insights]:
        assert item.chunk_ids and set(item.chunk_ids) <= ids
    assert {theme.name.lower() for theme in analysis.themes} & {"data", "file", "files", "table"}


def test_local_analysis_of_nothing() -> None:
    analysis = LocalProvider().analyze([])
    assert analysis.summary.text == "" and analysis.themes == analysis.quotes == []


def test_local_embeddings_are_normalised_and_deterministic() -> None:
    texts = ["Reading CSV files into R", "reading csv files in R", "Spectral graph theory", ""]
    vectors = LocalProvider().embed(texts)

    assert vectors.dtype == np.float32 and vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-6)
    assert not vectors[3].any()
    assert np.array_equal(vectors, LocalProvider().embed(texts))
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
