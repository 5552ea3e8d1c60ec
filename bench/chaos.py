"""Chaos benchmark: does every accepted job finish, correctly, while workers die?

    python -m bench.chaos [--kills 20] [--window 210] [--documents 48] [--syncs 4] [--rows 1000000]

One run, real parts on loopback (local/launch.py): redis-server (appendonly), the BigQuery
emulator with generated rows, the `api` function, two workers (default settings). Phases:

1. reference: each distinct document (R's manuals, a Debian package) and one sync run once,
   undisturbed; their outputs are what every later run must reproduce;
2. kill storm: documents and syncs are submitted through the HTTP API across the window while one
   of the two workers gets `kill -9` at random moments (`--kills` times) and is replaced at once.
   Each killed job's recovery time is the time from the kill to its next start on any worker;
3. Redis restart: 20 small uploads/s for 15 s, Redis stopped for 3 s in the middle (AOF on):
   every 202 must complete, every refusal must be a 503;
4. faults, on a second api + worker whose storage is fake-gcs-server (gs://) and whose BigQuery
   Storage Read API are reached through relays (tests/faults.py): a 30 s storage outage while
   documents run (nothing listens), and a hung read (the relay freezes mid-sync: connections
   open, no bytes) that must cost time, not the job.

It prints one table: accepted / completed / failed / stuck, outputs identical to the reference,
recovery p50 / max, and each recovery against the README's bound for its case (LOCK_DURATION_MS
+ STALLED_INTERVAL_MS with a free slot on the other worker; with only the fresh replacement
free, max(that, its start-up + 2 x STALLED_INTERVAL_MS)).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import signal
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from heavylift.settings import Settings
from local import bq_emulator, sample_data
from local.launch import FunctionServer, RedisServer, WorkerProcess, free_port, wait_for
from tests.pdf_fixtures import real_manuals

DATASET = "chaos"
OPTIONS = {"useAI": "true", "generateSummary": "true", "generateEmbeddings": "true"}
TERMINAL = ("completed", "failed")
_CHUNK_ID_HASH = re.compile(r"\b(c\d{5})-[0-9a-f]{12}\b")


@dataclass
class Submitted:
    queue: str
    job_id: str
    kind: str  # the document's file name, or "sync"
    accepted_at: float


@dataclass
class Kill:
    at: float
    victim: WorkerProcess
    survivor_free: bool  # the other worker had a free slot at the kill
    replaced_in: float  # seconds until the replacement was ready


@dataclass
class Cluster:
    """Redis, the api and N workers; workers can be killed and replaced."""

    root: Path
    env: dict[str, str]
    redis: RedisServer
    api: FunctionServer
    workers: list[WorkerProcess] = field(default_factory=list)
    retired: list[WorkerProcess] = field(default_factory=list)

    def add_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.redis.url, **{k: v for k, v in self.env.items()
                                                  if k != "REDIS_URL"}).wait_ready(60)
        self.workers.append(worker)
        return worker

    def kill_busy(self, rng: random.Random, prefer: str, wait_s: float) -> Kill:
        """`kill -9` a worker in the middle of a job (one of queue `prefer` if any runs within
        `wait_s`, else any job, else any worker), then start its replacement."""
        deadline = time.monotonic() + wait_s
        victim = None
        while victim is None and time.monotonic() < deadline:
            busy = [(w, queue) for w in self.workers for queue in running(w).values()]
            preferred = [w for w, queue in busy if queue == prefer]
            victim = rng.choice(preferred) if preferred else None
            if victim is None and busy and time.monotonic() > deadline - wait_s / 2:
                victim = rng.choice(busy)[0]
            time.sleep(0.02)
        victim = victim or rng.choice(self.workers)
        time.sleep(rng.uniform(0, 0.5))  # a random moment of the job (its stage)
        victim.signal(signal.SIGKILL)
        killed_at = time.time()
        slots = Settings().job_concurrency
        survivor_free = any(len(running(w)) < slots for w in self.workers if w is not victim)
        victim.wait_exit(10)
        self.workers.remove(victim)
        self.retired.append(victim)
        self.add_worker()
        return Kill(killed_at, victim, survivor_free, time.time() - killed_at)

    def all_workers(self) -> list[WorkerProcess]:
        return [*self.retired, *self.workers]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.api.stop()
        self.redis.stop()


def running(worker: WorkerProcess) -> dict[str, str]:
    """jobId -> queue of the jobs the worker has started and not finished."""
    started = {e["jobId"]: e["queue"] for e in worker.find("started")}
    for event in ("completed", "failed", "handed_back"):
        for e in worker.find(event):
            started.pop(e["jobId"], None)
    return started


def view(cluster: Cluster, queue: str, job_id: str) -> dict[str, Any]:
    path = "documents/async-upload" if queue == "documents" else "datasets/sync"
    answer = requests.get(f"{cluster.api.url}/api/{path}", params={"jobId": job_id}, timeout=10)
    return answer.json() if answer.ok else {"state": f"http {answer.status_code}"}


def upload(cluster: Cluster, pdf: Path) -> Submitted:
    with pdf.open("rb") as handle:
        answer = requests.post(
            f"{cluster.api.url}/api/documents/async-upload", data=OPTIONS, timeout=60,
            files=[("files", (pdf.name, handle))],
            headers={"Idempotency-Key": uuid.uuid4().hex})  # a new job for the same bytes
    answer.raise_for_status()
    return Submitted("documents", answer.json()["jobs"][0]["jobId"], pdf.name, time.time())


def sync(cluster: Cluster) -> Submitted:
    body = {"datasetId": DATASET, "environment": "production", "volumeType": "inbound",
            "jobType": "forecast", "startDate": "2024-01-01", "endDate": "2025-12-31"}
    answer = requests.post(f"{cluster.api.url}/api/datasets/sync", json=body, timeout=300)
    answer.raise_for_status()
    assert answer.json()["mode"] == "queued", answer.json()
    return Submitted("datasets", answer.json()["jobId"], "sync", time.time())


def wait_all(cluster: Cluster, jobs: list[Submitted], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    views: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        views = {job.job_id: view(cluster, job.queue, job.job_id) for job in jobs}
        if all(v.get("state") in TERMINAL for v in views.values()):
            break
        time.sleep(1)
    return views


# --- what "identical" means ---------------------------------------------------------------------

def document_fingerprint(storage: Path, document_id: str) -> str:
    """Pages' text, chunks (text, tokens, page range), analysis and vectors: everything but the
    ids and timings, which differ from one document id to the next by design."""
    folder = storage / "documents" / document_id
    digest = hashlib.sha256()
    for line in (folder / "pages.jsonl").read_text().splitlines():
        digest.update(json.loads(line)["text"].encode())
    for line in (folder / "chunks.jsonl").read_text().splitlines():
        chunk = json.loads(line)
        digest.update(json.dumps([chunk["text"], chunk["tokens"], chunk["first_page"],
                                  chunk["last_page"]]).encode())
    analysis = json.loads((folder / "analysis.json").read_text())
    findings = json.dumps({k: analysis[k] for k in ("summary", "themes", "quotes", "insights")},
                          sort_keys=True)
    digest.update(_CHUNK_ID_HASH.sub(r"\1", findings).encode())  # ids hash the document id
    digest.update((folder / "embeddings.npy").read_bytes())
    return digest.hexdigest()


def sync_fingerprint(storage: Path, manifest_key: str) -> str:
    """Order-independent: the set of rows across all parts, and their count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.dataset_checks import checksum

    manifest = json.loads((storage / manifest_key).read_text())
    table = pa.concat_tables([pq.read_table(storage / part["key"]) for part in manifest["parts"]])
    return f"{table.num_rows}:{checksum(table)}"


