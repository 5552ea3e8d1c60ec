"""heavylift.storage against real backends: a temp dir, fake-gcs-server and moto server."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from heavylift.settings import Settings
from heavylift.storage import (
    InvalidKeyError,
    InvalidMetadataError,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
    StorageUnavailableError,
    UploadSignatureError,
    metadata_from_headers,
    open_store,
    verify_local_upload,
)
from local.launch import free_port
from tests.storage_servers import BUCKET

MB = 1024 * 1024
META = {"document-id": "doc-1", "useai": "true"}


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"upload_signing_secret": "test-secret", "storage_timeout_s": 2}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def gs_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    emulator = request.getfixturevalue("gcs_bucket")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    signer = request.getfixturevalue("gcs_service_account")
    settings = make_settings(gcs_signing_credentials_file=signer)
    return open_store(f"gs://{BUCKET}/t-{uuid.uuid4().hex[:8]}", settings)


def s3_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    endpoint = request.getfixturevalue("s3_bucket")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = make_settings(s3_endpoint_url=endpoint)
    return open_store(f"s3://{BUCKET}/t-{uuid.uuid4().hex[:8]}", settings)


@pytest.fixture(params=["file", "gs", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ObjectStore:
    if request.param == "gs":
        return gs_store(request, monkeypatch)
    if request.param == "s3":
        return s3_store(request, monkeypatch)
    return open_store(f"file://{tmp_path / 'objects'}", make_settings())


@pytest.fixture(params=["gs", "s3"])
def cloud_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    return gs_store(request, monkeypatch) if request.param == "gs" else s3_store(
        request, monkeypatch
    )


def read_all(store: ObjectStore, key: str) -> bytes:
    with store.open_read(key) as stream:
        return stream.read()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(MB), b""):
            digest.update(block)
    return digest.hexdigest()


class TrickleStream(io.RawIOBase):
    """A non-seekable stream (like a request body) that may break after `fail_after` bytes."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._fail_after is not None and self._data.tell() >= self._fail_after:
            raise ConnectionResetError("client went away")
        chunk = self._data.read(min(len(buffer), 64 * 1024))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# ---- behaviour common to every backend ----


def test_bytes_round_trip_with_content_type_and_metadata(store: ObjectStore) -> None:
    put = store.put_bytes("results/doc-1/manifest.json", b'{"pages": 3}', metadata=META)

    assert put.key == "results/doc-1/manifest.json"
    assert put.size == 12
    info = store.info("results/doc-1/manifest.json")
    assert info.content_type == "application/json"
    assert info.metadata == META
    assert info.etag_or_generation == put.etag_or_generation
    assert read_all(store, "results/doc-1/manifest.json") == b'{"pages": 3}'


