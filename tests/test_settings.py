"""Settings from the environment: Bull's variable names, Memorystore TLS, one-line errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bullmq.backoffs import Backoffs

from heavylift.queue import Priority
from heavylift.queue.client import job_options
from heavylift.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    load_settings.cache_clear()


def test_defaults_are_the_seeds() -> None:
    settings = Settings()
    assert settings.job_concurrency == 2 and settings.job_attempts == 3
    assert settings.redis_connection_url() == "redis://127.0.0.1:6379/0"
    assert settings.queue_prefix == "bull"


def test_host_port_password_db_build_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "10.0.0.3")
    monkeypatch.setenv("REDIS_PORT", "6378")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss/w:rd")
    monkeypatch.setenv("REDIS_DB", "2")
    settings = Settings()
    assert settings.redis_connection_url() == "redis://:p%40ss%2Fw%3Ard@10.0.0.3:6378/2"
    assert settings.redacted_redis_url() == "redis://***@10.0.0.3:6378/2"
    assert "p@ss" not in repr(settings)


def test_memorystore_tls_with_its_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "server-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("REDIS_HOST", "10.0.0.3")
    monkeypatch.setenv("REDIS_TLS", "true")
    monkeypatch.setenv("REDIS_CA_FILE", str(ca))
    url = Settings().redis_connection_url()
    assert url.startswith("rediss://10.0.0.3:6379/0?ssl_ca_certs=")
    assert url.endswith(str(ca).replace("/", "%2F"))


def test_redis_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("REDIS_HOST", "ignored")
    assert Settings().redis_connection_url() == "redis://cache:6379/1"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("JOB_CONCURRENCY", "0", "invalid setting JOB_CONCURRENCY: Input should be greater"),
        ("REDIS_CA_FILE", "/nope.pem", "invalid setting REDIS_CA_FILE: file /nope.pem does not"),
        ("STALLED_INTERVAL_MS", "60000", "STALLED_INTERVAL_MS must not exceed LOCK_DURATION_MS"),
        ("AUTH_DISABLED", "perhaps", "invalid setting AUTH_DISABLED: "),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_default_retries_outlast_a_storage_outage_of_minutes() -> None:
    """Issue 12: each storage call waits out STORAGE_RETRY_S, then BullMQ's own backoff (as
    bullmq computes it from our job options) grows to minutes between attempts."""
    settings = Settings()
    backoff = job_options(settings, Priority.REGULAR)["backoff"]
    delays = [asyncio.run(Backoffs.calculate(backoff, made, None, None, None))
              for made in range(1, settings.job_attempts)]
    assert delays == [30_000, 60_000]
    assert settings.storage_retry_s == 60 and settings.result_ttl_s == 7 * 86_400