def fingerprint(storage: Path, job: Submitted, result: dict[str, Any]) -> str:
    if job.queue == "documents":
        return document_fingerprint(storage, result["documentId"])
    return sync_fingerprint(storage, result["manifest"])


# --- phases -------------------------------------------------------------------------------------

def reference(cluster: Cluster, manuals: list[Path], storage: Path) -> dict[str, str]:
    jobs = [upload(cluster, pdf) for pdf in manuals] + [sync(cluster)]
    views = wait_all(cluster, jobs, 600)
    prints = {}
    for job in jobs:
        assert views[job.job_id]["state"] == "completed", views[job.job_id]
        prints[job.kind] = fingerprint(storage, job, views[job.job_id]["result"])
    return prints


def kill_storm(cluster: Cluster, manuals: list[Path], args: argparse.Namespace,
               rng: random.Random) -> tuple[list[Submitted], list[Kill]]:
    """Submissions and kills spread over the window, in one thread each."""
    jobs: list[Submitted] = []
    started = time.monotonic()
    plan = sorted([(rng.uniform(0, args.window * 0.85), "doc") for _ in range(args.documents)]
                  + [(args.window * (i + 0.3) / args.syncs * 0.85, "sync")
                     for i in range(args.syncs)])

    def submit() -> None:
        for at, what in plan:
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            jobs.append(sync(cluster) if what == "sync" else upload(cluster, rng.choice(manuals)))

    submitter = threading.Thread(target=submit)
    submitter.start()
    kills = []
    spacing = args.window / args.kills
    for index in range(args.kills):
        at = 5 + index * spacing
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        # One kill in three aims at a sync, the others at a document, each mid-job.
        prefer = "datasets" if index % 3 == 1 else "documents"
        kills.append(cluster.kill_busy(rng, prefer, spacing * 0.8))
        print(f"  kill {len(kills)}/{args.kills} at {time.monotonic() - started:.0f} s",
              flush=True)
    submitter.join()
    return jobs, kills


