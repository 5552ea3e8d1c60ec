"""The analysis stage: summary, themes, verified quotes and insights over the stored chunks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from heavylift.ai import make_provider
from heavylift.ai.base import ProviderInfo, TokenBudget
from heavylift.documents.jsonl import read_jsonl
from heavylift.settings import Settings
from heavylift.text import Chunk


class AnalysisSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: ProviderInfo
    themes: int
    quotes: int
    insights: int
    tokens_used: int  # the job's token budget spent so far, this stage included


def analyze_jsonl(
    chunks_file: Path,
    out: Path,
    *,
    settings: Settings,
    tokens_used: int,
    report: Callable[[float], None] | None = None,
) -> AnalysisSummary:
    """Process-pool entry point: analyse the chunks of `chunks_file` into `out` (JSON).

    The local provider is CPU-bound and the OpenAI client is synchronous: either way this must
    not run on the worker's event loop."""
    chunks = read_jsonl(chunks_file, Chunk)
    budget = TokenBudget(settings.job_token_budget, tokens_used)
    provider = make_provider(settings, budget)
    analysis = provider.analyze(chunks)
    out.write_text(analysis.model_dump_json(indent=1), encoding="utf-8")
    if report is not None:
        report(1.0)
    return AnalysisSummary(
        provider=analysis.provider,
        themes=len(analysis.themes),
        quotes=len(analysis.quotes),
        insights=len(analysis.insights),
        tokens_used=budget.used,
    )
