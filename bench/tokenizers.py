"""Tokenizer benchmark: our tokenizer (gigatoken) beside tiktoken on a real document's pages.

    python -m bench.tokenizers [--pdf PATH] [--encoding cl100k_base]

Each row runs in a fresh process, as the chunk stage does (a tokenizer per task): load, then
encode every page once to an int32 array, as the chunk stage needs them (cold: gigatoken's
piece cache starts empty), then once more (warm).
CPU-s of that process; "same ids" compares every page's ids with tiktoken's `encode_ordinary`.
Default PDF: R's fullrefman.pdf (2,415 pages, from Debian's r-doc-pdf, fetched by the tests'
helper when missing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

ROWS = ("tiktoken", "heavylift (gigatoken)")


def child(row: str, pages_file: Path, encoding: str) -> dict[str, Any]:
    from heavylift.text.encoding import TokenizerEncoding
    from heavylift.text.tokenizer import load_tokenizer
    from tests.tiktoken_reference import reference

    texts = json.loads(pages_file.read_text())
    name = cast(TokenizerEncoding, encoding)  # checked by argparse's choices
    started = time.process_time()
    if row == "tiktoken":
        reference_encoding = reference(name)

        def encode(text: str) -> npt.NDArray[np.int32]:  # as the chunk stage needs them
            return np.asarray(reference_encoding.encode_ordinary(text), dtype=np.int32)
    else:
        encode = load_tokenizer(name).encode
    load = time.process_time() - started
    started = time.process_time()
    ids = [encode(text) for text in texts]
    cold = time.process_time() - started
    started = time.process_time()
    for text in texts:
        encode(text)
    warm = time.process_time() - started
    return {"load": load, "cold": cold, "warm": warm, "tokens": sum(map(len, ids)),
            "ids": [page.tolist() for page in ids]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf", type=Path, help="default: R's fullrefman.pdf")
    parser.add_argument("--encoding", default="cl100k_base",
                        choices=["cl100k_base", "o200k_base"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pages", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.pages, args.encoding)))
        return
    from heavylift.documents.extract import extract_pages
    from tests.pdf_fixtures import real_manuals

    pdf = args.pdf or real_manuals() / "fullrefman.pdf"
    texts = [page.text for page in extract_pages(pdf).pages]
    with tempfile.TemporaryDirectory() as scratch:
        pages_file = Path(scratch) / "pages.json"
        pages_file.write_text(json.dumps(texts))
        outs = [json.loads(subprocess.run(
            [sys.executable, "-m", "bench.tokenizers", "--child", row, "--pages",
             str(pages_file), "--encoding", args.encoding],
            check=True, capture_output=True, text=True).stdout) for row in ROWS]
    print(f"\n{pdf.name}: {len(texts)} pages, {sum(map(len, texts)):,} characters, "
          f"{args.encoding}; CPU-s of one fresh process per row\n")
    print("| tokenizer | load | encode every page (cold) | again (warm) | "
          "cold vs tiktoken | tokens | same ids |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for row, out in zip(ROWS, outs, strict=True):
        print(f"| {row} | {out['load']:.2f} | {out['cold']:.3f} | {out['warm']:.3f} | "
              f"{outs[0]['cold'] / out['cold']:.1f}x | {out['tokens']:,} | "
              f"{'yes' if out['ids'] == outs[0]['ids'] else 'NO'} |")


if __name__ == "__main__":
    main()
