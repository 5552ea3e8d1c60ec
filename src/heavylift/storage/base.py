"""The object-store interface, its models and errors, and everything the backends share.

Public methods validate keys and metadata, apply the URL's key prefix and map backend exceptions
here, once; a backend implements the underscore methods on full object names and says which of
its exceptions mean "not found" or "unavailable" in `_map_error`.

Every public call retries `StorageUnavailableError` for up to STORAGE_RETRY_S (capped exponential
waits with full jitter), so a storage outage shorter than that is a pause, not a failed job.
A backend's own retries (google-cloud-storage's, botocore's) stay within STORAGE_TIMEOUT_S per try.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, ClassVar, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from heavylift.outage import through_outage
from heavylift.settings import Settings

MAX_KEY_LENGTH = 1024
# V4 signatures (GCS and S3 alike) are valid for at most 7 days.
MAX_SIGNED_EXPIRY_S = 7 * 24 * 3600
COPY_CHUNK = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"

log = logging.getLogger("heavylift.storage")
T = TypeVar("T")

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Metadata travels as HTTP headers (x-goog-meta-*, x-amz-meta-*), which are case-insensitive and
# ASCII: S3 hands names back lower-cased, so only lower-case names are accepted everywhere.
_METADATA_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
_METADATA_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")


class StorageError(Exception):
    """Any object-storage failure."""


class InvalidKeyError(StorageError, ValueError):
    """The key is not a safe relative object name."""


class InvalidMetadataError(StorageError, ValueError):
    """A metadata name or value cannot travel as an HTTP header."""


class ObjectNotFoundError(StorageError):
    """No object under that key."""


class StorageUnavailableError(StorageError):
    """The backend cannot be reached or answered with a server error; retrying later may work."""


class UploadSignatureError(StorageError):
    """A file:// upload URL is expired or its signature does not match the request."""


class ObjectInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    size: int
    # None when the backend's listing does not carry it (s3:// list); info() always has it.
    content_type: str | None
    metadata: dict[str, str]
    etag_or_generation: str
    updated: datetime


class SignedUpload(BaseModel):
    """Where and how a client PUTs the bytes itself; every header must be sent as given."""

    model_config = ConfigDict(frozen=True)

    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expiresAt: str  # the API's JSON field name


class ReadableStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object name, else raise InvalidKeyError."""
    problem = _key_problem(key)
    if problem:
        raise InvalidKeyError(f"invalid object key {key[:100]!r}: {problem}")
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"longer than {MAX_KEY_LENGTH} characters"
    if _CONTROL_CHARS.search(key):
        return "control characters"
    if "\\" in key:
        return "backslash"
    if key.startswith("/"):
        return "absolute"
    if any(segment in {"", ".", ".."} for segment in key.split("/")):
        return "empty, '.' or '..' path segment"
    return None


def validate_prefix(prefix: str) -> str:
    """A list prefix is a key, possibly empty or ending with '/'."""
    stripped = prefix.removesuffix("/")
    if stripped:
        validate_key(stripped)
    return prefix


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    metadata = dict(metadata or {})
    for name, value in metadata.items():
        if not _METADATA_NAME.match(name):
            raise InvalidMetadataError(
                f"metadata name {name!r}: use lower-case letters, digits, '-' or '_'"
            )
        if not isinstance(value, str) or not _METADATA_VALUE.match(value):
            raise InvalidMetadataError(
                f"metadata {name!r}: value must be printable ASCII, at most 1024 characters"
            )
    return metadata


def iso_utc(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Write to a temp file beside `target`, then rename over it: readers never see half a file.

    Temp names start with `.hl-tmp-` so the file:// listing can skip them.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".hl-tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextmanager
def _sized_source(fileobj: ReadableStream) -> Iterator[tuple[ReadableStream, int]]:
    """`fileobj` seekable with its size known: itself when it can seek, else a temp-file copy."""
    if isinstance(fileobj, io.IOBase) and fileobj.seekable():
        start = fileobj.tell()
        size = fileobj.seek(0, io.SEEK_END) - start
        fileobj.seek(start)
        yield fileobj, size
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(fileobj, spool, COPY_CHUNK)
        size = spool.tell()
        spool.seek(0)
        yield spool, size


class _SourceReadError(Exception):
    """Carries an exception raised by the caller's stream past the backend error mapping."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class _GuardedSource:
    def __init__(self, source: ReadableStream) -> None:
        self._source = source

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._source.read(size)
        except Exception as exc:
            raise _SourceReadError(exc) from exc


