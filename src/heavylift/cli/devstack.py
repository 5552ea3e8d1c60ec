"""The local stack without Docker: a private redis-server, the `api` function under
functions-framework, and the worker, all on loopback (from a checkout of the repository).

    heavylift dev up      # run until Ctrl-C   (also: python local/stack.py up)
    heavylift dev demo    # bring it up, push a sample document through the API, print it
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.console import Console

from heavylift.cli.client import Client, progress_of
from heavylift.cli.ui import new_progress

ROOT = Path(__file__).resolve().parents[3]  # src/heavylift/cli/ -> the checkout
STATE = ROOT / ".local"
SAMPLE = ROOT / "local" / "samples" / "large-document.pdf"
console = Console(stderr=True)
app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free (the seed's clients use :3000), else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred or 0))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited at start-up; see {log}:\n{log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{name} did not open port {port} within 30 s; see {log}")


@dataclass
class Stack:
    api_port: int = field(default_factory=lambda: free_port(3000))
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, command: list[str], port: int | None = None) -> None:
        log = STATE / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(command, env={**os.environ, **self.env}, stdout=out,
                                       stderr=subprocess.STDOUT, cwd=ROOT)
        self.processes.append((name, process))
        if port is not None:
            wait_port(port, process, name, log)
        console.print(f"[green]started[/] {name} (pid {process.pid}, log {log})")

    def _redis(self) -> None:
        if os.environ.get("REDIS_URL"):
            self.env["REDIS_URL"] = os.environ["REDIS_URL"]
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed: sudo apt-get install -y "
                             "redis-server (or set REDIS_URL to a Redis you run)")
        port = free_port()
        data = STATE / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self._spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1",
                              "--dir", str(data), "--maxmemory-policy", "noeviction",
                              "--save", "", "--appendonly", "no"], port)
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"

    def _bigquery(self) -> None:
        """The BigQuery emulator (bqemulator), unless BQ_EMULATOR_HOST points at one already."""
        if os.environ.get("BQ_EMULATOR_HOST"):
            return
        rest, grpc = free_port(), free_port()
        self._spawn("bigquery", [sys.executable, str(ROOT / "local" / "bq_emulator.py"),
                                 "--port", str(rest), "--grpc-port", str(grpc)], rest)
        self.env.update({"BQ_EMULATOR_HOST": f"127.0.0.1:{rest}",
                         "BQ_STORAGE_EMULATOR_HOST": f"127.0.0.1:{grpc}"})

    def seed(self, rows: int) -> None:
        """Sample forecast/actuals rows (heavylift datasets seed)."""
        subprocess.run([sys.executable, "-m", "heavylift.datasets.seed", "--rows", str(rows)],
                       env={**os.environ, **self.env}, check=True, cwd=ROOT)

    def up(self, bigquery: bool = True) -> Stack:
        self._redis()
        if bigquery:
            self._bigquery()
        self.env.update({
            "STORAGE_URL": os.environ.get("STORAGE_URL", f"file://{STATE / 'storage'}"),
            "AUTH_DISABLED": os.environ.get("AUTH_DISABLED", "true"),
            "UPLOAD_SIGNING_SECRET": secrets.token_hex(16),
            "PUBLIC_BASE_URL": self.api_url,
        })
        bin_dir = Path(sys.executable).parent
        self._spawn("api", [str(bin_dir / "functions-framework"), "--source",
                            str(ROOT / "functions" / "main.py"), "--target", "api",
                            "--host", "127.0.0.1", "--port", str(self.api_port)], self.api_port)
        worker_port = free_port()
        self.env["PORT"] = str(worker_port)
        self._spawn("worker", [sys.executable, "-m", "worker_service"], worker_port)
        del self.env["PORT"]
        return self

    def down(self) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
            console.print(f"[yellow]stopped[/] {name}")
        self.processes.clear()


@contextmanager
def running(bigquery: bool = True) -> Iterator[Stack]:
    stack = Stack()
    try:
        yield stack.up(bigquery)
    finally:
        stack.down()


NoBigQuery = Annotated[bool, typer.Option("--no-bigquery", help="Skip the BigQuery emulator.")]


@app.command()
def up(no_bigquery: NoBigQuery = False) -> None:
    """Start Redis (private, unless REDIS_URL is set), the BigQuery emulator, the api function
    and the worker."""
    with running(not no_bigquery) as stack:
        console.print(f"\napi: {stack.api_url}  (auth off: local only)\n"
                      f"try: curl -X POST {stack.api_url}/api/documents/async-upload "
                      f"-F files=@{SAMPLE.relative_to(ROOT)} -F useAI=true\n"
                      "Ctrl-C stops everything.")
        with suppress(KeyboardInterrupt):
            signal.pause()


@app.command()
def demo(
    file: Annotated[Path, typer.Option(help="Document to push through the API.")] = SAMPLE,
    rows: Annotated[int, typer.Option(help="Sample rows to seed for the dataset sync.")] = 200_000,
    no_bigquery: NoBigQuery = False,
) -> None:
    """Bring the stack up, upload a document and run a dataset sync through the real HTTP API,
    print the results."""
    with running(not no_bigquery) as stack:
        with file.open("rb") as handle:
            answer = requests.post(
                f"{stack.api_url}/api/documents/async-upload",
                files=[("files", (file.name, handle))],
                data={"useAI": "true", "generateSummary": "true", "generateEmbeddings": "true"},
                timeout=60,
            )
        console.print(f"POST /api/documents/async-upload -> {answer.status_code}")
        print(json.dumps(answer.json(), indent=2))
        if answer.status_code != 202:
            raise SystemExit(1)
        view = follow(stack, answer.json()["jobs"][0]["jobId"], "documents", timeout=300)
        manifest = requests.get(
            f"{stack.api_url}/api/documents/{view['result']['documentId']}", timeout=10
        ).json()
        print(json.dumps(manifest, indent=2)[:4000])
        if not no_bigquery:
            sync_dataset(stack, rows)


def sync_dataset(stack: Stack, rows: int) -> None:
    """Seed the emulator, then sync two years of actuals: large enough to be a queued job."""
    stack.seed(rows)
    body: dict[str, Any] = {
        "datasetId": "heavylift", "environment": "production", "volumeType": "inbound",
        "jobType": "actuals", "startDate": "2024-01-01", "endDate": "2025-12-31",
        "chunkSize": 5000,
    }
    answer = requests.post(f"{stack.api_url}/api/datasets/sync", json=body, timeout=300)
    console.print(f"POST /api/datasets/sync -> {answer.status_code}")
    print(json.dumps(answer.json(), indent=2))
    if answer.status_code not in (200, 202):
        raise SystemExit(1)
    if answer.status_code == 202:
        follow(stack, answer.json()["jobId"], "datasets", timeout=600)


def follow(stack: Stack, job_id: str, queue: str, timeout: float) -> dict[str, Any]:
    """A progress bar until the job ends; print its view; stop the demo if it failed."""
    with new_progress() as bar:
        task = bar.add_task(f"{queue} job {job_id}", total=100, state="waiting")
        view = Client(stack.api_url, None).wait(job_id, queue, lambda v: bar.update(
            task, completed=progress_of(v), state=v["state"]), timeout=timeout)
    print(json.dumps(view, indent=2))
    if view["state"] != "completed":
        raise SystemExit(f"{queue} job {job_id} failed: {view.get('failedReason')}")
    return view


if __name__ == "__main__":
    app()
