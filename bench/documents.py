"""Document pipeline benchmark: the worker's full pipeline beside raw pypdfium2, one table per PDF.

    python -m bench.documents [--pdf PATH ...] [--cpu-workers 2] [--against REF]

Default PDFs: R's fullrefman.pdf (2,415 pages, from Debian's r-doc-pdf) and LilyPond's three
largest manuals joined (1,799 pages, 47 MB, from lilypond-doc-pdf), fetched and built with the
tests' helpers when missing (cached outside the repo). Each row runs in a fresh child process;
the parent samples the RSS of that child and all its descendants (the process pool, the
forkserver) every 10 ms and reports the peak of the sum. CPU-s are the user + system seconds of
that child and its pool processes over the timed part; "ceiling CPU-s / its CPU-s" is the best
the row could do against the ceiling if it kept every core as busy as the ceiling does. Rows:

- raw pypdfium2 with CPU_WORKERS processes: open once per process, every page's text of its run
  of consecutive pages, nothing else (the ceiling: the same processes the pipeline gets);
- pipeline: `process_document` as the worker runs it (file:// storage, process pool of
  CPU_WORKERS, warm), extract + chunk + local hashing embeddings, all outputs stored;
- raw pypdfium2 in one process; the pipeline with PDF_REOPEN_MB=10, with local analysis
  too, and with the pypdf engine.

The first two rows run REPEAT times, interleaved, and report their fastest run (peak RSS: the
highest of the runs); the others run once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_SECONDS = 0.01
# Headline rows (raw, full pipeline) run this many times, interleaved, and report their fastest
# run: the machine is shared, and a ratio of two single runs mostly measures the neighbours.
REPEAT = 3


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "raw" or "pipeline"
    env: dict[str, str]
    options: dict[str, bool]


EMBED_ONLY = {"useAI": False, "generateSummary": False, "generateEmbeddings": True}
ROWS = [
    Row("raw pypdfium2, CPU_WORKERS processes (the ceiling)", "raw-parallel", {}, {}),
    Row("pipeline: pypdfium2 + chunk + embed (local)", "pipeline", {}, EMBED_ONLY),
    Row("raw pypdfium2, one process", "raw", {}, {}),
    Row("  same, PDF_REOPEN_MB=10", "pipeline", {"PDF_REOPEN_MB": "10"}, EMBED_ONLY),
    Row("  same + local analysis (useAI)", "pipeline", {}, {**EMBED_ONLY, "useAI": True}),
    Row("pipeline: pypdf engine + chunk + embed (local)", "pipeline", {"PDF_ENGINE": "pypdf"},
        EMBED_ONLY),
]


# --- inside the child process ----------------------------------------------------------------


def read_range(pdf: Path, start: int, stop: int) -> int:
    """Raw pypdfium2: open once, every page's text in [start, stop), nothing else."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    for index in range(start, stop):
        page = document[index]
        textpage = page.get_textpage()
        textpage.get_text_range()
        textpage.close()
        page.close()
    document.close()
    return stop - start


def page_count(pdf: Path) -> int:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    try:
        return len(document)
    finally:
        document.close()


def run_raw(pdf: Path) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    count = read_range(pdf, 0, page_count(pdf))
    return {"pages": count, "seconds": time.perf_counter() - started,
            "cpu": time.process_time() - cpu}


