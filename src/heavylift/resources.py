"""What the code of one process shares, built once from the settings: the object store and the
BigQuery clients. The worker runtime hands it to every job (`JobContext.resources`), the HTTP
function to every request (`api.services`); nothing beneath them reads the environment."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from heavylift.settings import Settings
from heavylift.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from heavylift.datasets.clients import BigQueryClients


class Resources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._bigquery: BigQueryClients | None = None

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings.storage_url, self.settings)

    def bigquery(self) -> BigQueryClients:
        """The BigQuery clients, made on first use (blocking: google-cloud-bigquery is imported
        then, ~80 MB that a process without dataset work never pays)."""
        with self._lock:
            if self._bigquery is None:
                from heavylift.datasets.clients import open_clients

                self._bigquery = open_clients(self.settings)
            return self._bigquery

    def close(self) -> None:
        with self._lock:
            if self._bigquery is not None:
                self._bigquery.close()
                self._bigquery = None
