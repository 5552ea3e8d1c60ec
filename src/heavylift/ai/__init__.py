"""AI providers behind one interface: OpenAI when a key is configured, else local (no network)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from heavylift.ai.base import AIProvider, TokenBudget

if TYPE_CHECKING:  # pool processes that never see Settings do not import pydantic-settings
    from heavylift.settings import Settings


def uses_openai(settings: Settings) -> bool:
    """Whether jobs get the OpenAI provider (a key is configured) or the local one."""
    return settings.openai_api_key is not None


def make_provider(settings: Settings, budget: TokenBudget | None = None) -> AIProvider:
    """One provider per job: its token budget (JOB_TOKEN_BUDGET by default) is the job's.
    Providers are imported here, in the pool process that uses one: the local path never loads
    the openai client, and the worker's own process (which imports this package for the result
    models) neither numpy nor the tokenizer."""
    if not uses_openai(settings):
        from heavylift.ai.local import LocalProvider

        return LocalProvider(settings.tokenizer_encoding)
    from heavylift.ai.openai_provider import OpenAIProvider

    return OpenAIProvider(settings, budget or TokenBudget(settings.job_token_budget))
