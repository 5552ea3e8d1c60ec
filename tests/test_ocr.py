"""OCR (issue 14) with real Tesseract: scans made by rendering pages of R's manuals (real text
PDFs) at 200 dpi, through real worker processes, real Redis, file:// storage and the HTTP API."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from heavylift.documents.detect import DocumentType
from heavylift.documents.errors import CorruptDocumentError
from heavylift.documents.extract import extract_pages
from heavylift.documents.job import UploadOptions
from heavylift.documents.ocr import OcrLanguageError, OcrTimeoutError, ocr_page
from heavylift.queue import BlockingQueues
from heavylift.settings import Settings
from heavylift.storage import ObjectStore, open_store
from local.launch import WorkerProcess
from tests.api_server import start_api
from tests.doc_jobs import check_completed, manifest, outputs, queue_document, wait_finished
from tests.pdf_fixtures import (
    blank_scanned_pdf,
    real_manuals,
    scanned_image,
    scanned_mixed_pdf,
    scanned_pdf,
)

StartWorker = Callable[..., WorkerProcess]
TESSDATA = Path("/usr/share/tesseract-ocr/5/tessdata")
AI = UploadOptions(useAI=True)
# R-intro pages of dense prose, code and lists: what a scanned manual holds.
PAGES = [10, 11, 12, 13]


@pytest.fixture(scope="module", autouse=True)
def tesseract_data() -> Path:
    """Tesseract's English data, installed from Debian if the machine lacks it."""
    if not (TESSDATA / "eng.traineddata").is_file():
        assert shutil.which("apt-get"), "Tesseract's data comes from Debian: needs apt-get"
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "tesseract-ocr", "tesseract-ocr-eng"],
                       check=True, env=env, timeout=600)
    return TESSDATA


@pytest.fixture(scope="module")
def manual() -> Path:
    return real_manuals() / "R-intro.pdf"


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    return open_store(settings.storage_url, settings)


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9]+", text.lower()))


def recall(truth: str, recognised: str) -> float:
    """Share of the text layer's words (with repeats) that OCR recovered."""
    expected = words(truth)
    return sum((expected & words(recognised)).values()) / sum(expected.values())


def text_layer(pdf: Path, numbers: list[int]) -> list[str]:
    pages = extract_pages(pdf).pages
    return [pages[number - 1].text for number in numbers]


def stored_pages(store: ObjectStore, document_id: str) -> list[dict[str, Any]]:
    lines = outputs(store, document_id)["pages.jsonl"].decode().splitlines()
    return [json.loads(line) for line in lines]


