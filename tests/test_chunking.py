"""Token-exact chunks with page ranges and stable ids; the tokenizer loads with no network."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from heavylift.ai.local import hashing_embeddings
from heavylift.documents.chunk import ChunkTask, chunk_jsonl, chunk_when_ready, signal_pages
from heavylift.documents.chunker import chunk_pages
from heavylift.documents.embed import EmbeddingIndex, VectorFiles
from heavylift.documents.extract import Page, extract_pages, extract_to_jsonl
from heavylift.documents.jsonl import read_jsonl
from heavylift.text import Chunk
from heavylift.text.encoding import TokenizerEncoding
from heavylift.text.tokenizer import install_shipped_encoding
from tests.pdf_fixtures import real_manuals
from tests.tiktoken_reference import reference

# The sha256 tiktoken itself checks for each file (tiktoken_ext/openai_public.py).
TIKTOKEN_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


@pytest.fixture(scope="module")
def manual_pages() -> list[Page]:
    return extract_pages(real_manuals() / "R-intro.pdf").pages


def _pages(*texts: str) -> list[Page]:
    return [Page(number=n, text=t, chars=len(t)) for n, t in enumerate(texts, start=1)]


def _joined(pages: list[Page]) -> str:
    return "\n\n".join(page.text.strip() for page in pages if page.text.strip())


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_counts_are_exact_and_chunks_cover_the_text(
    manual_pages: list[Page], encoding: TokenizerEncoding
) -> None:
    enc = reference(encoding)
    chunks = chunk_pages(manual_pages, document_id="doc_r", encoding=encoding)

    assert len(chunks) > 100
    for chunk in chunks:
        assert len(enc.encode_ordinary(chunk.text)) == chunk.tokens <= 500
    # Chunk by chunk, minus the overlap, the text is exactly the document's.
    rebuilt = chunks[0].text
    for previous, chunk in itertools.pairwise(chunks):
        shared = enc.decode(
            enc.encode_ordinary(chunk.text)[: previous.end_token - chunk.start_token]
        )
        assert previous.text.endswith(shared) and chunk.text.startswith(shared)
        rebuilt += chunk.text[len(shared) :]
    assert rebuilt == _joined(manual_pages)
    # Every page a chunk reaches into starts at its offset in the chunk's text.
    texts = {page.number: page.text.strip() for page in manual_pages}
    crossings = [(chunk, number, offset) for chunk in chunks
                 for number, offset in chunk.page_offsets[1:]]
    assert len(crossings) > 20
    for chunk, number, offset in crossings:
        rest, page = chunk.text[offset:], texts[number]
        shown = min(len(rest), len(page), 200)
        assert rest[:shown] == page[:shown] and shown, (chunk.id, number)


def test_overlap_is_respected(manual_pages: list[Page]) -> None:
    chunks = chunk_pages(manual_pages, document_id="doc_r", max_tokens=200, overlap=40)
    overlaps = [a.end_token - b.start_token for a, b in itertools.pairwise(chunks)]
    assert min(overlaps) >= 40 and max(overlaps) <= 60
    assert all(chunk.tokens <= 200 for chunk in chunks)
    no_overlap = chunk_pages(manual_pages, document_id="doc_r", max_tokens=200, overlap=0)
    assert all(a.end_token == b.start_token for a, b in itertools.pairwise(no_overlap))


def test_page_ranges_and_offsets() -> None:
    pages = _pages(
        *(" ".join(f"page{n}marker sentence number {i}." for i in range(60)) for n in range(1, 6))
    )
    pages.insert(2, Page(number=99, text="  \n", chars=3))  # a page without text is skipped
    chunks = chunk_pages(pages, document_id="doc_p", max_tokens=120, overlap=10)

    for chunk in chunks:
        for number in range(1, 6):
            offset = chunk.text.find(f"page{number}marker")
            if offset >= 0:
                assert chunk.first_page <= number <= chunk.last_page
                assert chunk.page_at(offset) == number
    assert chunks[0].first_page == 1 and chunks[-1].last_page == 5
    assert any(chunk.first_page != chunk.last_page for chunk in chunks)
    assert all(99 not in (c.first_page, c.last_page) for c in chunks)


def test_ids_are_stable_and_unique(manual_pages: list[Page]) -> None:
    first = chunk_pages(manual_pages, document_id="doc_r")
    again = chunk_pages(manual_pages, document_id="doc_r")
    other = chunk_pages(manual_pages, document_id="doc_other")

    assert [c.id for c in first] == [c.id for c in again]
    assert len({c.id for c in first}) == len(first)
    assert first[0].id.startswith("c00001-") and first[0].id != other[0].id


def test_text_without_spaces_still_counts_exactly() -> None:
    enc = reference("cl100k_base")
    pages = _pages("漢字仮名交じり文" * 300, "1234567890" * 200, "word " * 300)
    chunks = chunk_pages(pages, document_id="doc_cjk", max_tokens=100, overlap=10)
    assert all(len(enc.encode_ordinary(c.text)) == c.tokens <= 100 for c in chunks)
    assert all("\ufffd" not in c.text for c in chunks)  # never cut inside a character


def test_edge_cases() -> None:
    assert chunk_pages(_pages("", " \n"), document_id="d") == []
    (single,) = chunk_pages(_pages("Short text."), document_id="d")
    assert isinstance(single, Chunk) and single.text == "Short text." and single.tokens == 3
    with pytest.raises(ValueError, match="overlap"):
        chunk_pages(_pages("x"), document_id="d", max_tokens=50, overlap=50)


@pytest.mark.parametrize("encoding", sorted(TIKTOKEN_SHA256))
def test_shipped_files_are_tiktokens_own(tmp_path: Path, encoding: str) -> None:
    installed = install_shipped_encoding(encoding, tmp_path)
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == TIKTOKEN_SHA256[encoding]


def test_tokenizer_works_offline(tmp_path: Path) -> None:
    """A fresh cache and a dead proxy: plain tiktoken fails to download, ours needs nothing."""
    env = {
        **os.environ,
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "PYTHONPATH": os.pathsep.join(["src", *sys.path]),
    }
    env.pop("no_proxy", None)
    plain = "import tiktoken; tiktoken.reference('cl100k_base')"
    ours = textwrap.dedent(
        """
        from heavylift.documents.chunker import chunk_pages
        from heavylift.documents.extract import Page
        chunks = chunk_pages([Page(number=1, text="hello offline world", chars=19)],
                             document_id="d", encoding="o200k_base")
        print(chunks[0].tokens)
        """
    )
    control = subprocess.run(
        [sys.executable, "-c", plain],
        env={**env, "TIKTOKEN_CACHE_DIR": str(tmp_path / "plain")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert control.returncode != 0, "the network was reachable: this test proves nothing"
    result = subprocess.run(
        [sys.executable, "-c", ours],
        env={**env, "TIKTOKEN_CACHE_DIR": str(tmp_path / "ours")},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


def test_the_chunk_task_stores_each_chunks_own_local_vectors(tmp_path: Path) -> None:
    """For a job with local embeddings the chunk task stores them from the token ids it holds:
    each vector is the one of its chunk's text encoded by tiktoken itself (so every chunk's
    start_token:end_token slice is exactly its text's encoding), in chunk order."""
    pages = tmp_path / "pages.jsonl"
    extract_to_jsonl(real_manuals() / "R-intro.pdf", pages, engine="pypdfium2")
    files = VectorFiles(tmp_path / "embeddings.npy", tmp_path / "embeddings.json")
    outcome = chunk_jsonl(ChunkTask(pages, tmp_path / "chunks.jsonl", document_id="doc_r",
                                    max_tokens=300, overlap=30, encoding="cl100k_base",
                                    vectors=files))
    chunks = read_jsonl(tmp_path / "chunks.jsonl", Chunk)
    vectors = np.load(files.vectors)
    index = EmbeddingIndex.model_validate_json(files.index.read_text())
    assert outcome.summary.chunks == len(chunks) > 100
    assert outcome.embeddings is not None and outcome.embeddings.vectors == len(chunks)
    assert index.chunkIds == [chunk.id for chunk in chunks] and vectors.dtype == np.float32
    enc = reference("cl100k_base")
    expected = hashing_embeddings(
        [np.array(enc.encode_ordinary(chunk.text), dtype=np.int32) for chunk in chunks],
        "cl100k_base")
    assert np.allclose(vectors, expected, atol=1e-6)
    assert chunk_jsonl(ChunkTask(pages, tmp_path / "plain.jsonl", document_id="doc_r",
                                 max_tokens=300, overlap=30,
                                 encoding="cl100k_base")).embeddings is None


