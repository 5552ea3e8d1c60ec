"""The local stack without Docker: a private redis-server, the BigQuery emulator, the `api`
function under functions-framework and the worker(s), all on loopback, from a checkout.

    python local/stack.py up [--workers N]   # run until Ctrl-C or SIGTERM
    python local/stack.py demo               # bring it up, push a sample document and a dataset
                                             # sync through the HTTP API, print the results

Every child stops with the launcher: on Ctrl-C, on SIGTERM, and (PR_SET_PDEATHSIG) when the
launcher itself dies.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

if __package__ in (None, ""):  # `python local/stack.py`: the checkout's root is importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
import typer
from rich.console import Console

from heavylift.cli.client import Client, progress_of
from heavylift.cli.ui import new_progress
from local import bq_emulator
from local.launch import ROOT, FunctionServer, RedisServer, WorkerProcess, free_port

STATE = ROOT / ".local"
SAMPLE = ROOT / "local" / "samples" / "large-document.pdf"
console = Console(stderr=True)
app = typer.Typer(add_completion=False, help=(__doc__ or "").split("\n\n")[0])


@dataclass
class Stack:
    workers: int = 1
    bigquery: bool = True
    api_port: int = field(default_factory=lambda: free_port(3000))
    env: dict[str, str] = field(default_factory=dict)
    # (name, stop) in start order; stopped in reverse.
    _running: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _started(self, name: str, pid: int, stop: Callable[[], None], log: Path) -> None:
        self._running.append((name, stop))
        console.print(f"[green]started[/] {name} (pid {pid}, log {log})")

    def _redis(self) -> None:
        if os.environ.get("REDIS_URL"):
            self.env["REDIS_URL"] = os.environ["REDIS_URL"]
            return
        redis = RedisServer(STATE / "redis", appendonly=False).start()
        assert redis.process is not None
        self._started("redis", redis.process.pid, redis.stop, STATE / "redis" / "redis.log")
        self.env["REDIS_URL"] = redis.url

    def _bigquery(self) -> None:
        """The BigQuery emulator, unless BQ_EMULATOR_HOST points at one already."""
        if os.environ.get("BQ_EMULATOR_HOST"):
            return
        log = STATE / "logs" / "bigquery.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        emulator = bq_emulator.launch(log_path=log)
        self._started("bigquery", emulator.process.pid, emulator.stop, log)
        self.env.update(emulator.env())

    def up(self) -> Stack:
        self._redis()
        if self.bigquery:
            self._bigquery()
        self.env.update({
            "STORAGE_URL": os.environ.get("STORAGE_URL", f"file://{STATE / 'storage'}"),
            "AUTH_DISABLED": os.environ.get("AUTH_DISABLED", "true"),
            "UPLOAD_SIGNING_SECRET": secrets.token_hex(16),
        })
        api_log = STATE / "logs" / "api.log"
        api = FunctionServer("api", {**self.env}, api_log, port=self.api_port).start()
        assert api.process is not None
        self._started("api", api.process.pid, api.stop, api_log)
        for index in range(1, self.workers + 1):
            name = "worker" if self.workers == 1 else f"worker-{index}"
            log = STATE / "logs" / f"{name}.log"
            worker = WorkerProcess(self.env["REDIS_URL"], log=log,
                                   **{k: v for k, v in self.env.items() if k != "REDIS_URL"})
            worker.wait_ready()
            self._started(name, worker.process.pid, worker.stop, log)
        return self

    def load_sample_rows(self, rows: int) -> None:
        """Sample forecast/actuals rows in the emulator (local/sample_data.py)."""
        subprocess.run([sys.executable, "-m", "local.sample_data", "--rows", str(rows)],
                       env={**os.environ, **self.env}, check=True, cwd=ROOT)

    def down(self) -> None:
        while self._running:
            name, stop = self._running.pop()
            stop()
            console.print(f"[yellow]stopped[/] {name}")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds into `running`'s finally, like Ctrl-C


@contextmanager
def running(workers: int = 1, bigquery: bool = True) -> Iterator[Stack]:
    stack = Stack(workers=workers, bigquery=bigquery)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        yield stack.up()
    finally:
        stack.down()
        signal.signal(signal.SIGTERM, previous)


NoBigQuery = Annotated[bool, typer.Option("--no-bigquery", help="Skip the BigQuery emulator.")]
Workers = Annotated[int, typer.Option("--workers", min=1, max=16, help="Worker processes.")]


@app.command()
def up(no_bigquery: NoBigQuery = False, workers: Workers = 1) -> None:
    """Start Redis (private, unless REDIS_URL is set), the BigQuery emulator, the api function
    and the worker(s); Ctrl-C or SIGTERM stops them all."""
    with suppress(KeyboardInterrupt), running(workers, not no_bigquery) as stack:
        console.print(f"\napi: {stack.api_url}  (auth off: local only)\n"
                      f"try: curl -X POST {stack.api_url}/api/documents/async-upload "
                      f"-F files=@{SAMPLE.relative_to(ROOT)} -F useAI=true\n"
                      "Ctrl-C stops everything.")
        signal.pause()


@app.command()
def demo(
    file: Annotated[Path, typer.Option(help="Document to push through the API.")] = SAMPLE,
    rows: Annotated[int, typer.Option(help="Sample rows to load for the dataset sync.")] = 200_000,
    no_bigquery: NoBigQuery = False,
) -> None:
    """Bring the stack up, upload a document and run a dataset sync through the real HTTP API,
    print the results."""
    with running(1, not no_bigquery) as stack:
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
    """Load sample rows, then sync two years of actuals: large enough to be a queued job."""
    stack.load_sample_rows(rows)
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