def run_raw_parallel(pdf: Path, processes: int) -> dict[str, Any]:
    """The ceiling: the pages split into `processes` runs of consecutive pages, as the pipeline
    shards them, each read in its own warm process (spawned, as the worker's pool is)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bench._rss import cpu_seconds  # here, not at the top: see `measure`

    count = page_count(pdf)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        list(pool.map(page_count, [pdf] * processes))  # started and imported: warm
        started, cpu = time.perf_counter(), cpu_seconds(os.getpid())
        bounds = [(count * i // processes, count * (i + 1) // processes) for i in range(processes)]
        done = sum(pool.map(read_range, [pdf] * processes, *zip(*bounds, strict=True)))
        seconds, cpu = time.perf_counter() - started, cpu_seconds(os.getpid()) - cpu
    return {"pages": done, "seconds": seconds, "cpu": cpu}


class _Job:
    """What JobContext reads of a bullmq Job; progress is kept in memory instead of Redis."""

    def __init__(self, job_id: str, name: str, data: dict[str, Any]) -> None:
        self.id, self.name, self.data = job_id, name, data
        self.attemptsMade, self.opts = 0, {"attempts": 1}
        self.progress: float = 0

    async def updateProgress(self, value: float) -> None:
        self.progress = value


async def _process(
    pool: Any, resources: Any, pdf: Path, job_id: str, options: dict[str, bool]
) -> Any:
    from heavylift.documents import job
    from heavylift.documents.job import DocumentJobData, UploadOptions, upload_key
    from heavylift.documents.pipeline import process_document
    from heavylift.runtime.context import JobContext

    document_id = f"doc_{job_id}"
    key = upload_key(document_id, pdf.name)
    resources.store.put_file(key, pdf)
    data = DocumentJobData(documentId=document_id, objectKey=key, filename=pdf.name,
                           size=pdf.stat().st_size, options=UploadOptions(**options))
    ctx = JobContext(_Job(job_id, job.KIND.name, data.model_dump()), "token", job.QUEUE, pool,
                     resources)
    return await process_document(ctx)


async def run_pipeline(pdf: Path, warmup: Path, options: dict[str, bool]) -> dict[str, Any]:
    from bench._rss import cpu_seconds
    from heavylift.resources import Resources
    from heavylift.runtime.offload import CpuPool
    from heavylift.settings import load_settings

    settings = load_settings()
    pool = CpuPool(settings.cpu_workers, settings.pool_memory_mb)
    resources = Resources(settings)
    try:
        # A worker's pool is warm: its processes exist and have imported the stages' modules.
        await _process(pool, resources, warmup, "warmup", options)
        started, cpu = time.perf_counter(), cpu_seconds(os.getpid())
        result = await _process(pool, resources, pdf, "bench", options)
        seconds, cpu = time.perf_counter() - started, cpu_seconds(os.getpid()) - cpu
    finally:
        pool.kill()
    manifest = json.loads((Path(settings.storage_url.removeprefix("file://")) / "documents"
                           / "doc_bench" / "manifest.json").read_text())
    return {"pages": manifest["pageCount"], "seconds": seconds, "cpu": cpu, "result": result,
            "timings": {k: v["seconds"] for k, v in manifest["timings"].items()}}


def child_main(args: argparse.Namespace) -> None:
    row = ROWS[args.row]
    if row.kind == "raw":
        out = run_raw(args.pdf)
    elif row.kind == "raw-parallel":
        out = run_raw_parallel(args.pdf, int(os.environ["CPU_WORKERS"]))
    else:
        out = asyncio.run(run_pipeline(args.pdf, args.warmup, row.options))
    print(json.dumps(out))


# --- the parent ------------------------------------------------------------------------------


def measure(
    index: int, pdf: Path, warmup: Path, cpu_workers: int, tree: Path | None = None
) -> dict[str, Any]:
    """One row in a fresh child process; `tree`: another checkout's code (see `--against`)."""
    # Here, not at the top: pool processes re-run this file and the worker's do not have psutil.
    from bench._rss import PeakRss

    row = ROWS[index]
    with tempfile.TemporaryDirectory(prefix="hl-bench-") as scratch:
        env = {**os.environ, "STORAGE_URL": f"file://{scratch}/storage",
               "CPU_WORKERS": str(cpu_workers), "LOG_LEVEL": "WARNING", **row.env}
        if tree is not None:
            env["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{tree}"
        command = [sys.executable, "-m", "bench.documents", "--child", "--row", str(index),
                   "--pdf", str(pdf), "--warmup", str(warmup)]
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True,
                                 cwd=tree)
        with PeakRss(child.pid, every_s=SAMPLE_SECONDS) as sampled:
            stdout, _ = child.communicate()
        peak = sampled.peak
        if child.returncode != 0:
            raise SystemExit(f"row {row.name!r} failed (exit {child.returncode})")
    out: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    out["peak_mb"] = peak / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf", type=Path, action="append", help="repeatable")
    parser.add_argument("--cpu-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=REPEAT,
                        help="runs of the raw and full-pipeline rows (fastest reported)")
    parser.add_argument("--against", metavar="REF",
                        help="also run the pipeline row at git REF (a temporary worktree), "
                        "interleaved with this tree's: an A/B that the machine's noise cannot "
                        "fake")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--row", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.pdf = args.pdf[0]
        child_main(args)
        return
    from tests.pdf_fixtures import large_manual, real_manuals

    manuals = real_manuals()
    warmup = manuals / "R-data.pdf"
    with _worktree(args.against) as other:
        for pdf in args.pdf or [manuals / "fullrefman.pdf", large_manual()]:
            table(pdf, warmup, args, other)


