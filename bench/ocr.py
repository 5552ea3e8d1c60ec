"""OCR benchmark: how much of a scan's text the pipeline recovers, how fast, beside raw Tesseract.

    python -m bench.ocr [--pages 12] [--cpu-workers 2]

Scans: `--pages` pages spread over each of two real text PDFs, R's fullrefman.pdf (Rd reference
pages: code, tables) and R-intro.pdf (prose, examples), from Debian's r-doc-pdf (cached outside
the repo by the tests' helper), rendered at 200 dpi and wrapped as image-only PDFs
(`tests.pdf_fixtures.scanned_pdf`).

Accuracy: bag-of-words recall, the share of the text layer's words (with repeats; lower-cased,
split at anything but letters and digits) found in the text the pipeline stored for the scan.

Speed (pages/s), each over the same pages with CPU_WORKERS processes:
- raw tesserocr: the page images rendered beforehand, one Tesseract API per process initialised
  before the clock starts, only recognition timed (the ceiling of our binding);
- raw tesseract CLI: Debian's `tesseract` (OMP_THREAD_LIMIT=1), CPU_WORKERS at once, on PNGs
  written beforehand (what pytesseract runs per page);
- pipeline: `process_document` as the worker runs it (bench.documents' harness: warm pool,
  file:// storage) on the scanned PDFs, no AI or embeddings: render at OCR_DPI + OCR, plus
  extraction, chunking and storage; the whole job is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

DPI = 200
TESSDATA = "/usr/share/tesseract-ocr/5/tessdata/"
NO_AI = {"useAI": False, "generateSummary": False, "generateEmbeddings": False}
_api: Any = None  # the raw row's Tesseract API, one per pool process


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9]+", text.lower()))


def recall(truth: list[str], recognised: list[str]) -> float:
    expected = words("\n".join(truth))
    return sum((expected & words("\n".join(recognised))).values()) / sum(expected.values())


def spread(page_count: int, pages: int) -> list[int]:
    """`pages` page numbers evenly over the document, past its title pages."""
    first = min(5, page_count)
    step = max(1, (page_count - first) // pages)
    return list(range(first, page_count + 1, step))[:pages]


# --- raw tesserocr -----------------------------------------------------------------------------


def _init_api() -> None:
    from tesserocr import PyTessBaseAPI

    global _api
    _api = PyTessBaseAPI(path=TESSDATA, lang="eng")


def _recognise(image: Image.Image) -> str:
    _api.SetImage(image)
    _api.SetSourceResolution(DPI)
    text: str = _api.GetUTF8Text()
    return text


def raw_tesserocr(images: list[Image.Image], processes: int) -> float:
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_init_api) as pool:
        pool.map(_recognise, [Image.new("L", (64, 64), 255)] * processes)  # all initialised
        started = time.perf_counter()
        pool.map(_recognise, images, chunksize=1)
        return time.perf_counter() - started


def raw_cli(images: list[Image.Image], processes: int, scratch: Path) -> float:
    paths = []
    for index, image in enumerate(images):
        path = scratch / f"page-{index}.png"
        image.save(path, dpi=(DPI, DPI))
        paths.append(path)
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def one(path: Path) -> None:
        subprocess.run(["tesseract", str(path), "-", "-l", "eng", "--dpi", str(DPI)],
                       env=env, check=True, capture_output=True)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(processes) as pool:
        list(pool.map(one, paths))
    return time.perf_counter() - started


# --- our pipeline ------------------------------------------------------------------------------


def pipeline(scans: list[Path], warmup: Path, storage: Path) -> tuple[float, float, list[str]]:
    """(job seconds, OCR stage seconds, stored page texts) over all `scans`."""
    from bench.documents import run_pipeline

    seconds = ocr_seconds = 0.0
    texts: list[str] = []
    for scan in scans:
        out = asyncio.run(run_pipeline(scan, warmup, NO_AI))
        seconds += out["seconds"]
        ocr_seconds += out["timings"]["ocr"]
        pages = (storage / "documents" / "doc_bench" / "pages.jsonl").read_text().splitlines()
        texts += [_text_of(line) for line in pages]
    return seconds, ocr_seconds, texts


def _text_of(line: str) -> str:
    from heavylift.documents.extract import Page

    return Page.model_validate_json(line).text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12, help="pages per PDF")
    parser.add_argument("--cpu-workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    scratch_dir = tempfile.TemporaryDirectory(prefix="hl-bench-ocr-")
    scratch = Path(scratch_dir.name)
    storage = scratch / "storage"
    # Before anything loads the settings (cached): the pipeline's storage and pool size.
    os.environ.update({"STORAGE_URL": f"file://{storage}", "CPU_WORKERS": str(args.cpu_workers),
                       "LOG_LEVEL": "WARNING", "OCR_DPI": str(DPI)})
    from heavylift.documents.extract import extract_pages
    from tests.pdf_fixtures import real_manuals, rendered_pages, scanned_pdf

    manuals = real_manuals()
    sources = [manuals / "fullrefman.pdf", manuals / "R-intro.pdf"]
    scans, images, truths = [], [], []
    for source in sources:
        text_layer = extract_pages(source).pages
        numbers = spread(len(text_layer), args.pages)
        truths.append([text_layer[number - 1].text for number in numbers])
        images += rendered_pages(source, numbers, DPI)
        scans.append(scanned_pdf(source, numbers, scratch / f"scan-{source.stem}.pdf"))
    warmup = scanned_pdf(sources[1], [1], scratch / "warmup.pdf")
    total = len(images)
    print(f"{total} pages ({args.pages} each of {', '.join(s.name for s in sources)}) at {DPI} "
          f"dpi, CPU_WORKERS={args.cpu_workers}, {os.cpu_count()} CPUs\n")

    seconds, ocr_seconds, texts = pipeline(scans, warmup, storage)
    raw = raw_tesserocr(images, args.cpu_workers)
    cli = raw_cli(images, args.cpu_workers, scratch)
    print("| run | pages | seconds | pages/s | vs raw tesserocr |")
    print("|---|---:|---:|---:|---:|")
    for name, took in [("raw tesserocr (pre-rendered, recognition only)", raw),
                       ("raw tesseract CLI, a process per page", cli),
                       ("pipeline: whole job (render + OCR + extract, chunk, store)", seconds),
                       ("  of which the ocr stage", ocr_seconds)]:
        print(f"| {name} | {total} | {took:.1f} | {total / took:.2f} | {raw / took:.2f}x |")
    print("\n| scanned PDF | pages | words in the text layer | recall |")
    print("|---|---:|---:|---:|")
    start = 0
    for source, truth in zip(sources, truths, strict=True):
        recognised = texts[start:start + len(truth)]
        start += len(truth)
        count = sum(words("\n".join(truth)).values())
        print(f"| {source.name} | {len(truth)} | {count} | {recall(truth, recognised):.1%} |")
    every = [page for truth in truths for page in truth]
    print(f"| all | {total} | {sum(words(chr(10).join(every)).values())} | "
          f"{recall(every, texts):.1%} |")
    scratch_dir.cleanup()


if __name__ == "__main__":
    main()