def test_scanned_mixed_and_blank_pdfs_through_a_real_worker(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    manual: Path, tmp_path: Path,
) -> None:
    scanned = scanned_pdf(manual, PAGES[:2], tmp_path / "scanned.pdf")
    mixed = scanned_mixed_pdf(manual, PAGES, tmp_path / "mixed.pdf")
    blank = blank_scanned_pdf(tmp_path / "blank.pdf", pages=2)
    assert extract_pages(scanned).needs_ocr == [1, 2]  # no text layer at all
    worker = start_worker(STORAGE_URL=settings.storage_url, CPU_WORKERS="2")
    scan_job = queue_document(queues, store, settings, scanned, "scanned.pdf", options=AI)
    mixed_job = queue_document(queues, store, settings, mixed, "mixed.pdf", options=AI)
    blank_job = queue_document(queues, store, settings, blank, "blank.pdf", options=AI)

    seen: list[float] = []
    stored = check_completed(store, wait_finished(queues, scan_job.job_id, 120, seen))
    assert seen == sorted(seen) and seen[-1] == 100, seen
    assert stored["pagesNeedingOcr"] == [1, 2]
    ocr = stored["ocr"]
    assert [page["page"] for page in ocr["pages"]] == [1, 2]
    assert ocr["languages"] == "eng" and ocr["dpi"] == 200 and ocr["engine"].startswith("tess")
    assert all(page["confidence"] >= 80 and page["chars"] > 1000 for page in ocr["pages"]), ocr
    assert ocr["meanConfidence"] >= 80
    assert stored["counts"]["ocrPages"] == stored["counts"]["textPages"] == 2
    assert "ocr" in stored["timings"] and stored["warnings"] == []
    assert stored["counts"]["themes"] > 0 and stored["counts"]["quotes"] > 0
    truth = text_layer(manual, PAGES[:2])
    pages = stored_pages(store, scan_job.document_id)
    for original, page in zip(truth, pages, strict=True):
        assert recall(original, page["text"]) >= 0.95, page["text"][:300]
    assert "Chapter 1: Introduction and preliminaries" in pages[0]["text"]

    mixed_stored = check_completed(store, wait_finished(queues, mixed_job.job_id, 120))
    assert mixed_stored["pagesNeedingOcr"] == [2, 4]
    assert [page["page"] for page in mixed_stored["ocr"]["pages"]] == [2, 4]  # only the scans
    mixed_pages = stored_pages(store, mixed_job.document_id)
    assert [page["text"] for page in mixed_pages[::2]] == text_layer(manual, PAGES[::2])
    for original, page in zip(text_layer(manual, PAGES[1::2]), mixed_pages[1::2], strict=True):
        assert recall(original, page["text"]) >= 0.95

    failed = wait_finished(queues, blank_job.job_id, 120)
    assert failed.state == "failed" and failed.attemptsMade == 1, failed
    assert failed.failedReason == "No text found, even after OCR of 2 pages."
    blank_manifest = manifest(store, blank_job.document_id)
    assert blank_manifest["status"] == "FAILED"
    assert blank_manifest["error"]["message"] == failed.failedReason
    assert [page["confidence"] for page in blank_manifest["ocr"]["pages"]] == [0, 0]
    assert worker.metric("heavylift_document_ocr_pages_total") == 2 + 2 + 2


def test_png_and_multipage_tiff_uploads_through_the_http_api(
    redis_url: str, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    manual: Path, tmp_path: Path,
) -> None:
    png = scanned_image(manual, [PAGES[0]], tmp_path / "page.png")
    tiff = scanned_image(manual, PAGES[1:3], tmp_path / "pages.tiff")
    api = start_api({"REDIS_URL": redis_url, "STORAGE_URL": settings.storage_url}, tmp_path)
    try:
        start_worker(STORAGE_URL=settings.storage_url, CPU_WORKERS="2")
        # The names lie; the bytes decide (PNG and TIFF magic).
        files = [("files", ("scan.pdf", png.read_bytes())),
                 ("files", ("scan-2.dat", tiff.read_bytes()))]
        response = api.session.post(api.url("/api/documents/async-upload"), files=files,
                                    timeout=60)
        assert response.status_code == 202, response.text
        jobs = response.json()["jobs"]
        finished = [_wait_api_job(api, job["jobId"]) for job in jobs]
        for job in finished:
            assert job["state"] == "completed", job
            assert job["result"]["chunks"] > 0
        png_manifest, tiff_manifest = (
            api.session.get(api.url(f"/api/documents/{job['result']['documentId']}"),
                            timeout=10).json()
            for job in finished
        )
        assert png_manifest["documentType"] == "image" and png_manifest["pageCount"] == 1
        assert [page["page"] for page in tiff_manifest["ocr"]["pages"]] == [1, 2]
        assert tiff_manifest["pageCount"] == 2 and tiff_manifest["counts"]["textPages"] == 2
        tiff_pages = stored_pages(store, tiff_manifest["documentId"])
        for original, page in zip(text_layer(manual, PAGES[1:3]), tiff_pages, strict=True):
            assert recall(original, page["text"]) >= 0.95

        signed = api.session.post(api.url("/api/documents/upload-url"), json={
            "filename": "scan.tiff", "size": tiff.stat().st_size, "contentType": "image/tiff"},
            timeout=10)
        assert signed.status_code == 200, signed.text
        gif = api.session.post(api.url("/api/documents/async-upload"),
                               files=[("files", ("x.gif", b"GIF89a" + bytes(64)))], timeout=10)
        assert gif.status_code == 415 and "PNG, JPEG, TIFF" in gif.json()["error"]
    finally:
        api.stop()