@dataclass
class Recovery:
    queue: str
    seconds: float  # kill to the job's next start; inf: never restarted
    bound: float  # the README's bound for this case


def recovery_times(cluster: Cluster, kills: list[Kill],
                   views: dict[str, dict[str, Any]]) -> list[Recovery]:
    """Each job a kill orphaned, with the README's bound for its case: LOCK_DURATION_MS +
    STALLED_INTERVAL_MS with a free slot on the other worker, else max(that, the replacement's
    start-up + 2 x STALLED_INTERVAL_MS). A job that finished before the kill (its "completed"
    line was still in the killed worker's log batch) was not orphaned."""
    settings = Settings()
    locks = (settings.lock_duration_ms + settings.stalled_interval_ms) / 1000
    recoveries = []
    for kill in kills:
        for job_id, queue in running(kill.victim).items():
            finished = (views.get(job_id) or {}).get("finishedAt") or float("inf")
            if finished / 1000 <= kill.at:
                continue
            restarts = [e["_t"] for w in cluster.all_workers()
                        for e in w.find("started", jobId=job_id) if e["_t"] > kill.at]
            bound = locks if kill.survivor_free else max(
                locks, kill.replaced_in + 2 * settings.stalled_interval_ms / 1000)
            recoveries.append(Recovery(queue, min(restarts) - kill.at if restarts
                                       else float("inf"), bound))
    return recoveries


def redis_restart(cluster: Cluster, seconds: float = 15.0, rate: float = 20.0) -> dict[str, int]:
    accepted: list[str] = []
    refused: dict[int, int] = {}
    sent = 0

    def send() -> None:
        nonlocal sent
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            body = f"# note {uuid.uuid4().hex}\n\nchaos upload {sent}\n".encode()
            try:
                answer = requests.post(f"{cluster.api.url}/api/documents/async-upload",
                                       timeout=10, files=[("files", (f"n{sent}.md", body))])
                if answer.status_code == 202:
                    accepted.append(answer.json()["jobs"][0]["jobId"])
                else:
                    refused[answer.status_code] = refused.get(answer.status_code, 0) + 1
            except requests.RequestException:
                refused[0] = refused.get(0, 0) + 1
            sent += 1
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))

    sender = threading.Thread(target=send)
    sender.start()
    # The restart runs here, not in a thread: a child is tied to the thread that starts it.
    time.sleep(seconds / 3)
    cluster.redis.stop()
    time.sleep(3)
    cluster.redis.start()
    sender.join()
    jobs = [Submitted("documents", job_id, "note", 0) for job_id in accepted]
    views = wait_all(cluster, jobs, 300)
    states = [v.get("state") for v in views.values()]
    return {"sent": sent, "accepted": len(accepted), "completed": states.count("completed"),
            "refused_503": refused.get(503, 0),
            "refused_other": sum(n for code, n in refused.items() if code != 503)}