def test_multi_mb_file_streams_both_ways(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "big.pdf"
    source.write_bytes(os.urandom(12 * MB + 123))  # above GCS's 8 MiB multipart limit

    put = store.put_file("uploads/doc-2/big.pdf", source, "application/pdf", META)
    target = tmp_path / "out" / "big.pdf"
    store.download_to("uploads/doc-2/big.pdf", target)

    assert put.size == source.stat().st_size
    assert sha256_file(target) == sha256_file(source)
    digest = hashlib.sha256()
    with store.open_read("uploads/doc-2/big.pdf") as stream:
        for block in iter(lambda: stream.read(MB), b""):
            digest.update(block)
    assert digest.hexdigest() == sha256_file(source)
    info = store.info("uploads/doc-2/big.pdf")
    assert (info.content_type, info.metadata) == ("application/pdf", META)


def test_put_stream_accepts_any_binary_stream(store: ObjectStore) -> None:
    data = os.urandom(3 * MB)

    put = store.put_stream("uploads/doc-3/body.bin", TrickleStream(data), "text/plain", META)

    assert put.size == len(data)
    assert read_all(store, "uploads/doc-3/body.bin") == data
    assert store.info("uploads/doc-3/body.bin").metadata == META
    seekable = io.BytesIO(data)
    seekable.read(10)  # a body read in part already: the rest is stored
    assert store.put_stream("uploads/doc-3/rest.bin", seekable).size == len(data) - 10
    assert read_all(store, "uploads/doc-3/rest.bin") == data[10:]


def test_overwrite_replaces_bytes_and_version(store: ObjectStore) -> None:
    first = store.put_bytes("a.txt", b"one", "text/plain")
    time.sleep(0.01)
    second = store.put_bytes("a.txt", b"two!", "text/plain")

    assert read_all(store, "a.txt") == b"two!"
    assert second.size == 4
    assert second.etag_or_generation != first.etag_or_generation


def test_list_by_prefix(store: ObjectStore) -> None:
    for key in ["uploads/a/1.pdf", "uploads/a/2.pdf", "uploads/ab.pdf", "results/a.json"]:
        store.put_bytes(key, b"x" * 5)

    assert [i.key for i in store.list("uploads/a/")] == ["uploads/a/1.pdf", "uploads/a/2.pdf"]
    assert [i.key for i in store.list("uploads/a")] == [
        "uploads/a/1.pdf", "uploads/a/2.pdf", "uploads/ab.pdf",
    ]
    everything = list(store.list())
    assert len(everything) == 4
    assert {i.size for i in everything} == {5}
    assert list(store.list("nothing/")) == []


def test_exists_delete_and_missing_objects(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("uploads/doc/x.txt", b"x")
    assert store.exists("uploads/doc/x.txt")

    store.delete("uploads/doc/x.txt")
    store.delete("uploads/doc/x.txt")  # idempotent

    assert not store.exists("uploads/doc/x.txt")
    with pytest.raises(ObjectNotFoundError):
        store.info("uploads/doc/x.txt")
    with pytest.raises(ObjectNotFoundError), store.open_read("uploads/doc/x.txt"):
        pass
    with pytest.raises(ObjectNotFoundError):
        store.download_to("uploads/doc/x.txt", tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()
    assert not store.exists("uploads/doc")  # a "directory" is not an object


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "uploads/../../etc/passwd", "/etc/passwd", "a\\b", "a\x00b", "a\nb",
     "", "a//b", "./a", "a/", "x" * 1025],
)
def test_unsafe_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.info(key)
    with pytest.raises(InvalidKeyError):
        store.signed_upload(key, "application/pdf", 1)


def test_bad_metadata_is_rejected(store: ObjectStore) -> None:
    with pytest.raises(InvalidMetadataError):
        store.put_bytes("a", b"x", metadata={"useAI": "true"})
    with pytest.raises(InvalidMetadataError):
        store.put_bytes("a", b"x", metadata={"note": "caf\u00e9"})
    assert not store.exists("a")


# ---- signed uploads ----


def test_signed_upload_url_accepts_a_put(cloud_store: ObjectStore) -> None:
    payload = os.urandom(256 * 1024)
    signed = cloud_store.signed_upload(
        "uploads/doc-9/file.pdf", "application/pdf", len(payload), META, expires_s=600
    )

    response = requests.put(signed.url, data=payload, headers=signed.headers, timeout=10)

    assert response.status_code == 200, response.text
    assert signed.method == "PUT"
    assert "host" not in {name.lower() for name in signed.headers}
    assert signed.expiresAt.endswith("Z")
    info = cloud_store.info("uploads/doc-9/file.pdf")
    assert (info.size, info.content_type, info.metadata) == (len(payload), "application/pdf", META)
    assert read_all(cloud_store, "uploads/doc-9/file.pdf") == payload


def test_local_signed_upload_is_verified_by_the_api(tmp_path: Path) -> None:
    settings = make_settings(public_base_url="http://localhost:3000")
    store = open_store(f"file://{tmp_path}", settings)
    signed = store.signed_upload("uploads/d/f.pdf", "application/pdf", 10, META, expires_s=60)
    url = urlsplit(signed.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    meta = metadata_from_headers({k.title(): v for k, v in signed.headers.items()})
    request = {"key": query["key"], "expires": query["expires"], "sig": query["sig"],
               "content_type": signed.headers["Content-Type"], "size": 10, "metadata": meta}

    assert (url.scheme, url.netloc, url.path) == ("http", "localhost:3000", "/api/storage/upload")
    verify_local_upload(settings, **request)
    store.put_stream(query["key"], io.BytesIO(b"0123456789"), "application/pdf", meta)
    assert store.info("uploads/d/f.pdf").metadata == META

    for change in [{"sig": "0" * 64}, {"size": 11}, {"key": "uploads/d/other.pdf"},
                   {"content_type": "text/plain"}, {"metadata": {**META, "useai": "false"}}]:
        with pytest.raises(UploadSignatureError, match="does not match"):
            verify_local_upload(settings, **{**request, **change})
    other_secret = make_settings(upload_signing_secret="another")
    with pytest.raises(UploadSignatureError):
        verify_local_upload(other_secret, **request)


def test_local_signed_upload_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings()
    signed = open_store(f"file://{tmp_path}", settings).signed_upload("k", "text/plain", 1)
    query = {k: v[0] for k, v in parse_qs(urlsplit(signed.url).query).items()}
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)

    with pytest.raises(UploadSignatureError, match="expired"):
        verify_local_upload(settings, "k", query["expires"], query["sig"], "text/plain", 1, {})


def test_local_signing_needs_a_secret(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}", make_settings(upload_signing_secret=None))
    with pytest.raises(StorageError, match="UPLOAD_SIGNING_SECRET"):
        store.signed_upload("k", "text/plain", 1)


def test_gcs_signing_needs_signing_credentials(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_bucket)
    store = open_store(f"gs://{BUCKET}", make_settings())
    with pytest.raises(StorageError, match="GCS_SIGNING_CREDENTIALS_FILE"):
        store.signed_upload("k", "text/plain", 1)


# ---- faults ----


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_storage_down_is_reported_quickly(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", closed)
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]:
        monkeypatch.setenv(name, "testing")
    # Retried for STORAGE_RETRY_S (1 s here), then reported: within the budget plus one try.
    settings = make_settings(s3_endpoint_url=closed, storage_retry_s=1)
    store = open_store(f"{scheme}://{BUCKET}", settings)

    for call in [lambda: store.info("k"), lambda: store.put_bytes("k", b"{}"),
                 lambda: list(store.list("")), lambda: store.exists("k")]:
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            call()
        assert time.monotonic() - started < 7


def test_broken_upload_leaves_no_partial_file(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}", make_settings())
    store.put_bytes("uploads/doc/f.bin", b"old")

    with pytest.raises(ConnectionResetError):
        store.put_stream("uploads/doc/f.bin", TrickleStream(os.urandom(MB), fail_after=300_000))

    assert read_all(store, "uploads/doc/f.bin") == b"old"
    assert [i.key for i in store.list()] == ["uploads/doc/f.bin"]
    assert not [p for p in (tmp_path / "uploads/doc").iterdir() if "tmp" in p.name]


def test_file_store_stays_inside_its_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(outside)
    store = open_store(f"file://{root}", make_settings())

    with pytest.raises(InvalidKeyError, match="outside"):
        store.put_bytes("escape/x", b"x")
    with pytest.raises(InvalidKeyError, match="reserved"):
        store.put_bytes("uploads/.hl-meta-x.json", b"x")
    assert list(outside.iterdir()) == []


def test_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("file://./data/objects", make_settings())
    relative.put_bytes("a.json", b"{}")
    assert (tmp_path / "data/objects/a.json").read_bytes() == b"{}"

    for bad in ["ftp://host/x", "gs://", "s3:///x", "gs://bucket/../x", "file://"]:
        with pytest.raises(StorageError):
            open_store(bad, make_settings())
