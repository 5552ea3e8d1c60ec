"""The upload page and /admin/queues in real headless Chromium against the real api function and
worker: uploads (multipart and signed URL) with live progress, retry, pause/resume and clean."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from heavylift.queue import Priority, QueueName
from tests.api_server import API_KEY
from tests.browser import browser_fixture, screenshot, text, wait_until  # noqa: F401 - fixture
from tests.live_stack import Stack, stack_fixture  # noqa: F401 - fixture
from tests.pdf_fixtures import text_pdf

DIAG = QueueName.DIAGNOSTICS


@pytest.fixture
def pdf(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A PDF of its own per test (the same bytes twice would be answered with the first job)."""
    pages = [[f"Chapter {n}: queues, workers and progress bars", f"Test {request.node.name}."]
             for n in range(1, 13)]
    return text_pdf(tmp_path / "operations-manual.pdf", pages)


def find(driver: webdriver.Chrome, css: str) -> object:
    return driver.find_element(By.CSS_SELECTOR, css)


def upload_through_the_page(driver: webdriver.Chrome, stack: Stack, pdf: Path,
                            force_signed: bool) -> dict[str, object]:
    driver.get(stack.api.url(f"/upload?key={API_KEY}"))
    assert driver.current_url == stack.api.url("/upload")  # the key moved into a cookie
    if force_signed:
        driver.execute_script(
            "document.getElementById('upload-form').dataset.signedThreshold = '0'")
    driver.find_element(By.ID, "files").send_keys(str(pdf))
    driver.find_element(By.NAME, "generateEmbeddings").click()
    driver.find_element(By.ID, "upload").click()
    card = ".upload.done"
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, card) or
               d.find_elements(By.CSS_SELECTOR, ".upload.failed"), name="upload")
    status = text(driver.find_element(By.CSS_SELECTOR, ".upload .status"))
    assert driver.find_elements(By.CSS_SELECTOR, card), status
    bar = driver.find_element(By.CSS_SELECTOR, f"{card} progress")
    assert bar.get_attribute("value") == "100"
    assert "Completed:" in status and "chunks" in status and "themes" in status
    manifest_url = driver.find_element(By.CSS_SELECTOR, f"{card} a.manifest").get_attribute("href")
    manifest: dict[str, object] = stack.api.session.get(str(manifest_url), timeout=5).json()
    assert manifest["status"] == "COMPLETED" and manifest["filename"] == pdf.name
    return manifest


def requested_paths(driver: webdriver.Chrome) -> set[str]:
    """Paths the page requested (XHR, fetch, EventSource), from the browser's resource timing."""
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    return {urlsplit(url).path for url in urls}


# `stack` before `browser` in every test: the browser (and its open event streams) goes first.
def test_upload_page_multipart_shows_progress_and_the_result(
    stack: Stack, browser: webdriver.Chrome, pdf: Path
) -> None:
    manifest = upload_through_the_page(browser, stack, pdf, force_signed=False)
    assert manifest["options"] == {"useAI": False, "generateSummary": True,
                                   "generateEmbeddings": True}
    screenshot(browser, "upload-multipart-done")
    paths = requested_paths(browser)
    assert "/api/documents/async-upload" in paths and "/api/storage/upload" not in paths
    assert f"/api/jobs/{manifest['jobId']}/events" in paths


def test_upload_page_signed_url_path(stack: Stack, browser: webdriver.Chrome, pdf: Path) -> None:
    manifest = upload_through_the_page(browser, stack, pdf, force_signed=True)
    screenshot(browser, "upload-signed-done")
    paths = requested_paths(browser)
    assert {"/api/documents/upload-url", "/api/storage/upload"} <= paths
    assert "/api/documents/async-upload" not in paths
    assert f"/api/jobs/{manifest['jobId']}/events" in paths


def test_pages_ask_for_the_key(stack: Stack) -> None:
    page = requests.get(stack.api.url("/admin/queues"), timeout=5)
    assert page.status_code == 401 and "API key required" in page.text
    wrong = requests.get(stack.api.url("/admin/queues?key=wrong"), timeout=5)
    assert wrong.status_code == 401 and "invalid API key" in wrong.text
    moved = requests.get(stack.api.url(f"/admin/queues?key={API_KEY}&x=1"), timeout=5,
                         allow_redirects=False)
    assert moved.status_code == 303 and moved.headers["Location"] == "/admin/queues?x=1"
    cookie = moved.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert requests.get(stack.api.url("/web/admin.js"), timeout=5).status_code == 200
    assert requests.get(stack.api.url("/web/../settings.py"), timeout=5).status_code == 404


