"""`python -m worker_service` / `heavylift-worker`: run BullMQ workers for the registered queues."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from heavylift import diagnostics
from heavylift.datasets import job as dataset_job
from heavylift.documents import job as document_job
from heavylift.documents.ocr import OcrLanguageError, check_languages
from heavylift.logs import configure_logging
from heavylift.queue import QueueName
from heavylift.runtime.context import Registry, registry_of
from heavylift.runtime.runner import WorkerRuntime
from heavylift.settings import SettingsError, load_settings

REGISTRY = registry_of([*diagnostics.KINDS, document_job.KIND, dataset_job.KIND,
                        dataset_job.SLICE_KIND])

app = typer.Typer(add_completion=False)


def serve(queues: list[QueueName] | None = None, registry: Registry = REGISTRY) -> None:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"heavylift-worker: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    served = {q: p for q, p in registry.items() if not queues or q in queues}
    if settings.ocr_enabled and document_job.QUEUE in served:
        try:  # a missing language fails here, not in the first scanned document's job
            check_languages(settings.ocr_languages, settings.ocr_tessdata_dir)
        except OcrLanguageError as error:
            print(f"heavylift-worker: invalid setting OCR_LANGUAGES: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    raise SystemExit(asyncio.run(WorkerRuntime(settings, served).run()))


@app.command()
def run(
    queue: Annotated[
        list[QueueName] | None,
        typer.Option("--queue", "-q", help="Only these queues (repeatable); default all."),
    ] = None,
    reload: Annotated[
        bool, typer.Option(help="Dev mode: restart the worker when the code changes.")
    ] = False,
) -> None:
    """Process heavylift jobs from Redis (settings come from the environment; see README)."""
    if reload:
        from watchfiles import run_process

        root = Path(__file__).resolve().parent.parent
        run_process(root / "src" / "heavylift", root / "worker_service",
                    target=serve, args=(queue,))
        return
    serve(queue)


def main() -> None:
    app()
