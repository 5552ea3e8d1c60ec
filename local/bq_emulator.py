"""The BigQuery emulator (PyPI `bqemulator`: REST + Storage Read/Write gRPC over DuckDB) for the
local stack, tests and benchmarks.

    python local/bq_emulator.py --port 9050 --grpc-port 9060 [--project heavylift-local]

Point heavylift at it with BQ_EMULATOR_HOST=127.0.0.1:<port> and
BQ_STORAGE_EMULATOR_HOST=127.0.0.1:<grpc-port> (the Storage Read API, plain gRPC).

bqemulator refuses to start when DuckDB cannot `INSTALL spatial`, which downloads the extension:
offline that always fails. We patch that load (`DuckDBEngine._load_spatial`) to be best-effort
before starting; only GEOGRAPHY functions are missing then, which heavylift does not use.

bqemulator also serves every read stream from its first row, whatever `ReadRowsRequest.offset`
says; BigQuery starts at that row (how a client resumes a stream: distributed syncs do). We make
ReadRows honour the offset (`_stream_offsets`).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PROJECT = "heavylift-local"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BigQueryEmulator:
    """A running emulator child process."""

    process: subprocess.Popen[bytes]
    port: int
    grpc_port: int
    project: str

    @property
    def rest_host(self) -> str:
        """BQ_EMULATOR_HOST."""
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_host(self) -> str:
        """BQ_STORAGE_EMULATOR_HOST."""
        return f"127.0.0.1:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        return {"BQ_EMULATOR_HOST": self.rest_host, "BQ_STORAGE_EMULATOR_HOST": self.grpc_host,
                "BQ_PROJECT": self.project}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch(
    port: int = 0,
    grpc_port: int = 0,
    project: str = DEFAULT_PROJECT,
    data_dir: Path | None = None,
    log_path: Path | None = None,
    timeout_s: float = 60.0,
) -> BigQueryEmulator:
    """Start the emulator in a child process (ports 0: free ones) and wait until it answers."""
    port = port or _free_port()
    grpc_port = grpc_port or _free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--port", str(port),
               "--grpc-port", str(grpc_port), "--project", project]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    # DuckDB spills to `.tmp/` in the working directory (26 GB while seeding 20M rows): not the
    # caller's (the repo), but the data dir, the log's dir or the system's temp dir.
    cwd = data_dir or (log_path.parent if log_path else Path(tempfile.gettempdir()))
    with open(log_path, "ab") if log_path else nullcontext(subprocess.DEVNULL) as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    emulator = BigQueryEmulator(process, port, grpc_port, project)
    try:
        _wait_ready(emulator, timeout_s)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def _wait_ready(emulator: BigQueryEmulator, timeout_s: float) -> None:
    url = f"http://{emulator.rest_host}/bigquery/v2/projects/{emulator.project}/datasets"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            raise RuntimeError(f"bqemulator exited with {emulator.process.returncode} at start-up")
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass
            with socket.create_connection(("127.0.0.1", emulator.grpc_port), timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"bqemulator did not answer on {url} within {timeout_s:g}s")


def _spatial_best_effort() -> None:
    from bqemulator.domain.errors import InternalError
    from bqemulator.storage import engine

    load_spatial = engine.DuckDBEngine._load_spatial

    def best_effort(self: engine.DuckDBEngine) -> None:
        try:
            load_spatial(self)
        except InternalError as error:
            print(f"bq_emulator: GEOGRAPHY disabled ({str(error)[:160]}...)", file=sys.stderr)

    engine.DuckDBEngine._load_spatial = best_effort  # type: ignore[method-assign]


def _stream_offsets() -> None:
    from collections.abc import Iterator
    from typing import Any

    import pyarrow as pa
    from bqemulator.grpc_api import read_servicer
    from google.cloud.bigquery_storage_v1 import types

    whole_stream = read_servicer.get_stream_data  # type: ignore[attr-defined]
    handle_read_rows = read_servicer.BigQueryReadHandler._handle_read_rows
    request = threading.local()  # each ReadRows runs in one gRPC thread

    def from_offset(session_name: str, stream_name: str) -> pa.Table | None:
        data = whole_stream(session_name, stream_name)
        offset = getattr(request, "offset", 0)
        return data.slice(offset) if data is not None and offset else data

    def read_rows(self: Any, request_bytes: bytes, context: Any) -> Iterator[bytes]:
        request.offset = types.ReadRowsRequest.deserialize(request_bytes).offset
        yield from handle_read_rows(self, request_bytes, context)

    read_servicer.get_stream_data = from_offset  # type: ignore[attr-defined]
    read_servicer.BigQueryReadHandler._handle_read_rows = read_rows  # type: ignore[method-assign]


def serve(port: int, grpc_port: int, project: str, data_dir: Path | None) -> None:
    from bqemulator.config import LogLevel, PersistenceMode, Settings
    from bqemulator.server import run_forever

    _spatial_best_effort()
    _stream_offsets()
    settings = Settings(
        rest_host="127.0.0.1", rest_port=port, grpc_host="127.0.0.1", grpc_port=grpc_port,
        default_project_id=project,
        log_level=LogLevel(os.environ.get("BQEMU_LOG_LEVEL", "warning")),
        persistence_mode=PersistenceMode.PERSISTENT if data_dir else PersistenceMode.EPHEMERAL,
        data_dir=data_dir,
    )
    run_forever(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9050, help="REST port")
    parser.add_argument("--grpc-port", type=int, default=9060, help="Storage API (gRPC) port")
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--data-dir", type=Path, help="keep the data here (default: in memory)")
    args = parser.parse_args(argv)
    serve(args.port, args.grpc_port, args.project, args.data_dir)


if __name__ == "__main__":
    main()
