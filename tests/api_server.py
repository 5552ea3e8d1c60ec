"""Run the functions (`api` and `on_upload_finalized`) under the real functions-framework server,
on a free port, against a chosen storage backend."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from local.launch import FunctionServer, child_env, free_port
from tests.storage_servers import BUCKET

API_KEY = "test-key-123"  # a legacy API_KEYS key: admin of tenant "default"

# Tenant keys (API_KEYS_JSON): two tenants, three roles. The admin is given by its digest.
A_SUBMIT, A_READ = "acme-submit-key-1", "acme-read-key-1"
B_SUBMIT, B_ADMIN = "globex-submit-key-1", "globex-admin-key-1"
A_DATASETS = ["hl_test"]  # tests.dataset_checks.DATASET
KEYS_DOCUMENT = [
    {"key": A_SUBMIT, "tenant": "acme", "role": "submit", "datasets": A_DATASETS},
    {"key": A_READ, "tenant": "acme", "role": "read"},
    {"key": B_SUBMIT, "tenant": "globex", "role": "submit", "datasets": ["other_dataset"]},
    {"sha256": hashlib.sha256(B_ADMIN.encode()).hexdigest(), "tenant": "globex",
     "role": "admin", "datasets": ["*"]},
]


def backend_env(backend: str, request: pytest.FixtureRequest, root: Path) -> dict[str, str]:
    """STORAGE_URL and the emulator variables for `file`, `gs` (fake-gcs) or `s3` (moto)."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    if backend == "gs":
        return {
            "STORAGE_URL": f"gs://{BUCKET}/{prefix}",
            "STORAGE_EMULATOR_HOST": request.getfixturevalue("gcs_bucket"),
            "GCS_SIGNING_CREDENTIALS_FILE": str(request.getfixturevalue("gcs_service_account")),
        }
    if backend == "s3":
        return {
            "STORAGE_URL": f"s3://{BUCKET}/{prefix}",
            "S3_ENDPOINT_URL": request.getfixturevalue("s3_bucket"),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    return {"STORAGE_URL": f"file://{root / 'objects'}"}


@dataclass
class Api:
    """The api function plus the event function, sharing one environment."""

    http: FunctionServer
    events: FunctionServer
    env: dict[str, str]
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["Authorization"] = f"Bearer {API_KEY}"

    def as_key(self, key: str) -> requests.Session:
        """A client of the same servers holding another key."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        return session

    def url(self, path: str) -> str:
        return self.http.url + path

    def stop(self) -> None:
        self.http.stop()
        self.events.stop()

    def post_event(self, bucket: str, name: str, generation: str, size: int,
                   metadata: dict[str, str]) -> requests.Response:
        """Deliver an object-finalize CloudEvent the way Eventarc does (binary mode)."""
        headers = {
            "ce-id": uuid.uuid4().hex, "ce-specversion": "1.0",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-subject": f"objects/{name}", "Content-Type": "application/json",
        }
        body = {"bucket": bucket, "name": name, "generation": generation, "size": str(size),
                "metadata": metadata}
        return requests.post(self.events.url, json=body, headers=headers, timeout=30)


def start_api(env: dict[str, str], workdir: Path) -> Api:
    full = {"API_KEYS": f"other-key,{API_KEY}", "API_KEYS_JSON": json.dumps(KEYS_DOCUMENT),
            "UPLOAD_SIGNING_SECRET": "signing-secret", "LOG_LEVEL": "INFO", **env}
    http = FunctionServer("api", full, workdir / "api.log").start()
    events = FunctionServer("on_upload_finalized", full, workdir / "events.log",
                            signature="cloudevent").start()
    return Api(http, events, full)


def run_cli(
    api: Api | None, *args: str, key: str | None = API_KEY
) -> subprocess.CompletedProcess[str]:
    """The `heavylift` CLI against `api` (None: a closed port), as a user runs it."""
    binary = shutil.which("heavylift", path=str(Path(sys.executable).parent))
    assert binary is not None
    env = {"HEAVYLIFT_URL": api.http.url if api else f"http://127.0.0.1:{free_port()}",
           "COLUMNS": "200"}
    if key:
        env["HEAVYLIFT_API_KEY"] = key
    return subprocess.run([binary, *args], env=child_env(**env), capture_output=True, text=True,
                          timeout=180)


def csp_directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    directives: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in policy.split(";"))):
        name, *sources = part.split()
        directives[name] = sources
    return directives
