"""Object storage: one small interface (`ObjectStore`), three backends chosen by URL.

- `file:///abs/path`, `file://./relative`: plain files (the embedded default), see `local`;
- `gs://bucket[/prefix]`: Google Cloud Storage or fake-gcs-server, see `gcs`;
- `s3://bucket[/prefix]`: S3 or an S3-compatible server such as moto, see `s3`.

A prefix in the URL is prepended to every key. Keys are relative `/`-separated names, checked
once in `base`. Every call streams through files or temp files, never a whole object in memory,
and maps backend failures to `ObjectNotFoundError`, `StorageUnavailableError` (unreachable,
timeouts, 5xx: retried for STORAGE_RETRY_S, each try bounded by about STORAGE_TIMEOUT_S, then
raised) or `StorageError`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from heavylift.settings import Settings
from heavylift.storage.base import (
    InvalidKeyError,
    InvalidMetadataError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ReadableStream,
    SignedUpload,
    StorageError,
    StorageUnavailableError,
    UploadSignatureError,
    validate_key,
)
from heavylift.storage.local import LocalStore, metadata_from_headers, verify_local_upload

__all__ = [
    "InvalidKeyError",
    "InvalidMetadataError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "ReadableStream",
    "SignedUpload",
    "StorageError",
    "StorageUnavailableError",
    "UploadSignatureError",
    "metadata_from_headers",
    "open_store",
    "validate_key",
    "verify_local_upload",
]


def open_store(url: str, settings: Settings) -> ObjectStore:
    """The store for a STORAGE_URL; cloud SDKs are imported only for their own scheme."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return LocalStore(url, settings)
    if scheme not in {"gs", "s3"}:
        raise StorageError(f"unsupported storage URL {url!r}: use file://, gs:// or s3://")
    bucket, prefix = _bucket_and_prefix(url)
    if scheme == "gs":
        from heavylift.storage.gcs import GcsStore

        return GcsStore(url, settings, bucket, prefix)
    from heavylift.storage.s3 import S3Store

    return S3Store(url, settings, bucket, prefix)


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if not parts.netloc or parts.query or parts.fragment:
        raise StorageError(f"storage URL {url!r} must look like {parts.scheme}://bucket[/prefix]")
    prefix = parts.path.strip("/")
    if not prefix:
        return parts.netloc, ""
    try:
        validate_key(prefix)
    except InvalidKeyError as exc:
        raise StorageError(f"storage URL {url!r}: bad prefix: {exc}") from None
    return parts.netloc, prefix + "/"
