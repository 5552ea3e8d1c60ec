"""Run the real worker (`python -m worker_service`) as a child process and read its JSON logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import child_env, free_port, wait_for


class WorkerProcess:
    def __init__(self, redis_url: str, **env: str) -> None:
        self.port = free_port()
        settings_env = {"REDIS_URL": redis_url, "PORT": str(self.port), "LOG_LEVEL": "INFO"}
        self.process = subprocess.Popen(
            # MODULE: another entry point that serves a different registry (tests/*_worker.py).
            [sys.executable, "-m", env.pop("MODULE", "worker_service"),
             *env.pop("ARGS", "").split()],
            env=child_env(**settings_env, **env),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            # When it happened (the worker writes its logs in batches, so not when it arrived).
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

    def wait_ready(self) -> WorkerProcess:
        self.wait_event("ready")
        return self

    def metric(self, name: str, **labels: str) -> float:
        """One sample from the worker's /metrics (e.g. heavylift_jobs_completed_total)."""
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
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
