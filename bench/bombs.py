"""Decompression bomb: raw pypdfium2 beside the worker's capped extraction, side by side.

    python -m bench.bombs [--decoded-gib 4]

The bomb is tests.pdf_fixtures.bomb_pdf (a ~10 KB PDF whose content stream inflates to 4 GiB).
Each row runs in a fresh child; the parent samples the RSS of that child and its descendants.

- raw pypdfium2: open, load page 1, read its text. Uncapped it would take ~5.2 GB; here it runs
  under its own RLIMIT_DATA of RAW_CAP_MB so it cannot eat the machine: it is reported dead.
- ours: `extract_to_jsonl` through a CpuPool as the worker runs it (POOL_MEMORY_MB and the
  PDF_*_DECODED_MB budget from the settings), reporting the error the job would fail with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RAW_CAP_MB = 3072


def run_raw(pdf: Path) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_DATA, (RAW_CAP_MB << 20, RAW_CAP_MB << 20))
    import pypdfium2 as pdfium

    page = pdfium.PdfDocument(pdf)[0]
    return {"outcome": f"completed, {len(page.get_textpage().get_text_range())} chars"}


async def run_ours(pdf: Path, out: Path) -> dict[str, Any]:
    from heavylift.documents.budget import DecodeBudget
    from heavylift.documents.extract import extract_to_jsonl
    from heavylift.runtime.offload import CpuPool
    from heavylift.settings import load_settings

    settings = load_settings()
    pool = CpuPool(1, settings.pool_memory_mb)
    try:
        await pool.run(extract_to_jsonl, pdf, out, engine=settings.pdf_engine,
                       budget=DecodeBudget.of(settings))
        return {"outcome": "completed"}
    except Exception as error:
        return {"outcome": f"failed: {type(error).__name__}: {error}"}
    finally:
        pool.kill()


def measure(kind: str, pdf: Path, env: dict[str, str]) -> dict[str, Any]:
    from bench._rss import PeakRss

    command = [sys.executable, "-m", "bench.bombs", "--child", kind, "--pdf", str(pdf)]
    started = time.perf_counter()
    child = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE,
                             text=True)
    with PeakRss(child.pid, every_s=0.01) as rss:
        stdout, _ = child.communicate(timeout=300)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        out = {"outcome": f"died (exit {child.returncode}) under RLIMIT_DATA={RAW_CAP_MB} MB"}
    else:
        out = json.loads(stdout.strip().splitlines()[-1])
    return {**out, "seconds": seconds, "peak_mb": rss.peak >> 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoded-gib", type=float, default=4.0)
    parser.add_argument("--child", choices=["raw", "ours"])
    parser.add_argument("--pdf", type=Path)
    args = parser.parse_args()
    if args.child == "raw":
        print(json.dumps(run_raw(args.pdf)))
        return
    if args.child == "ours":
        with tempfile.TemporaryDirectory() as scratch:
            print(json.dumps(asyncio.run(run_ours(args.pdf, Path(scratch) / "pages.jsonl"))))
        return
    from tests.pdf_fixtures import bomb_pdf

    with tempfile.TemporaryDirectory(prefix="hl-bomb-") as scratch:
        pdf = bomb_pdf(Path(scratch) / "bomb.pdf", int(args.decoded_gib * (1 << 30)))
        print(f"bomb: {pdf.stat().st_size:,} bytes, content stream inflates to "
              f"{args.decoded_gib:g} GiB")
        print("| run | time to fail (s) | peak RSS, all processes (MB) | outcome |")
        print("|---|---:|---:|---|")
        rows = [("raw pypdfium2, no caps (own RLIMIT_DATA only)", "raw", {}),
                ("ours: pypdfium2 (default)", "ours", {"LOG_LEVEL": "WARNING"}),
                ("ours: PDF_ENGINE=pypdf", "ours", {"PDF_ENGINE": "pypdf"})]
        for name, kind, env in rows:
            row = measure(kind, pdf, env)
            print(f"| {name} | {row['seconds']:.2f} | {row['peak_mb']} | {row['outcome']} |",
                  flush=True)


if __name__ == "__main__":
    main()