def faults(root: Path, emulator: Any, manuals: list[Path]) -> dict[str, str]:
    """A 30 s storage outage and a hung BigQuery read, on a second api + worker."""
    from tests.faults import TcpRelay
    from tests.storage_servers import FakeGcsServer

    gcs = FakeGcsServer(root / "gcs.log")
    gcs.start()
    requests.post(f"{gcs.url}/storage/v1/b", json={"name": "chaos"}, timeout=10).raise_for_status()
    storage_relay = TcpRelay(free_port(), gcs.port)
    read_relay = TcpRelay(free_port(), emulator.grpc_port)
    storage_relay.start()
    read_relay.start()
    redis = RedisServer(root / "redis-faults").start()
    env = {**emulator.env(), "REDIS_URL": redis.url, "STORAGE_URL": "gs://chaos",
           "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{storage_relay.port}",
           "BQ_STORAGE_EMULATOR_HOST": f"127.0.0.1:{read_relay.port}", "BQ_CALL_TIMEOUT_S": "10",
           "AUTH_DISABLED": "true", "UPLOAD_SIGNING_SECRET": "chaos", "LOG_LEVEL": "INFO",
           "SYNC_THRESHOLD": "10000"}
    cluster = Cluster(root, env, redis, FunctionServer("api", env, root / "api-faults.log").start())
    cluster.add_worker()
    answers: dict[str, str] = {}
    try:
        docs = [upload(cluster, pdf) for pdf in manuals[:4]]
        time.sleep(1.0)
        storage_relay.stop()
        time.sleep(30)
        storage_relay.start()
        views = wait_all(cluster, docs, 600)
        done = [v for v in views.values() if v.get("state") == "completed"]
        answers["storage outage 30 s: documents completed"] = (
            f"{len(done)} of {len(docs)}, attempts used "
            f"{sum(int(v.get('attemptsMade') or 0) for v in views.values())}")
        job = sync(cluster)
        # Hang the Storage Read API for 20 s once rows are flowing: connections stay open,
        # nothing moves. The sync must come through (a retried call or a new attempt).
        wait_for(lambda: float(view(cluster, job.queue, job.job_id).get("progress") or 0) > 0,
                 120, interval=0.05)
        read_relay.freeze()
        time.sleep(20)
        read_relay.thaw()
        final = wait_all(cluster, [job], 600)[job.job_id]
        worker = cluster.workers[0]
        failed = worker.find("failed", jobId=job.job_id)
        answers["hung BigQuery read 20 s: sync"] = (
            f"{final.get('state')}, {final.get('result', {}).get('totalRows')} rows, "
            f"attempts used {final.get('attemptsMade')}")
        answers["hung BigQuery read 20 s: attempt failed with"] = (
            failed[0]["reason"][:60] if failed else "- (the call's own retry rode it out)")
    finally:
        cluster.stop()
        storage_relay.stop()
        read_relay.stop()
        gcs.stop()
    return answers


# --- main ---------------------------------------------------------------------------------------