@contextmanager
def _worktree(ref: str | None) -> Iterator[Path | None]:
    """A detached git worktree of `ref` beside the repository, removed afterwards."""
    if ref is None:
        yield None
        return
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="hl-bench-ref-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(tree),
                        ref], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                           check=False)


def table(pdf: Path, warmup: Path, args: argparse.Namespace, other: Path | None) -> None:
    print(f"\n{pdf.name}: {pdf.stat().st_size / 2**20:.1f} MB, CPU_WORKERS={args.cpu_workers}, "
          f"{os.cpu_count()} CPUs; first two rows: fastest of {args.repeat} interleaved runs, "
          "peak RSS the highest of them\n")
    runs: dict[int, list[dict[str, Any]]] = {index: [] for index in range(len(ROWS))}
    against: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for index in (0, 1):
            runs[index].append(measure(index, pdf, warmup, args.cpu_workers))
        if other is not None:
            against.append(measure(1, pdf, warmup, args.cpu_workers, other))
    for index in range(2, len(ROWS)):
        runs[index].append(measure(index, pdf, warmup, args.cpu_workers))
    rows = [_best(runs[index]) for index in range(len(ROWS))]
    ceiling = rows[0]["pages"] / rows[0]["seconds"]
    print("| run | pages | seconds | pages/s | vs the ceiling | CPU-s, all processes | "
          "ceiling CPU-s / its CPU-s | peak RSS, all processes (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row, out in zip(ROWS, rows, strict=True):
        rate = out["pages"] / out["seconds"]
        print(f"| {row.name} | {out['pages']} | {out['seconds']:.2f} | {rate:.0f} | "
              f"{rate / ceiling:.2f}x | {out['cpu']:.2f} | {rows[0]['cpu'] / out['cpu']:.2f}x | "
              f"{out['peak_mb']:.0f} |")
    if against:
        _print_against(args.against, runs[1], against)
    print("\nStage seconds (pipeline rows):")
    for row, out in zip(ROWS, rows, strict=True):
        if "timings" in out:
            stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in out["timings"].items())
            print(f"- {row.name.strip()}: {stages}; result {out['result']}")


def _print_against(ref: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    print(f"\nThe pipeline row, this tree beside {ref}, interleaved:\n")
    print("| tree | fastest (s) | median (s) | CPU-s of the fastest | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for name, rows in (("this tree", ours), (ref, theirs)):
        best = _best(rows)
        middle = statistics.median(out["seconds"] for out in rows)
        print(f"| {name} | {best['seconds']:.2f} | {middle:.2f} | {best['cpu']:.2f} | "
              f"{best['peak_mb']:.0f} |")


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run, with the highest peak RSS of all runs (memory is not luck)."""
    best = min(runs, key=lambda out: out["seconds"])
    return {**best, "peak_mb": max(out["peak_mb"] for out in runs)}


if __name__ == "__main__":
    main()