def test_a_chunk_task_queued_behind_the_extraction_waits_for_final_pages(tmp_path: Path) -> None:
    """chunk_when_ready starts before its pages exist: once they are final it writes exactly
    what chunk_jsonl does; told they are not (OCR comes first, or extraction failed) it returns
    None at once and writes nothing."""
    extracted = tmp_path / "extracted.jsonl"
    extract_to_jsonl(real_manuals() / "R-intro.pdf", extracted, engine="pypdfium2")

    def task(pages: Path, out: Path) -> ChunkTask:
        return ChunkTask(pages, out, document_id="doc_r", max_tokens=300, overlap=30,
                         encoding="cl100k_base")

    expected = chunk_jsonl(task(extracted, tmp_path / "expected.jsonl"))
    pages, ready, out = tmp_path / "pages.jsonl", tmp_path / "pages.ready", tmp_path / "out.jsonl"
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(chunk_when_ready, ready, task(pages, out))
        time.sleep(0.5)
        assert not waiting.done() and not out.exists()
        pages.write_bytes(extracted.read_bytes())
        signal_pages(ready, final=True)
        assert waiting.result(timeout=60) == expected
    assert out.read_bytes() == (tmp_path / "expected.jsonl").read_bytes()

    stopped, never = tmp_path / "stopped.ready", tmp_path / "never.jsonl"
    signal_pages(stopped, final=False)
    assert chunk_when_ready(stopped, task(tmp_path / "absent.jsonl", never)) is None
    assert not never.exists()