def _wait_api_job(api: Any, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.session.get(api.url("/api/documents/async-upload"),
                                              params={"jobId": job_id}, timeout=10).json()
        if job["state"] in ("completed", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished within {timeout}s")


def test_a_missing_ocr_language_stops_the_worker_at_start(redis_url: str) -> None:
    worker = WorkerProcess(redis_url, OCR_LANGUAGES="eng+xyz")
    try:
        assert worker.wait_exit(30) == 2
    finally:
        worker.stop()
    output = "".join(worker.raw)
    assert "invalid setting OCR_LANGUAGES" in output and "no language data for xyz" in output
    assert "tesseract-ocr-xyz" in output, output  # the package to install


def test_with_ocr_off_a_scan_fails_saying_so(
    queues: BlockingQueues, settings: Settings, store: ObjectStore, start_worker: StartWorker,
    manual: Path, tmp_path: Path,
) -> None:
    # Off, OCR needs no language data: the worker starts although xyz has none.
    start_worker(STORAGE_URL=settings.storage_url, OCR_ENABLED="false", OCR_LANGUAGES="eng+xyz")
    scan = scanned_pdf(manual, PAGES[:2], tmp_path / "scan.pdf")
    job = queue_document(queues, store, settings, scan, "scan.pdf", options=AI)
    failed = wait_finished(queues, job.job_id)
    assert failed.state == "failed" and failed.attemptsMade == 1, failed
    assert failed.failedReason == (
        "The document has no text layer (2 pages need OCR) and OCR is off (OCR_ENABLED=false).")
    stored = manifest(store, job.document_id)
    assert stored["ocr"] is None and stored["pagesNeedingOcr"] == [1, 2]


def test_ocr_task_errors_are_clear(manual: Path, tmp_path: Path) -> None:
    scan = scanned_pdf(manual, PAGES[:1], tmp_path / "scan.pdf")
    run = {"dpi": 200, "tessdata": TESSDATA, "page_timeout_s": 60.0}
    with pytest.raises(OcrLanguageError, match=r"no language data for deu .* tesseract-ocr-deu"):
        ocr_page(scan, DocumentType.PDF, 1, languages="eng+deu", **run)
    with pytest.raises(OcrTimeoutError, match=r"page 1 .* OCR_PAGE_TIMEOUT_S=0\.01 s"):
        ocr_page(scan, DocumentType.PDF, 1, languages="eng", **{**run, "page_timeout_s": 0.01})
    read = ocr_page(scan, DocumentType.PDF, 1, languages="eng", **run)  # the same API, again
    assert read.page.confidence >= 80 and read.text.text.startswith("Chapter 1")

    tiff = scanned_image(manual, PAGES[:3], tmp_path / "three.tiff")
    extracted = extract_pages(tiff)
    assert (extracted.document_type, extracted.engine) == (DocumentType.IMAGE, "image")
    assert extracted.page_count == 3 and extracted.needs_ocr == [1, 2, 3]
    third = ocr_page(tiff, DocumentType.IMAGE, 3, languages="eng", **run)
    assert recall(text_layer(manual, PAGES[2:3])[0], third.text.text) >= 0.95
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(scanned_image(manual, [10], tmp_path / "whole.png").read_bytes()[:5000])
    with pytest.raises(CorruptDocumentError):
        ocr_page(truncated, DocumentType.IMAGE, 1, languages="eng", **run)
