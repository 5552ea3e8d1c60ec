"""Extraction on real manuals nobody here wrote, generated PDFs, and broken or hostile files."""

from __future__ import annotations

import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from heavylift.documents.detect import DocumentType, detect_type
from heavylift.documents.errors import (
    CorruptDocumentError,
    DocumentError,
    EmptyDocumentError,
    PasswordProtectedError,
    UnsupportedTypeError,
)
from heavylift.documents.extract import ExtractResult, PdfEngine, extract_pages
from heavylift.documents.pdf_pdfium import open_pdfium
from heavylift.text import normalize_text
from tests.pdf_fixtures import encrypted_copy, mixed_pdf, real_manuals, text_pdf

ENGINES: tuple[PdfEngine, ...] = ("pypdfium2", "pypdf")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad]")


@pytest.fixture(scope="module")
def manuals() -> Path:
    return real_manuals()


@pytest.fixture(scope="module")
def small_manual(manuals: Path) -> Path:
    return manuals / "R-data.pdf"


def _words(result: ExtractResult) -> set[str]:
    return set(re.findall(r"\w+", " ".join(page.text for page in result.pages).lower()))


@pytest.mark.parametrize("engine", ENGINES)
def test_real_manual_pages_are_extracted_and_clean(manuals: Path, engine: PdfEngine) -> None:
    result = extract_pages(manuals / "R-intro.pdf", engine)

    assert result.engine == engine
    assert result.document_type is DocumentType.PDF
    assert result.page_count == len(result.pages) == 113
    assert [page.number for page in result.pages] == list(range(1, 114))
    assert result.needs_ocr == []
    text = "\n".join(page.text for page in result.pages)
    assert all(page.chars == len(page.text) for page in result.pages)
    assert "An Introduction to R" in text
    assert not _CONTROL.search(text), "control characters or soft hyphens survived"
    assert "\r" not in text
    # pdfium splits "packages" at a line end as "pack\x02ages": the halves must be joined.
    assert "packages" in text and "pack ages" not in text


def test_both_engines_agree_on_the_words(small_manual: Path) -> None:
    fast = extract_pages(small_manual, "pypdfium2")
    pure = extract_pages(small_manual, "pypdf")

    assert fast.page_count == pure.page_count
    words_fast, words_pure = _words(fast), _words(pure)
    assert len(words_fast & words_pure) / len(words_fast | words_pure) > 0.9


def test_reopening_the_document_changes_nothing(small_manual: Path) -> None:
    # 0 MB: reopened whenever the process grew at all (it looks every 10 pages).
    every_page = [page.text for page in open_pdfium(small_manual, reopen_mb=0).pages]
    once = [page.text for page in open_pdfium(small_manual, reopen_mb=10_000).pages]
    assert every_page == once


def test_progress_rises_to_one(small_manual: Path) -> None:
    seen: list[float] = []
    extract_pages(small_manual, report=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert 10 <= len(seen) <= 41  # whole percents at most, not one pipe message per page


def test_scanned_pages_are_flagged_for_ocr(tmp_path: Path) -> None:
    pdf = mixed_pdf(tmp_path / "mixed.pdf")
    for engine in ENGINES:
        result = extract_pages(pdf, engine)
        assert result.page_count == 4
        assert result.needs_ocr == [2], engine  # the blank page 3 has nothing to recognise
        assert "First page" in result.pages[0].text and result.pages[1].text.strip() == ""


def test_generated_text_pdf_round_trips(tmp_path: Path) -> None:
    pdf = text_pdf(tmp_path / "gen.pdf", [["Alpha line one", "Alpha line two"], ["Beta page"]])
    for engine in ENGINES:
        pages = extract_pages(pdf, engine).pages
        assert "Alpha line one" in pages[0].text and "Beta page" in pages[1].text


@pytest.mark.parametrize("algorithm", ["AES-256", "RC4-128"])
@pytest.mark.parametrize("engine", ENGINES)
def test_encrypted_pdfs(
    small_manual: Path, tmp_path: Path, algorithm: str, engine: PdfEngine
) -> None:
    locked = encrypted_copy(small_manual, tmp_path / "locked.pdf", "s3cret", algorithm)
    with pytest.raises(PasswordProtectedError, match="password"):
        extract_pages(locked, engine)

    # Encrypted with an empty user password: viewers open it without asking, so must we.
    opened = extract_pages(
        encrypted_copy(small_manual, tmp_path / "open.pdf", "", algorithm), engine
    )
    assert opened.page_count == 41
    assert "R Data Import/Export" in opened.pages[0].text


@pytest.mark.parametrize("engine", ENGINES)
def test_broken_files_raise_clear_errors(
    small_manual: Path, tmp_path: Path, engine: PdfEngine
) -> None:
    data = small_manual.read_bytes()
    cases: dict[str, tuple[bytes, type[DocumentError]]] = {
        "truncated.pdf": (data[: len(data) // 2], CorruptDocumentError),
        "garbage.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 64, CorruptDocumentError),
        "zero.pdf": (b"", EmptyDocumentError),
        "broken.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), CorruptDocumentError),
        "archive.pdf": (b"PK\x03\x04" + bytes(64), UnsupportedTypeError),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(expected) as caught:
            extract_pages(path, engine)
        assert str(caught.value), name  # a user-facing message, never empty


def test_plain_text_and_markdown_skip_pdf_parsing(tmp_path: Path) -> None:
    text = tmp_path / "notes.pdf"  # the extension lies; the content decides
    text.write_text("First page line.\n\fSecond page, caf\u00e9 \ufb01ne.\x07\n", encoding="utf-8")
    result = extract_pages(text)
    assert (result.document_type, result.engine) == (DocumentType.TEXT, "text")
    assert [page.text for page in result.pages] == [
        "First page line.\n",
        "Second page, café fine.\n",
    ]

    markdown = tmp_path / "readme.txt"
    markdown.write_text("# Title\n\nSome *text* and a [link](http://x.y).\n\n- item\n")
    assert detect_type(markdown) is DocumentType.MARKDOWN
    assert extract_pages(markdown).page_count == 1

    prose = tmp_path / "prose.md"
    prose.write_text("Just prose - with a dash.\n")
    assert detect_type(prose) is DocumentType.TEXT

    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\f\n")
    with pytest.raises(EmptyDocumentError):
        extract_pages(blank)

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(UnsupportedTypeError):
        detect_type(latin1)


def test_normalize_text() -> None:
    raw = "pack\x02ages and exam\x02\r\nple, soft\u00adhyphen\r\nline\x0c\x14 \ufb01x\t1\u2002m"
    assert normalize_text(raw) == "packages and example, softhyphen\nline fix\t1 m"
    # ASCII takes a faster path: the same result as the general one, control by control.
    controls = "".join(map(chr, range(0x20))) + "\x7f"
    ascii_page = f"a\x02\r\nb {controls} c\r d\x02e"
    assert normalize_text(ascii_page) == "ab \t\n\n c\n de"  # its \r became a \n
    assert normalize_text(ascii_page + "\u00e9") == normalize_text(ascii_page) + "\u00e9"


def test_results_and_errors_cross_a_process_pool(small_manual: Path, tmp_path: Path) -> None:
    zero = tmp_path / "zero.pdf"
    zero.write_bytes(b"")
    with ProcessPoolExecutor(max_workers=1) as pool:
        result = pool.submit(extract_pages, small_manual).result()
        failed = pool.submit(extract_pages, zero)
        with pytest.raises(EmptyDocumentError, match="empty"):
            failed.result()
    assert pickle.loads(pickle.dumps(result)) == result
    assert result.page_count == 41
