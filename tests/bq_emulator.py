"""The BigQuery emulator for tests: started once per session and seeded once (see
tests/dataset_checks.py for the seeded dataset). Test modules load it with
`pytest_plugins = ("tests.bq_emulator",)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from heavylift.datasets.clients import open_clients
from heavylift.resources import Resources
from heavylift.settings import Settings, load_settings
from local import sample_data
from local.bq_emulator import BigQueryEmulator, launch
from tests.dataset_checks import (
    ACTUALS_ROWS,
    DATASET,
    FORECAST_ROWS,
    emulator_settings,
    read_source,
)


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    log = tmp_path_factory.mktemp("bq") / "emulator.log"
    emulator = launch(log_path=log)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def bq_seeded(bq_emulator: BigQueryEmulator) -> BigQueryEmulator:
    clients = open_clients(emulator_settings(bq_emulator))
    try:
        sample_data.load_table(clients, DATASET, "forecast", FORECAST_ROWS,
                        environments=("production",), volume_types=("inbound",))
        sample_data.load_table(clients, DATASET, "actuals", ACTUALS_ROWS)
    finally:
        clients.close()
    return bq_emulator


@pytest.fixture
def bq_settings(
    settings: Settings, bq_seeded: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The test settings (Redis, temp storage) pointed at the seeded emulator."""
    for name, value in bq_seeded.env().items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    return load_settings()


@pytest.fixture(scope="session")
def source_actuals(bq_seeded: BigQueryEmulator) -> pa.Table:
    return read_source(bq_seeded, "actuals")


@pytest.fixture
def bq_resources(bq_settings: Settings) -> Iterator[Resources]:
    """The store and BigQuery clients of `bq_settings`, as the API and the worker hold them."""
    resources = Resources(bq_settings)
    yield resources
    resources.close()
