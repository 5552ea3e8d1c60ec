"""gs:// backend on google-cloud-storage (extra `heavylift[gcs]`).

URL: `gs://bucket[/prefix]`. API calls use Application Default Credentials; when the standard
STORAGE_EMULATOR_HOST variable is set (fake-gcs-server) the client talks to the emulator,
anonymously, and signed URLs point at it too.

Signed upload URLs are V4 signed PUTs that work once: they sign `x-goog-if-generation-match: 0`,
so GCS answers a second PUT to the object with 412 (fake-gcs-server ignores that precondition).
Who signs, first match wins:
1. GCS_SIGNING_CREDENTIALS_FILE, a service-account JSON: signed locally with its key (local runs,
   tests against the emulator, which does not check signatures);
2. the API credentials, when they hold a private key (GOOGLE_APPLICATION_CREDENTIALS = a key file);
3. otherwise (Cloud Functions / Cloud Run metadata-server credentials cannot sign locally) the IAM
   Credentials signBlob API, as GCS_SIGNING_SERVICE_ACCOUNT or the runtime's own account; that
   account needs roles/iam.serviceAccountTokenCreator on itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials, Signing
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import Request
from google.cloud.storage import Blob, Client
from google.cloud.storage.fileio import BlobReader
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from heavylift.settings import Settings
from heavylift.storage.base import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ReadableStream,
    StorageError,
    StorageUnavailableError,
)

# Resumable uploads hold one chunk in memory; a multiple of 256 KiB, as the API requires.
UPLOAD_CHUNK = 8 * 1024 * 1024
READ_CHUNK = 4 * 1024 * 1024

_UNAVAILABLE = (
    requests.ConnectionError,
    requests.Timeout,
    api_exceptions.RetryError,
    api_exceptions.ServerError,
    api_exceptions.TooManyRequests,
    google.auth.exceptions.TransportError,
)


class GcsStore(ObjectStore):
    def __init__(self, url: str, settings: Settings, bucket: str, prefix: str) -> None:
        super().__init__(url, settings, prefix, bucket)
        try:
            # project=None: object operations need none, so none is inferred (or required).
            self._client = Client(project=None)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise StorageError(f"{url}: no Google credentials found: {exc}") from exc
        self._bucket = self._client.bucket(bucket)
        timeout = settings.storage_timeout_s
        self._call: dict[str, Any] = {
            "timeout": timeout,
            "retry": DEFAULT_RETRY.with_timeout(timeout),
        }
        self._signer = None
        if settings.gcs_signing_credentials_file is not None:
            self._signer = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(settings.gcs_signing_credentials_file)
            )

    def _map_error(self, exc: Exception, key: str) -> StorageError | None:
        if isinstance(exc, api_exceptions.NotFound):
            return ObjectNotFoundError(f"no object {key!r} in {self.url}")
        if isinstance(exc, _UNAVAILABLE):
            return StorageUnavailableError(f"{self.url} unavailable: {exc}")
        if isinstance(exc, api_exceptions.GoogleAPICallError | GoogleAuthError):
            return StorageError(f"{self.url}: {key!r}: {exc}")
        return None

    def _upload(
        self,
        name: str,
        source: ReadableStream,
        size: int | None,
        content_type: str,
        metadata: dict[str, str],
    ) -> ObjectInfo:
        blob = self._bucket.blob(name, chunk_size=UPLOAD_CHUNK)
        blob.metadata = metadata
        blob.upload_from_file(source, size=size, content_type=content_type, **self._call)
        return self._to_info(blob)

    def _open_read(self, name: str) -> BlobReader:
        blob = self._bucket.blob(name)
        blob.reload(**self._call)  # raises NotFound now and pins the generation read below
        reader: BlobReader = blob.open("rb", chunk_size=READ_CHUNK, **self._call)
        return reader

    def _info(self, name: str) -> ObjectInfo:
        blob = self._bucket.blob(name)
        blob.reload(**self._call)
        return self._to_info(blob)

    def _delete(self, name: str) -> None:
        with suppress(api_exceptions.NotFound):
            self._bucket.blob(name).delete(**self._call)

    def _list(self, name_prefix: str) -> Iterator[ObjectInfo]:
        for blob in self._client.list_blobs(self._bucket, prefix=name_prefix, **self._call):
            yield self._to_info(blob)

    def _sign_upload(
        self, name: str, content_type: str, size: int, metadata: dict[str, str], expires_at: int
    ) -> tuple[str, dict[str, str]]:
        # Signed headers bind the size (GCS rejects any other length) and the metadata, and make
        # the URL single-use: generation 0 means "only if no live object", so a replay gets 412.
        headers = {"x-goog-content-length-range": f"{size},{size}",
                   "x-goog-if-generation-match": "0"}
        headers.update({f"x-goog-meta-{k}": v for k, v in metadata.items()})
        url: str = self._bucket.blob(name).generate_signed_url(
            version="v4",
            method="PUT",
            expiration=datetime.fromtimestamp(expires_at, UTC),
            content_type=content_type,
            headers=dict(headers),  # the library adds "host" to the dict it is given
            **self._signing_kwargs(),
        )
        return url, {"Content-Type": content_type, **headers}

    def _upload_base(self) -> str:
        # What generate_signed_url builds on: STORAGE_EMULATOR_HOST or storage.googleapis.com.
        endpoint: str = self._client.api_endpoint
        return endpoint

    def _signing_kwargs(self) -> dict[str, Any]:
        if self._signer is not None:
            return {"credentials": self._signer}
        credentials = self._client._credentials  # the ones generate_signed_url itself falls back to
        if isinstance(credentials, Signing):
            return {}
        if isinstance(credentials, AnonymousCredentials):
            raise StorageError(
                "cannot sign gs:// upload URLs with anonymous credentials: "
                "set GCS_SIGNING_CREDENTIALS_FILE"
            )
        if not credentials.valid:
            credentials.refresh(Request())
        email = self.settings.gcs_signing_service_account or getattr(
            credentials, "service_account_email", None
        )
        if not email:
            raise StorageError("cannot tell which account signs: set GCS_SIGNING_SERVICE_ACCOUNT")
        return {"service_account_email": email, "access_token": credentials.token}

    def _to_info(self, blob: Blob) -> ObjectInfo:
        return ObjectInfo(
            key=blob.name,
            size=blob.size,
            content_type=blob.content_type,
            metadata=blob.metadata or {},
            etag_or_generation=str(blob.generation),
            updated=blob.updated,
        )
