"""BigQuery clients from the settings: Google's endpoints with application-default credentials, or
an emulator (BQ_EMULATOR_HOST for REST, BQ_STORAGE_EMULATOR_HOST for the Storage Read API over
plain gRPC) with anonymous credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from heavylift.datasets.errors import is_transient, is_transient_job_failure
from heavylift.settings import Settings

RETRY_INITIAL_DELAY_S = 1.0


@dataclass(frozen=True)
class BigQueryClients:
    settings: Settings
    rest: bigquery.Client
    # None: read through REST (tabledata.list) pages.
    storage: Any | None

    @property
    def retry(self) -> Retry:
        """Retries a call that failed transiently (`errors.is_transient`: 5xx, 429, timeouts,
        connection errors...) with capped exponential backoff and full jitter (a random sleep
        below 1, 2, 4... s, at most BQ_RETRY_MAX_DELAY_S) until BQ_TIMEOUT_S has passed."""
        return self._retry(is_transient)

    @property
    def job_retry(self) -> Retry:
        """Re-runs a query job that failed for a transient reason (rateLimitExceeded,
        backendError...), with the same backoff and budget. Unlike google-cloud-bigquery's
        DEFAULT_JOB_RETRY it does not retry a call whose own retry gave up: nested, the two
        budgets would add up and BQ_TIMEOUT_S would bound nothing."""
        return self._retry(is_transient_job_failure)

    def _retry(self, predicate: Callable[[BaseException], bool]) -> Retry:
        return Retry(predicate=predicate, initial=RETRY_INITIAL_DELAY_S,
                     maximum=self.settings.bq_retry_max_delay_s, multiplier=2.0,
                     timeout=self.settings.bq_timeout_s)

    @property
    def call_timeout(self) -> float:
        """BQ_CALL_TIMEOUT_S: the deadline of one request or RPC (and of a read stream's wait for
        its next message), after which the retry takes over."""
        return self.settings.bq_call_timeout_s

    def close(self) -> None:
        self.rest.close()  # type: ignore[no-untyped-call]
        if self.storage is not None:
            self.storage.transport.close()


def open_clients(settings: Settings) -> BigQueryClients:
    return BigQueryClients(settings, _rest_client(settings), _storage_client(settings))


def _rest_client(settings: Settings) -> bigquery.Client:
    if settings.bq_emulator_host is None:
        return bigquery.Client(project=settings.bq_project)
    endpoint = settings.bq_emulator_host
    if not endpoint.startswith(("http://", "https://")):
        endpoint = "http://" + endpoint
    return bigquery.Client(
        project=settings.bq_project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def _storage_client(settings: Settings) -> Any | None:
    mode = settings.bq_read_api
    if mode == "rest":
        return None
    if settings.bq_emulator_host is not None and settings.bq_storage_emulator_host is None:
        if mode == "storage":
            raise ValueError("BQ_READ_API=storage with an emulator needs BQ_STORAGE_EMULATOR_HOST")
        return None
    try:
        from google.cloud.bigquery_storage_v1 import BigQueryReadClient
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )
    except ImportError:
        if mode == "storage":
            raise
        return None
    if settings.bq_storage_emulator_host is None:
        return BigQueryReadClient()  # type: ignore[no-untyped-call]
    import grpc

    # Arrow batches of a 50K-row chunk exceed gRPC's default 4 MB message cap. Without BDP
    # probing the flow-control window stays small: on loopback the probe let ~60 MB of batches
    # queue up ahead of a sync busy writing parts, for no gain in speed.
    channel = grpc.insecure_channel(
        settings.bq_storage_emulator_host,
        options=[("grpc.max_receive_message_length", -1), ("grpc.http2.bdp_probe", 0)],
    )
    transport = BigQueryReadGrpcTransport(channel=channel)
    return BigQueryReadClient(transport=transport)  # type: ignore[no-untyped-call]