class ObjectStore(ABC):
    """Objects under string keys, streamed to and from files; see the package docstring."""

    #: Cloud SDKs need a seekable source of known size (to pick multipart vs resumable and to
    #: rewind on retry): put_stream spools other sources to a temp file for them.
    needs_seekable_source: ClassVar[bool] = True

    def __init__(
        self, url: str, settings: Settings, prefix: str = "", bucket: str | None = None
    ) -> None:
        self.url = url
        self.settings = settings
        self.bucket = bucket
        self._prefix = prefix

    def key_of(self, bucket: str, name: str) -> str | None:
        """The key of a bucket object named in an event, or None when it is not in this store."""
        if bucket != self.bucket or not name.startswith(self._prefix):
            return None
        return name.removeprefix(self._prefix)

    # ---- public API ----

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        name, meta = self._name(key), validate_metadata(metadata)

        def put() -> ObjectInfo:
            with open(path, "rb") as source, self._errors(key):
                size = os.fstat(source.fileno()).st_size
                return self._public(self._upload(name, source, size, content_type, meta))

        return self._retried(key, put)

    def put_stream(
        self,
        key: str,
        fileobj: ReadableStream,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store a binary stream; errors raised by `fileobj` itself propagate unchanged.

        Retried while storage is unavailable by rewinding the seekable source (or the temp-file
        copy made of it). A backend that takes the stream as it comes (file://) is not retried:
        the stream cannot be rewound, and a local disk error is not an outage."""
        name, meta = self._name(key), validate_metadata(metadata)
        if not self.needs_seekable_source:
            with self._errors(key):
                guarded = _GuardedSource(fileobj)
                return self._public(self._upload(name, guarded, None, content_type, meta))
        with _sized_source(fileobj) as (source, size):
            begin = source.tell() if isinstance(source, io.IOBase) else 0

            def put_sized() -> ObjectInfo:
                if isinstance(source, io.IOBase):
                    source.seek(begin)
                with self._errors(key):
                    return self._public(self._upload(name, source, size, content_type, meta))

            return self._retried(key, put_sized)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        metadata: Mapping[str, str] | None = None,
        retry_s: float | None = None,
    ) -> ObjectInfo:
        """`retry_s`: this call's outage budget, if not STORAGE_RETRY_S."""
        name, meta = self._name(key), validate_metadata(metadata)

        def put() -> ObjectInfo:
            with self._errors(key):
                return self._public(
                    self._upload(name, io.BytesIO(data), len(data), content_type, meta))

        return self._retried(key, put, retry_s)

    @contextmanager
    def open_read(self, key: str) -> Iterator[ReadableStream]:
        """Stream an object; raises ObjectNotFoundError on entry if it does not exist.

        Opening is retried while storage is unavailable; a failure mid-stream is not (the
        caller has consumed part of it): use download_to for a copy that retries whole."""
        name = self._name(key)
        with self._errors(key), ExitStack() as stack:

            def open_stream() -> ReadableStream:
                with self._errors(key):
                    return stack.enter_context(self._open_read(name))

            yield self._retried(key, open_stream)

    def download_to(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        """Stream an object into `path` (replaced atomically; no partial file on failure)."""
        name = self._name(key)

        def download() -> ObjectInfo:
            with self._errors(key):
                info = self._public(self._info(name))
                with self._open_read(name) as stream, atomic_file(Path(path)) as out:
                    shutil.copyfileobj(stream, out, COPY_CHUNK)
            return info

        return self._retried(key, download)

    def info(self, key: str) -> ObjectInfo:
        name = self._name(key)

        def read_info() -> ObjectInfo:
            with self._errors(key):
                return self._public(self._info(name))

        return self._retried(key, read_info)

    def exists(self, key: str) -> bool:
        try:
            self.info(key)
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove an object; a missing one is not an error."""
        name = self._name(key)

        def delete() -> None:
            with self._errors(key):
                self._delete(name)

        self._retried(key, delete)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (a plain string prefix), in key order.

        Each step is retried while storage is unavailable: the listing starts over and skips
        the keys already given (backends list in key order)."""
        name_prefix = self._prefix + validate_prefix(prefix)

        def listing() -> Iterator[ObjectInfo]:
            source: Iterator[ObjectInfo] | None = None
            last: str | None = None

            def following() -> ObjectInfo | None:
                nonlocal source
                try:
                    with self._errors(prefix):
                        if source is None:
                            source = iter(self._list(name_prefix))
                        for info in source:
                            if last is None or info.key > last:
                                return info
                        return None
                except BaseException:
                    source = None  # a broken listing cannot go on: the next try starts over
                    raise

            while (info := self._retried(prefix, following)) is not None:
                last = info.key
                yield self._public(info)

        return listing()

    def signed_upload(
        self,
        key: str,
        content_type: str,
        size: int,
        metadata: Mapping[str, str] | None = None,
        expires_s: int = 3600,
    ) -> SignedUpload:
        """A URL the client PUTs exactly `size` bytes to, with the returned headers."""
        name, meta = self._name(key), validate_metadata(metadata)
        if not 0 < expires_s <= MAX_SIGNED_EXPIRY_S:
            raise ValueError(f"expires_s must be in 1..{MAX_SIGNED_EXPIRY_S}")
        if size < 0:
            raise ValueError("size must be >= 0")
        expires_at = int(time.time()) + expires_s

        def sign() -> tuple[str, dict[str, str]]:
            with self._errors(key):
                return self._sign_upload(name, content_type, size, meta, expires_at)

        url, headers = self._retried(key, sign)
        return SignedUpload(url=url, headers=headers, expiresAt=iso_utc(expires_at))

    @cached_property
    def upload_origin(self) -> str:
        """The origin (scheme://host[:port]) signed upload URLs point at: browsers PUT there,
        so the pages' Content-Security-Policy lets them connect to it."""
        parts = urlsplit(self._upload_base())
        return f"{parts.scheme}://{parts.netloc}".lower()

    # ---- shared plumbing ----

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)

    def _retried(self, key: str, call: Callable[[], T], budget_s: float | None = None) -> T:
        """`call()`, riding out an outage of up to `budget_s`, STORAGE_RETRY_S by default (see
        `heavylift.outage`)."""
        budget = self.settings.storage_retry_s if budget_s is None else budget_s
        return through_outage(call, transient=(StorageUnavailableError,), budget_s=budget,
                              event="storage_retry", storage=self.url, key=key)

    def _public(self, info: ObjectInfo) -> ObjectInfo:
        return info.model_copy(update={"key": info.key.removeprefix(self._prefix)})

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except _SourceReadError as failed:
            raise failed.error from None
        except Exception as exc:
            mapped = self._map_error(exc, key)
            if mapped is None:
                raise
            raise mapped from exc

    # ---- backend hooks (names include the URL prefix) ----

    @abstractmethod
    def _map_error(self, exc: Exception, key: str) -> StorageError | None:
        """The StorageError a backend exception means, or None to let it through."""

    @abstractmethod
    def _upload(
        self,
        name: str,
        source: ReadableStream,
        size: int | None,
        content_type: str,
        metadata: dict[str, str],
    ) -> ObjectInfo:
        """Store `source`; it is seekable with `size` known when needs_seekable_source."""

    @abstractmethod
    def _open_read(self, name: str) -> AbstractContextManager[ReadableStream]: ...

    @abstractmethod
    def _info(self, name: str) -> ObjectInfo: ...

    @abstractmethod
    def _delete(self, name: str) -> None: ...

    @abstractmethod
    def _list(self, name_prefix: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def _sign_upload(
        self, name: str, content_type: str, size: int, metadata: dict[str, str], expires_at: int
    ) -> tuple[str, dict[str, str]]:
        """(url, headers the client must send) for a PUT valid until `expires_at` (unix)."""

    @abstractmethod
    def _upload_base(self) -> str:
        """A URL on the host `_sign_upload` URLs point at (the same setting it signs with)."""
