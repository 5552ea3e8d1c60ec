"""The upload page and /admin/queues in real headless Chromium against the real api function and
worker: uploads (multipart and signed URL) with live progress, retry, pause/resume and clean; and
that the pages are safe by construction: hostile URL hashes and stored job fields stay text, the
Content-Security-Policy is strict and normal use never trips it."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from bullmq import Job
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from heavylift.queue import Priority, QueueName, Queues
from tests.api_server import API_KEY, csp_directives
from tests.browser import (  # noqa: F401 - fixture
    browser_fixture,
    console_errors,
    csp_violations,
    screenshot,
    text,
    wait_until,
)
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


def assert_quiet(driver: webdriver.Chrome) -> None:
    """Normal use trips nothing: no console errors (CSP refusals are logged there too, across
    page loads) and no CSP violation on the page now shown."""
    assert console_errors(driver) == []
    assert csp_violations(driver) == []


def upload_through_the_page(driver: webdriver.Chrome, stack: Stack, pdf: Path,
                            force_signed: bool) -> dict[str, object]:
    console_errors(driver)  # drop what earlier tests left in the log
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
    assert_quiet(driver)
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
    console_errors(driver)  # drop what earlier tests left in the log
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
    assert_quiet(browser)


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
    assert_quiet(browser)


# --- safe by construction ------------------------------------------------------------------

# Run as script, it marks the page and pauses the queue through the API, as the reported attack.
PWN = ("window.__pwned=1;fetch('/api/queues/diagnostics/pause',{method:'POST',"
       "headers:{'Content-Type':'application/json'},body:'{}'})")
MARKUP = f'"><img src=x onerror="{PWN}"><svg onload="{PWN}"></svg><script>{PWN}</script>'
HOSTILE_HASHES = [
    # The reported attack: a queue that smuggles a valid query into the list URL, so the api
    # answers an empty list and the page wrote "no <state> jobs" as HTML.
    f'queue=diagnostics%2Fjobs%3Fstate%3Dwaiting%26x%3D&state=<img src=x onerror="{PWN}">',
    f'queue=diagnostics&state=<img src=x onerror="{PWN}">',
    f'queue=diagnostics&state="><svg onload="{PWN}">',
    f'queue=<img src=x onerror="{PWN}">&state=waiting',
    "queue=..%2F..%2Fapi%2Fqueues%2Fdiagnostics%2Fpause%3F",
    "/queues/..%2F..%2Fpause",
    "queue=diagnostics&job=..%2F..%2Fpause",
    f"queue=diagnostics&job=<img src=x onerror=\"{PWN}\">",
    f"queue=javascript:{PWN}",
    f"queue=diagnostics&page=javascript:{PWN}",
]
# What the dashboard may request: itself, its files, the counts stream and diagnostics' jobs.
DASHBOARD_PATHS = {"/admin/queues", "/web/app.css", "/web/admin.js", "/api/queues/events",
                   "/api/queues"}
ACTIONS = {"pause", "resume", "clean", "retry", "retry-failed"}


def nothing_ran(driver: webdriver.Chrome, stack: Stack) -> None:
    """No payload became markup or script: no marker, no element made of it, no CSP refusal
    (the policy never had to step in), and the queue is not paused in Redis."""
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script(
        "return document.querySelectorAll('img, svg, script:not([src])').length") == 0
    assert csp_violations(driver) == []
    assert not stack.queues.run(lambda q: q.is_paused(DIAG))


def settled(driver: webdriver.Chrome) -> bool:
    """The hash's view is drawn: the overview alone, or the queue's list (or its error)."""
    return bool(driver.execute_script(
        "return document.getElementById('queue-panel').hidden ||"
        " !!document.getElementById('page-info').textContent ||"
        " !!document.getElementById('message').textContent"))


def test_hostile_url_hashes_stay_data(stack: Stack, browser: webdriver.Chrome) -> None:
    open_dashboard(browser, stack, "")
    queues = len(QueueName)
    for fragment in HOSTILE_HASHES:
        browser.get("about:blank")
        browser.get(stack.api.url(f"/admin/queues#{fragment}"))
        wait_until(browser, lambda d: text(d.find_element(By.ID, "live")) == "live", name="live")
        wait_until(browser, settled, name="settled")
        # Anything the page would still run asynchronously has had its turn.
        browser.execute_async_script("setTimeout(arguments[0], 300)")
        nothing_ran(browser, stack)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#overview tbody tr")) == queues
        for path in requested_paths(browser):
            assert path in DASHBOARD_PATHS or path.startswith("/api/queues/diagnostics/jobs"), \
                (fragment, path)
            assert not ACTIONS & set(path.split("/")), (fragment, path)
        panel = browser.find_element(By.ID, "queue-panel")
        if parse_qs(fragment).get("queue") == ["diagnostics"]:  # its view, default state
            assert panel.is_displayed()
            assert text(browser.find_element(By.CSS_SELECTOR, "#state-tabs a.current")) \
                .startswith("waiting")
        else:  # unknown queue: the overview alone
            assert not panel.is_displayed()
    # The same hashes arriving while the page is open (hashchange, no reload).
    for fragment in HOSTILE_HASHES:
        browser.execute_script("location.hash = arguments[0]", fragment)
        wait_until(browser, settled, name="settled-hashchange")
    browser.execute_async_script("setTimeout(arguments[0], 300)")
    nothing_ran(browser, stack)
    screenshot(browser, "dashboard-hostile-hash")
    # Beyond our code: Chromium itself refuses HTML from a string on the page (Trusted Types).
    assert browser.execute_script(
        "try { document.body.innerHTML = '<b>x</b>'; return 'accepted' }"
        " catch (e) { return e.name }") == "TypeError"


def row_of(driver: webdriver.Chrome, job_id: str) -> Any:
    return (driver.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-id="{job_id}"]') or [None])[0]


def text_content(driver: webdriver.Chrome, element_id: str) -> str:
    found: str = driver.execute_script(
        "return document.getElementById(arguments[0]).textContent", element_id)
    return found


def test_stored_markup_in_jobs_is_shown_as_text(stack: Stack, browser: webdriver.Chrome) -> None:
    data = {"message": MARKUP, "note": MARKUP}
    # Its name has no processor: the worker fails it with a reason that quotes the name. (Job
    # ids cannot carry markup: the api serves only the ids it makes.)
    job_id = stack.queues.run(lambda q: q.add(DIAG, MARKUP, data, Priority.REGULAR))
    stack.wait_state(DIAG, job_id, "failed")

    async def hostile_progress(q: Queues) -> None:
        job = await Job.fromId(q.bull(DIAG), job_id)
        await job.updateProgress({"stage": MARKUP})

    stack.queues.run(hostile_progress)
    answer = stack.api.session.get(stack.api.url(f"/api/queues/diagnostics/jobs/{job_id}"),
                                   timeout=5)
    assert answer.status_code == 200, answer.text
    detail = answer.json()
    assert repr(MARKUP) in detail["failedReason"] and detail["progress"] == {"stage": MARKUP}

    open_dashboard(browser, stack, "queue=diagnostics&state=failed")
    wait_until(browser, lambda d: row_of(d, job_id), name="hostile-row")
    row = row_of(browser, job_id)
    assert detail["failedReason"] in row.get_attribute("textContent")
    row.click()
    wait_until(browser, lambda d: text(d.find_element(By.ID, "d-state")) == "failed",
               name="hostile-detail")
    assert text_content(browser, "d-id") == f"diagnostics / {job_id}"
    fields = text_content(browser, "d-fields")
    assert MARKUP in fields and detail["failedReason"] in fields
    assert json.loads(text_content(browser, "d-data")) == data
    browser.execute_async_script("setTimeout(arguments[0], 300)")
    nothing_ran(browser, stack)
    screenshot(browser, "dashboard-hostile-job")
    assert_quiet(browser)


def test_upload_page_shows_hostile_file_names_as_text(
    stack: Stack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    # File names come from the user's disk; the refusal's reason comes back from the api.
    good = text_pdf(tmp_path / "<img src=x onerror=window.__pwned=1>.pdf", [["Hostile name"]])
    bad = tmp_path / '"><svg onload=window.__pwned=2>.pdf'
    bad.write_bytes(b"PK\x03\x04" + bytes(64))  # a ZIP: refused (415) with its name
    browser.get(stack.api.url(f"/upload?key={API_KEY}"))
    for path, outcome in ((good, "done"), (bad, "failed")):
        browser.find_element(By.ID, "files").send_keys(str(path))
        browser.find_element(By.ID, "upload").click()
        card = f".upload.{outcome}"
        wait_until(browser, lambda d, c=card: d.find_elements(By.CSS_SELECTOR, c), name=outcome)
        shown = browser.find_element(By.CSS_SELECTOR, card)
        assert shown.find_element(By.CSS_SELECTOR, ".name").get_attribute("textContent") \
            == path.name
    status = browser.find_element(By.CSS_SELECTOR, ".upload.failed .status")
    assert status.get_attribute("textContent").startswith(f"Failed: {bad.name}: ")
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script(
        "return document.querySelectorAll('#uploads img, #uploads svg').length") == 0
    assert csp_violations(browser) == []
    screenshot(browser, "upload-hostile-names")


class _InlineCode(HTMLParser):
    """Collects what a strict CSP would refuse: inline scripts and styles, event handler and
    style attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "style" or (tag == "script" and not names.get("src")):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "style" or \
                    (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}>")


