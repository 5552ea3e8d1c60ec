"""Upload benchmark: a 50 MB file through the `api` function (multipart, over a socket) beside a
raw copy of the same file into the same backend, one run.

    python -m bench.upload [--mb 50] [--backends file,gs]

Prints time, ratio and the function process's peak RSS (the gunicorn worker that handles the
request, sampled every 5 ms, beside its idle RSS). Targets: <= 1.5x the raw copy; peak <= 100 MB.
"""

from __future__ import annotations

# isort: off
# isort: on
import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import requests

from bench._rss import PeakRss
from heavylift.settings import Settings
from heavylift.storage import open_store
from local.launch import FunctionServer, RedisServer
from tests.storage_servers import BUCKET, FakeGcsServer, write_service_account

MB = 1024 * 1024
_started: list[FakeGcsServer] = []  # emulators to stop at the end


def backend(name: str, workdir: Path) -> dict[str, str]:
    if name == "file":
        return {"STORAGE_URL": f"file://{workdir / 'objects'}"}
    server = FakeGcsServer(workdir / "fake-gcs.log")
    server.start()
    _started.append(server)
    requests.post(f"{server.url}/storage/v1/b", json={"name": BUCKET}, timeout=10)
    return {"STORAGE_URL": f"gs://{BUCKET}/bench", "STORAGE_EMULATOR_HOST": server.url,
            "GCS_SIGNING_CREDENTIALS_FILE": str(write_service_account(workdir / "sa.json"))}


def measure(name: str, source: Path, redis_url: str, workdir: Path) -> dict[str, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"REDIS_URL": redis_url, "AUTH_DISABLED": "true", **backend(name, workdir)}
    os.environ.update({k: v for k, v in env.items() if k == "STORAGE_EMULATOR_HOST"})
    settings = Settings(storage_url=env["STORAGE_URL"],
                        gcs_signing_credentials_file=env.get("GCS_SIGNING_CREDENTIALS_FILE"))
    store = open_store(env["STORAGE_URL"], settings)
    started = time.perf_counter()
    store.put_file(f"raw/{uuid.uuid4().hex}.pdf", source, "application/pdf")
    raw = time.perf_counter() - started

    api = FunctionServer("api", env, workdir / "api.log").start()
    assert api.process is not None
    try:
        requests.get(f"{api.url}/api/documents/async-upload", timeout=30)  # warm up imports
        # gunicorn: the master only supervises; its one worker process handles the request.
        (worker,) = psutil.Process(api.process.pid).children()
        with PeakRss(worker.pid, children=False) as rss, source.open("rb") as body:
            started = time.perf_counter()
            answer = requests.post(f"{api.url}/api/documents/async-upload",
                                   files=[("files", (source.name, body))], timeout=300)
            through_api = time.perf_counter() - started
        if answer.status_code != 202:
            raise SystemExit(f"upload failed: {answer.status_code} {answer.text}")
    finally:
        api.stop()
    return {"raw": raw, "api": through_api, "rss": rss.peak / MB, "idle": rss.idle / MB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=50, help="file size in MB")
    parser.add_argument("--backends", default="file,gs", help="comma-separated: file, gs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="heavylift-bench-"))
    source = workdir / "large-document.pdf"
    with source.open("wb") as out:
        out.write(b"%PDF-1.7\n")
        for _ in range(args.mb):
            out.write(os.urandom(MB))
        out.truncate(args.mb * MB)  # exactly the limit: MAX_UPLOAD_BYTES is inclusive
    redis = RedisServer(workdir)
    redis.start()
    rows = []
    try:
        for name in args.backends.split(","):
            result = measure(name, source, redis.url, workdir / name)
            rows.append((name, result))
    finally:
        redis.stop()
        for server in _started:
            server.stop()
    print("| backend | raw copy (s) | through api (s) | ratio | function peak RSS (MB) "
          "| idle RSS (MB) |\n|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} ({args.mb} MB) | {r['raw']:.2f} | {r['api']:.2f} "
              f"| {r['api'] / r['raw']:.2f}x | {r['rss']:.0f} | {r['idle']:.0f} |")


if __name__ == "__main__":
    main()