def start(root: Path, rows: int) -> tuple[Cluster, Any]:
    redis = RedisServer(root / "redis").start()
    emulator = bq_emulator.launch(log_path=root / "emulator.log")
    env = {**emulator.env(), "REDIS_URL": redis.url, "STORAGE_URL": f"file://{root / 'storage'}",
           "AUTH_DISABLED": "true", "UPLOAD_SIGNING_SECRET": "chaos", "LOG_LEVEL": "INFO",
           "SYNC_THRESHOLD": "10000"}
    from heavylift.datasets.clients import open_clients
    from tests.dataset_checks import emulator_settings

    clients = open_clients(emulator_settings(emulator))
    print(f"loading {rows:,} rows into the emulator...", flush=True)
    sample_data.load_table(clients, DATASET, "forecast", rows, environments=("production",),
                           volume_types=("inbound",))
    clients.close()
    api = FunctionServer("api", env, root / "api.log").start()
    cluster = Cluster(root, env, redis, api)
    for _ in range(2):
        cluster.add_worker()
    return cluster, emulator


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--window", type=float, default=210.0, help="seconds of kills")
    parser.add_argument("--documents", type=int, default=48)
    parser.add_argument("--syncs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per sync")
    parser.add_argument("--seed", type=int, default=1, help="random seed of kills and uploads")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="heavylift-chaos-"))
    storage = root / "storage"
    manuals = sorted(p for p in real_manuals().glob("*.pdf") if p.name != "refman.pdf")
    cluster, emulator = start(root, args.rows)
    try:
        print("reference run (undisturbed)...", flush=True)
        expected = reference(cluster, manuals, storage)
        print(f"kill storm: {args.kills} kills over {args.window:.0f} s...", flush=True)
        jobs, kills = kill_storm(cluster, manuals, args, rng)
        views = wait_all(cluster, jobs, 900)
        print("redis restart under upload load...", flush=True)
        restart = redis_restart(cluster)
        cluster.stop()
        print("storage outage and hung read...", flush=True)
        try:
            injected = faults(root, emulator, manuals)
        except Exception as error:  # still print what the kill storm measured
            injected = {"storage outage / hung read phase": f"did not finish: {error!r}"}
    finally:
        cluster.stop()
        emulator.stop()

    states = [views[j.job_id].get("state") for j in jobs]
    identical = sum(
        1 for j in jobs if views[j.job_id].get("state") == "completed"
        and fingerprint(storage, j, views[j.job_id]["result"]) == expected[j.kind])
    recoveries = recovery_times(cluster, kills, views)
    finite = [r.seconds for r in recoveries if r.seconds != float("inf")]
    within = sum(r.seconds <= r.bound for r in recoveries)
    worst = max(recoveries, key=lambda r: r.seconds / r.bound, default=None)
    per_queue = {q: sum(r.queue == q for r in recoveries) for q in ("documents", "datasets")}
    failed = [(j.job_id, views[j.job_id].get("failedReason")) for j in jobs
              if views[j.job_id].get("state") == "failed"]
    rows = [
        ("jobs accepted (documents + syncs)", f"{len(jobs)} ({args.documents} + {args.syncs})"),
        ("completed", str(states.count("completed"))),
        ("failed", str(states.count("failed"))),
        ("stuck (not terminal after 15 min)", str(len(jobs) - sum(states.count(s)
                                                                    for s in TERMINAL))),
        ("completed outputs identical to the undisturbed run", f"{identical}"),
        ("kill -9 (one of 2 workers, replaced at once)", str(len(kills))),
        ("jobs orphaned by a kill (documents / syncs)",
         f"{len(recoveries)} ({per_queue['documents']} / {per_queue['datasets']})"),
        ("orphaned jobs never restarted", str(len(recoveries) - len(finite))),
        ("recovery p50 / max (s)", f"{statistics.median(finite):.1f} / {max(finite):.1f}"
         if finite else "-"),
        ("recoveries within the README's bound for their case", f"{within} of {len(recoveries)}"),
        ("worst recovery / its bound (s)",
         f"{worst.seconds:.1f} / {worst.bound:.1f}" if worst else "-"),
        ("redis restart: sent / 202 / completed",
         f"{restart['sent']} / {restart['accepted']} / {restart['completed']}"),
        ("redis restart: refused 503 / other", f"{restart['refused_503']} / "
                                               f"{restart['refused_other']}"),
    ]
    rows += list(injected.items())
    width = max(len(name) for name, _ in rows)
    print(f"\n{'chaos run'.ljust(width)} | result\n{'-' * width}-|-------")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")
    for job_id, reason in failed:
        print(f"failed {job_id}: {reason}")


if __name__ == "__main__":
    main()