def open_dashboard(driver: webdriver.Chrome, stack: Stack, fragment: str) -> None:
    driver.get(stack.api.url(f"/admin/queues?key={API_KEY}#{fragment}"))
    wait_until(driver, lambda d: text(d.find_element(By.ID, "live")) == "live", name="live")


def overview_cell(driver: webdriver.Chrome, queue: str, state: str) -> str:
    return text(driver.find_element(
        By.CSS_SELECTOR, f'#overview tr[data-queue="{queue}"] .count[data-state="{state}"]'))


def test_dashboard_retries_a_failed_job_and_watches_it_complete(
    stack: Stack, browser: webdriver.Chrome
) -> None:
    job_id = stack.queues.run(lambda q: q.add(DIAG, "flaky", {"failures": 3}, Priority.REGULAR))
    stack.wait_state(DIAG, job_id, "failed")
    open_dashboard(browser, stack, "queue=diagnostics&state=failed")
    row = f'#jobs tr[data-id="{job_id}"]'
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), name="failed-row")
    browser.find_element(By.CSS_SELECTOR, row).click()
    wait_until(browser, lambda d: text(d.find_element(By.ID, "d-state")) == "failed",
               name="detail")
    assert "flaky failure 3 of 3" in text(browser.find_element(By.ID, "d-fields"))
    assert "RuntimeError" in browser.find_element(By.ID, "d-stack").get_attribute("textContent")
    screenshot(browser, "dashboard-failed-job")
    browser.find_element(By.ID, "d-retry").click()
    wait_until(browser, lambda d: text(d.find_element(By.ID, "d-state")) == "completed",
               name="retried")
    assert '"starts": 4' in text(browser.find_element(By.ID, "d-result"))
    assert browser.find_element(By.ID, "d-progress").get_attribute("value") == "100"
    # The failed list and the counts follow without a reload.
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, row), name="row-gone")
    assert overview_cell(browser, "diagnostics", "failed") == "0"
    screenshot(browser, "dashboard-retried-job")


def test_dashboard_pause_resume_and_clean(stack: Stack, browser: webdriver.Chrome) -> None:
    open_dashboard(browser, stack, "queue=diagnostics&state=waiting")
    browser.find_element(By.ID, "pause").click()
    paused = '#overview tr[data-queue="diagnostics"] .badge'
    wait_until(browser, lambda d: text(d.find_element(By.CSS_SELECTOR, paused)) == "paused",
               name="paused")
    assert stack.queues.run(lambda q: q.is_paused(DIAG))
    completed = int(overview_cell(browser, "diagnostics", "completed"))
    job_id = stack.queues.run(lambda q: q.add(DIAG, "sleep", {"seconds": 1}, Priority.REGULAR))
    # Counts move without a reload; the waiting list shows the job.
    wait_until(browser, lambda d: overview_cell(d, "diagnostics", "waiting") == "1", name="wait")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-id="{job_id}"]'),
               name="waiting-row")
    screenshot(browser, "dashboard-paused")
    browser.find_element(By.ID, "resume").click()
    wait_until(browser, lambda d: int(overview_cell(d, "diagnostics", "completed")) > completed,
               name="resumed")
    assert overview_cell(browser, "diagnostics", "waiting") == "0"
    assert not stack.queues.run(lambda q: q.is_paused(DIAG))

    form = browser.find_element(By.ID, "clean-form")
    Select(form.find_element(By.NAME, "state")).select_by_visible_text("completed")
    browser.find_element(By.ID, "clean").click()
    browser.switch_to.alert.accept()
    wait_until(browser, lambda d: overview_cell(d, "diagnostics", "completed") == "0",
               name="cleaned")
    assert "completed jobs removed" in text(browser.find_element(By.ID, "message"))
    assert stack.queues.run(lambda q: q.counts(DIAG)).completed == 0
    screenshot(browser, "dashboard-cleaned")
