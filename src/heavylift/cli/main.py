"""`heavylift`: submit documents, watch jobs, operate queues, sync datasets, run the local stack.

Talks to the HTTP API (the local stack by default, or a deployed URL with --url); the API key
comes from HEAVYLIFT_API_KEY. Exit codes: 0 ok, 1 a job failed, 2 bad input, 3 API or Redis
unavailable, 4 not found, 5 not authorised.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from heavylift.cli.client import (
    EXIT_BAD_INPUT,
    EXIT_FAILED_JOB,
    ApiError,
    Client,
    progress_of,
)
from heavylift.cli.client import (
    SIGNED_UPLOAD_ABOVE as SIGNED_ABOVE,
)
from heavylift.cli.ui import err, new_progress, out, show

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
datasets_app = typer.Typer(help="BigQuery dataset syncs.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

UrlOption = Annotated[str, typer.Option("--url", envvar="HEAVYLIFT_URL",
                                        help="API base URL (local stack by default).")]
KeyOption = Annotated[str | None, typer.Option("--api-key", envvar="HEAVYLIFT_API_KEY",
                                               help="API key (env HEAVYLIFT_API_KEY).",
                                               show_default=False)]
QueueOption = Annotated[str, typer.Option("--queue", "-q", help="documents, datasets or "
                                          "diagnostics.")]
DEFAULT_URL = "http://127.0.0.1:3000"
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def fail(error: ApiError) -> typer.Exit:
    err.print(f"[red]error:[/] {error}", highlight=False)
    return typer.Exit(error.exit_code)


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    ai: Annotated[bool, typer.Option("--ai/--no-ai", help="useAI (priority 1).")] = False,
    summary: Annotated[bool, typer.Option("--summary/--no-summary")] = False,
    embeddings: Annotated[bool, typer.Option("--embeddings/--no-embeddings")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow each job to the end.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait may take.")] = 3600,
    signed_above: Annotated[int, typer.Option(
        help="Files larger than this (bytes) go through a signed upload URL.")] = SIGNED_ABOVE,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Upload documents (one bar per file: upload, then processing)."""
    client = Client(url, api_key)
    flags = {"useAI": ai, "generateSummary": summary, "generateEmbeddings": embeddings}
    results: list[dict[str, Any]] = []
    try:
        with new_progress() as bar:
            for path in files:
                results.append(_submit_one(client, bar, path, flags, wait, timeout, signed_above))
    except ApiError as error:
        raise fail(error) from None
    show(results)
    if any(r.get("view", {}).get("state") == "failed" for r in results):
        raise typer.Exit(EXIT_FAILED_JOB)


def _submit_one(client: Client, bar: Progress, path: Path, flags: dict[str, bool], wait: bool,
                timeout: float, signed_above: int) -> dict[str, Any]:
    task = bar.add_task(path.name, total=path.stat().st_size, state="uploading")

    def sent(count: int) -> None:
        bar.advance(task, count)

    accepted = client.submit(path, flags, sent, signed_above)
    job_id = str(accepted["jobId"] or client.document_job(accepted["documentId"]))
    bar.update(task, total=100, completed=0, state=f"job {job_id} queued")

    def on_view(view: dict[str, Any]) -> None:
        bar.update(task, completed=progress_of(view), state=f"job {job_id} {view['state']}")

    if wait:
        accepted["view"] = client.wait(job_id, "documents", on_view, timeout)
    return {**accepted, "jobId": job_id}


@app.command()
def status(job: str, queue: QueueOption = "documents", url: UrlOption = DEFAULT_URL,
           api_key: KeyOption = None) -> None:
    """One job's state, progress and result (JSON)."""
    try:
        show(Client(url, api_key).job(job, queue))
    except ApiError as error:
        raise fail(error) from None


