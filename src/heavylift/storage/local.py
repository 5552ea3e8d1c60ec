"""file:// backend: each object is a plain file under a root directory.

URL: `file:///abs/path` or `file://./relative` (resolved against the working directory when the
store is opened). Content type and metadata live in a sidecar `.hl-meta-<name>.json` beside the
object; key segments starting with `.hl-` are reserved (sidecars, temp files) and refused. Writes
go to a temp file in the same directory and are renamed into place, sidecar first, so a reader
sees the old object or the new one, never half of one, and never an object without its metadata.

There is no bucket to sign for, so a signed upload points at the api itself:
`{PUBLIC_BASE_URL}/api/storage/upload?key=..&expires=..&sig=..`, where `sig` is an HMAC-SHA256
(key UPLOAD_SIGNING_SECRET) over key, expiry, content type, size and metadata. The route reads the
metadata back with `metadata_from_headers`, checks the request with `verify_local_upload` and
stores the body with `put_stream`, once per URL (a Redis claim, like the buckets' preconditions).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlencode

from heavylift.settings import Settings
from heavylift.storage.base import (
    COPY_CHUNK,
    InvalidKeyError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ReadableStream,
    StorageError,
    UploadSignatureError,
    atomic_file,
    iso_utc,
    validate_key,
    validate_metadata,
)

RESERVED_PREFIX = ".hl-"
META_HEADER_PREFIX = "x-heavylift-meta-"
UPLOAD_ROUTE = "/api/storage/upload"


class LocalStore(ObjectStore):
    needs_seekable_source = False

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        location = unquote(url.removeprefix("file://"))
        if not location:
            raise StorageError(f"{url}: no directory given (file:///abs/path or file://./rel)")
        self.root = Path.cwd() / location
        self._real_root = self.root.resolve()

    def _map_error(self, exc: Exception, key: str) -> StorageError | None:
        if isinstance(exc, FileNotFoundError):
            return ObjectNotFoundError(f"no object {key!r} in {self.url}")
        if isinstance(exc, OSError):
            return StorageError(f"{self.url}: {key!r}: {exc.strerror or exc}")
        return None

    def _path(self, name: str) -> Path:
        if any(segment.startswith(RESERVED_PREFIX) for segment in name.split("/")):
            raise InvalidKeyError(f"invalid object key {name!r}: '{RESERVED_PREFIX}*' is reserved")
        path = self.root / name
        if not path.resolve().is_relative_to(self._real_root):
            raise InvalidKeyError(f"invalid object key {name!r}: resolves outside {self.url}")
        return path

    def _upload(
        self,
        name: str,
        source: ReadableStream,
        size: int | None,
        content_type: str,
        metadata: dict[str, str],
    ) -> ObjectInfo:
        path = self._path(name)
        sidecar = json.dumps({"content_type": content_type, "metadata": metadata}).encode()
        with atomic_file(path) as out:
            shutil.copyfileobj(source, out, COPY_CHUNK)
            with atomic_file(_sidecar(path)) as side:
                side.write(sidecar)
        return self._info(name)

    def _open_read(self, name: str) -> BinaryIO:
        path = self._path(name)
        if not path.is_file():
            raise ObjectNotFoundError(f"no object {name!r} in {self.url}")
        return path.open("rb")

    def _info(self, name: str) -> ObjectInfo:
        path = self._path(name)
        if not path.is_file():
            raise ObjectNotFoundError(f"no object {name!r} in {self.url}")
        stat = path.stat()
        try:
            side = json.loads(_sidecar(path).read_bytes())
        except FileNotFoundError:  # a file dropped into the directory by hand
            side = {"content_type": None, "metadata": {}}
        return ObjectInfo(
            key=name,
            size=stat.st_size,
            content_type=side["content_type"],
            metadata=side["metadata"],
            etag_or_generation=f"{stat.st_mtime_ns:x}-{stat.st_size:x}",
            updated=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    def _delete(self, name: str) -> None:
        path = self._path(name)
        if path.is_file():
            path.unlink(missing_ok=True)
            _sidecar(path).unlink(missing_ok=True)

    def _list(self, name_prefix: str) -> Iterator[ObjectInfo]:
        names = []
        for directory, subdirs, files in os.walk(self.root / name_prefix.rpartition("/")[0]):
            subdirs[:] = [d for d in subdirs if not d.startswith(RESERVED_PREFIX)]
            relative = Path(directory).relative_to(self.root).as_posix()
            for file in files:
                name = file if relative == "." else f"{relative}/{file}"
                if not file.startswith(RESERVED_PREFIX) and name.startswith(name_prefix):
                    names.append(name)
        for name in sorted(names):
            try:
                yield self._info(name)
            except ObjectNotFoundError:  # deleted since the walk
                continue

    def _sign_upload(
        self, name: str, content_type: str, size: int, metadata: dict[str, str], expires_at: int
    ) -> tuple[str, dict[str, str]]:
        self._path(name)
        sig = _signature(self.settings, name, expires_at, content_type, size, metadata)
        query = urlencode({"key": name, "expires": expires_at, "sig": sig})
        url = f"{self.settings.public_base_url.rstrip('/')}{UPLOAD_ROUTE}?{query}"
        headers = {"Content-Type": content_type}
        headers.update({META_HEADER_PREFIX + k: v for k, v in metadata.items()})
        return url, headers

    def _upload_base(self) -> str:
        return self.settings.public_base_url


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{RESERVED_PREFIX}meta-{path.name}.json")


def _signature(
    settings: Settings,
    key: str,
    expires_at: int,
    content_type: str,
    size: int,
    metadata: Mapping[str, str],
) -> str:
    if settings.upload_signing_secret is None:
        raise StorageError("UPLOAD_SIGNING_SECRET must be set to sign file:// upload URLs")
    # JSON-encoded so that no field's content can pass for another field.
    message = json.dumps([key, expires_at, content_type, size, sorted(metadata.items())])
    secret = settings.upload_signing_secret.get_secret_value().encode()
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def metadata_from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The object metadata a client sent as `x-heavylift-meta-<name>` headers."""
    return {
        name.lower().removeprefix(META_HEADER_PREFIX): value
        for name, value in headers.items()
        if name.lower().startswith(META_HEADER_PREFIX)
    }


def verify_local_upload(
    settings: Settings,
    key: str,
    expires: int | str,
    sig: str,
    content_type: str,
    size: int,
    metadata: Mapping[str, str],
) -> int:
    """Accept a PUT to the file:// upload route (returning its expiry, unix), or raise
    UploadSignatureError saying why not.

    `content_type`, `size` (Content-Length) and `metadata` are what the request carries: any
    difference from what was signed fails the check.
    """
    validate_key(key)
    try:
        expires_at = int(expires)
    except ValueError:
        raise UploadSignatureError(f"upload URL has a bad expiry {expires!r}") from None
    metadata = validate_metadata(metadata)
    expected = _signature(settings, key, expires_at, content_type, size, metadata)
    if not hmac.compare_digest(expected, sig):
        raise UploadSignatureError(
            "upload signature does not match this key, content type, size and metadata"
        )
    if time.time() > expires_at:
        raise UploadSignatureError(f"upload URL expired at {iso_utc(expires_at)}")
    return expires_at