def test_every_page_has_a_strict_csp(stack: Stack) -> None:
    own = stack.api.url("")  # file:// storage: signed uploads PUT to the api itself
    pages = [stack.api.session.get(stack.api.url(path), timeout=5)
             for path in ("/", "/upload", "/admin/queues")]
    pages.append(requests.get(stack.api.url("/admin/queues"), timeout=5))  # the key form
    assert [page.status_code for page in pages] == [200, 200, 200, 401]
    for page in pages:
        assert page.headers["Content-Type"].startswith("text/html")
        assert csp_directives(page.headers["Content-Security-Policy"]) == {
            "default-src": ["'none'"], "script-src": ["'self'"], "style-src": ["'self'"],
            "connect-src": ["'self'", own], "form-action": ["'self'"], "base-uri": ["'none'"],
            "object-src": ["'none'"], "frame-ancestors": ["'none'"],
            "require-trusted-types-for": ["'script'"], "trusted-types": ["'none'"],
        }
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        parser = _InlineCode()
        parser.feed(page.text)
        assert parser.found == [], page.url


def test_dashboard_cancels_a_running_job(stack: Stack, browser: webdriver.Chrome) -> None:
    job_id = stack.queues.run(lambda q: q.add(DIAG, "sleep", {"seconds": 60}, Priority.REGULAR))
    stack.wait_state(DIAG, job_id, "active")
    open_dashboard(browser, stack, f"queue=diagnostics&state=active&job={job_id}")
    wait_until(browser, lambda d: text(d.find_element(By.ID, "d-state")) == "active",
               name="active-detail")
    assert browser.find_element(By.ID, "d-retry").is_displayed() is False
    browser.find_element(By.ID, "d-cancel").click()
    browser.switch_to.alert.accept()
    wait_until(browser, lambda d: text(d.find_element(By.ID, "d-state")) == "failed",
               name="cancelled")
    assert "cancelled" in text(browser.find_element(By.ID, "d-fields"))
    assert not browser.find_element(By.ID, "d-cancel").is_displayed()
    view = stack.queues.run(lambda q: q.view(DIAG, job_id))
    assert view.state == "failed" and view.failedReason == "cancelled"
    screenshot(browser, "dashboard-cancelled-job")
    assert_quiet(browser)