@app.command()
def watch(job: str, queue: QueueOption = "documents",
          timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
          url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """A progress bar until the job completes (exit 0) or fails (exit 1)."""
    client = Client(url, api_key)
    try:
        with new_progress() as bar:
            task = bar.add_task(f"job {job}", total=100, state="")
            view = client.wait(job, queue, lambda v: bar.update(
                task, completed=progress_of(v), state=v["state"]), timeout)
    except ApiError as error:
        raise fail(error) from None
    show(view)
    if view["state"] == "failed":
        raise typer.Exit(EXIT_FAILED_JOB)


@app.command()
def stats(url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts by state for every queue."""
    try:
        data = Client(url, api_key).call("GET", "/api/queues")
    except ApiError as error:
        raise fail(error) from None
    if as_json:
        show(data)
        return
    table = Table("queue", "waiting", "active", "completed", "failed", "delayed", "paused")
    for queue in data["queues"]:
        counts = queue["counts"]
        table.add_row(queue["name"], *(str(counts[s]) for s in
                                       ("waiting", "active", "completed", "failed", "delayed")),
                      "yes" if queue.get("paused") else "")
    out.print(table)


@app.command()
def jobs(queue: QueueOption = "documents",
         state: Annotated[str, typer.Option(help="waiting, active, completed, failed, "
                                            "delayed")] = "failed",
         page: int = 1, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """A page of jobs in a state (JSON)."""
    try:
        show(Client(url, api_key).call("GET", f"/api/queues/{queue}/jobs",
                                       params={"state": state, "page": page}))
    except ApiError as error:
        raise fail(error) from None


@app.command()
def retry(job: Annotated[str | None, typer.Argument()] = None,
          all_failed: Annotated[bool, typer.Option("--all-failed")] = False,
          queue: QueueOption = "documents", url: UrlOption = DEFAULT_URL,
          api_key: KeyOption = None) -> None:
    """Retry one failed job, or every failed job of a queue with --all-failed."""
    if (job is None) == (not all_failed):
        raise fail(ApiError("give a JOB id or --all-failed (not both)", EXIT_BAD_INPUT))
    client = Client(url, api_key)
    try:
        path = (f"/api/queues/{queue}/retry-failed" if all_failed
                else f"/api/queues/{queue}/jobs/{job}/retry")
        show(client.call("POST", path))
    except ApiError as error:
        raise fail(error) from None


@app.command()
def cancel(job: str, queue: QueueOption = "documents", url: UrlOption = DEFAULT_URL,
           api_key: KeyOption = None) -> None:
    """Stop a waiting or running job: it fails as "cancelled" and is not retried."""
    try:
        show(Client(url, api_key).call("POST", f"/api/queues/{queue}/jobs/{job}/cancel"))
    except ApiError as error:
        raise fail(error) from None


def duration_ms(text: str) -> int:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ApiError(f"bad duration {text!r}: use e.g. 30s, 15m, 12h, 1d", EXIT_BAD_INPUT)
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


@app.command()
def clean(state: Annotated[str, typer.Option(help="completed, failed, delayed, waiting")],
          older_than: Annotated[str, typer.Option(help="e.g. 1d, 12h, 30m")] = "0s",
          queue: QueueOption = "documents", url: UrlOption = DEFAULT_URL,
          api_key: KeyOption = None) -> None:
    """Remove jobs in a state that are older than --older-than."""
    try:
        body = {"state": state, "olderThanMs": duration_ms(older_than)}
        show(Client(url, api_key).call("POST", f"/api/queues/{queue}/clean", json=body))
    except ApiError as error:
        raise fail(error) from None


@datasets_app.command("sync")
def datasets_sync(
    dataset_id: Annotated[str, typer.Option("--dataset-id")],
    environment: Annotated[str, typer.Option()],
    volume_type: Annotated[str, typer.Option("--volume-type")],
    start_date: Annotated[str, typer.Option("--start-date", help="YYYY-MM-DD")],
    end_date: Annotated[str, typer.Option("--end-date", help="YYYY-MM-DD")],
    job_type: Annotated[str, typer.Option("--job-type", help="forecast or actuals")],
    wait: Annotated[bool, typer.Option("--wait")] = False,
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
) -> None:
    """Sync a dataset: small ones answer at once, large ones become a `datasets` job."""
    client = Client(url, api_key)
    body = {"datasetId": dataset_id, "environment": environment, "volumeType": volume_type,
            "startDate": start_date, "endDate": end_date, "jobType": job_type}
    try:
        answer = client.call("POST", "/api/datasets/sync", json=body)
        if wait and answer.get("jobId"):
            with new_progress() as bar:
                task = bar.add_task(f"sync {answer['jobId']}", total=100, state="")
                answer["view"] = client.wait(str(answer["jobId"]), "datasets", lambda v: bar.update(
                    task, completed=progress_of(v), state=v["state"]), 24 * 3600)
    except ApiError as error:
        raise fail(error) from None
    show(answer)
    if answer.get("view", {}).get("state") == "failed":
        raise typer.Exit(EXIT_FAILED_JOB)


def main() -> None:
    app()
