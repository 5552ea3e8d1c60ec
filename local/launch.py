"""Start heavylift's real servers on loopback: a private redis-server, the functions under
functions-framework, workers. One launcher for the local stack (`local/stack.py`), the tests and
the benchmarks (the BigQuery emulator has its own module, `local/bq_emulator.py`).

Every child is started with PR_SET_PDEATHSIG: it gets SIGTERM when its launcher dies, however
that happens (SIGKILL included), so nothing outlives it. The kernel ties the child to the
*thread* that started it: start children from a thread that lives as long as they should (the
main thread, normally), never from a short-lived helper thread. util-linux's `setpriv` sets it
in the child, so starting one never forks this (threaded) process with a `preexec_fn`: such a
fork, beside the BigQuery client's gRPC threads, hung in gRPC's fork handler for good.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_SOURCE = ROOT / "functions" / "main.py"
_PR_SET_PDEATHSIG = 1


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free (the seed's clients use :3000), else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred or 0))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process: ours minus heavylift settings, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HEAVYLIFT_"))}
    env.update(overrides)
    return env


def _load_prctl() -> Callable[[int, int], int] | None:
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux/glibc: children just are not tied
        return None
    return prctl


# Looked up once here: between fork and exec (possibly beside other threads) the child only
# makes this one call.
_PRCTL = _load_prctl()
_SETPRIV = shutil.which("setpriv")


def _die_with_launcher() -> None:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(command: list[str], env: dict[str, str], out: IO[Any] | int,
          cwd: Path = ROOT) -> subprocess.Popen[Any]:
    """A child tied to this process's life, its output to `out`."""
    if _SETPRIV is not None:
        command, tie = [_SETPRIV, "--pdeathsig", "TERM", "--", *command], None
    else:  # no util-linux (not Linux, or a bare image): the prctl between fork and exec
        tie = _die_with_launcher
    return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                            preexec_fn=tie, text=out == subprocess.PIPE)


def stop(process: subprocess.Popen[Any] | None, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _started(process: subprocess.Popen[Any], port: int, name: str, log: Path,
             timeout: float = 30.0) -> None:
    """Wait until `port` accepts connections; a clear error if the child dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start-up; see {log}:\n{log.read_text()[-2000:]}")
        if port_open(port):
            return
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{name} did not open port {port} within {timeout:g} s; see {log}")


@dataclass
class RedisServer:
    """A private redis-server; `stop()`/`start()` keep the port and, with AOF on, the data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = True
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server "
                               "(or set REDIS_URL to a Redis you run)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.process = spawn(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.workdir), "--appendonly", "yes" if self.appendonly else "no",
                 "--save", "", "--maxmemory-policy", "noeviction", *self.extra_args],
                os.environ.copy(), out)
        _started(self.process, self.port, "redis-server", log)
        return self

    def stop(self) -> None:
        stop(self.process, 10)
        self.process = None

    def flush(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "FLUSHALL"], check=True,
                       stdout=subprocess.DEVNULL)


@dataclass
class RedisCluster:
    """A private 3-master Redis Cluster (no replicas) on loopback, as Memorystore for Redis
    Cluster looks to a client: any node is a discovery endpoint. Clients need REDIS_CLUSTER=true
    and a hash-tagged QUEUE_PREFIX (`env`)."""

    workdir: Path
    size: int = 3
    prefix: str = "{heavylift}"
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def env(self) -> dict[str, str]:
        """The settings a client of this cluster needs (REDIS_URL included)."""
        return {"REDIS_URL": self.url, "REDIS_CLUSTER": "true", "QUEUE_PREFIX": self.prefix}

    def start(self) -> RedisCluster:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed: apt-get install -y redis-tools")
        # The cluster bus port defaults to port + 10000, which may not exist: pick a free one.
        self.nodes = [
            RedisServer(self.workdir / f"node{i}", appendonly=False, extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(free_port()), "--cluster-node-timeout", "5000"]).start()
            for i in range(self.size)
        ]
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, timeout=60)
        wait_for(self._ready, timeout=30, interval=0.1)
        return self

    def _ready(self) -> bool:
        """Every node says cluster_state:ok and knows all the others (slots agreed)."""
        for node in self.nodes:
            info = self._cli(node, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{self.size}" not in info:
                return False
        return True

    @staticmethod
    def _cli(node: RedisServer, *command: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(node.port), *command], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def flush(self) -> None:
        for node in self.nodes:
            self._cli(node, "FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class FunctionServer:
    """One function of functions/main.py under the real functions-framework server."""

    target: str
    env: dict[str, str]
    log: Path
    signature: str = "http"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[Any] | None = None
    # Another checkout with its own .venv (bench baselines): its functions, its packages.
    root: Path = ROOT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FunctionServer:
        bin_dir = Path(sys.executable).parent if self.root == ROOT else self.root / ".venv/bin"
        binary = shutil.which("functions-framework", path=str(bin_dir))
        if binary is None:
            raise RuntimeError("functions-framework is not installed: pip install -e '.[local]'")
        env = child_env(**{"PUBLIC_BASE_URL": self.url, **self.env})
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = spawn(
                [binary, "--source", str(self.root / FUNCTIONS_SOURCE.relative_to(ROOT)),
                 "--target", self.target, "--host", "127.0.0.1", "--port", str(self.port),
                 "--signature-type", self.signature], env, out, cwd=self.root)
        _started(self.process, self.port, self.target, self.log)
        return self

    def stop(self) -> None:
        stop(self.process, 10)
        self.process = None


class WorkerProcess:
    """`python -m worker_service` as a child; its JSON log lines are kept (and copied to `log`,
    if given) so callers can wait for lifecycle events."""

    def __init__(self, redis_url: str, log: Path | None = None, **env: str) -> None:
        self.port = free_port()
        self.log = log
        settings_env = {"REDIS_URL": redis_url, "PORT": str(self.port), "LOG_LEVEL": "INFO"}
        # MODULE: another entry point that serves a different registry (tests/*_worker.py).
        self.process = spawn([sys.executable, "-m", env.pop("MODULE", "worker_service"),
                              *env.pop("ARGS", "").split()],
                             child_env(**{**settings_env, **env}), subprocess.PIPE)
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with open(self.log, "a") if self.log else contextlib.nullcontext() as copy:
            for line in self.process.stdout:
                self.raw.append(line)
                if copy is not None:
                    copy.write(line)
                    copy.flush()
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                # When it happened (the worker writes its logs in batches, not as they happen).
                record["_t"] = datetime.fromisoformat(record["time"]).timestamp()
                self.events.append(record)

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e for e in list(self.events)
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]

    def wait_event(self, event: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        try:
            wait_for(lambda: bool(self.find(event, **fields)), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {event} {fields} within {timeout}s; log:\n{''.join(self.raw[-40:])}"
            ) from None
        return self.find(event, **fields)[0]

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        self.wait_event("ready", timeout)
        return self

    def metric(self, name: str, **labels: str) -> float:
        """One sample from the worker's /metrics (e.g. heavylift_jobs_completed_total)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        raise AssertionError(f"{name}{labels} not in /metrics")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        stop(self.process)
