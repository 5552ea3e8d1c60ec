"""Issue 13, CSRF: writes another site makes a browser send are refused, over a real socket and
from a real Chromium on another port of the same host (same site: the SameSite=Strict cookie
goes along)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By

from heavylift.api.csrf import csrf_token
from heavylift.queue import QueueName
from local.launch import free_port
from tests.api_server import API_KEY
from tests.browser import browser_fixture, text, wait_until  # noqa: F401 - fixture
from tests.live_stack import Stack, stack_fixture  # noqa: F401 - fixture

PAUSE = "/api/queues/documents/pause"
RESUME = "/api/queues/documents/resume"
CLEAN = "/api/queues/documents/clean"


def paused(stack: Stack) -> bool:
    overview = stack.api.session.get(stack.api.url("/api/queues"), timeout=10).json()
    return next(q["paused"] for q in overview["queues"] if q["name"] == "documents")


def cookie_post(stack: Stack, path: str, **headers: str) -> requests.Response:
    """A write authenticated by the key cookie only, as a browser sends it."""
    return requests.post(stack.api.url(path), cookies={"heavylift_key": API_KEY}, json={},
                         headers=headers, timeout=10)


def test_cookie_writes_need_the_page_token(stack: Stack) -> None:
    refused = cookie_post(stack, PAUSE)
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_token"
    wrong = cookie_post(stack, PAUSE, **{"X-CSRF-Token": csrf_token("other-key")})
    assert wrong.status_code == 403 and not paused(stack)
    ok = cookie_post(stack, PAUSE, **{"X-CSRF-Token": csrf_token(API_KEY),
                                      "Origin": stack.api.http.url})
    assert ok.status_code == 200 and paused(stack)
    assert cookie_post(stack, RESUME, **{"X-CSRF-Token": csrf_token(API_KEY)}).ok
    assert not paused(stack)


def test_the_page_carries_the_token_for_its_key(stack: Stack) -> None:
    page = requests.get(stack.api.url("/admin/queues"), cookies={"heavylift_key": API_KEY},
                        timeout=10)
    assert f'<meta name="heavylift-csrf" content="{csrf_token(API_KEY)}">' in page.text


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:1"},  # another port of the same host
    {"Origin": "null"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_writes_from_elsewhere_are_refused_even_with_a_key(
    stack: Stack, headers: dict[str, str]
) -> None:
    answer = stack.api.session.post(stack.api.url(PAUSE), json={}, headers=headers, timeout=10)
    assert answer.status_code == 403 and answer.json()["code"] == "cross_site"
    assert not paused(stack)


def test_json_routes_refuse_form_and_text_bodies(stack: Stack) -> None:
    failed = stack.api.session.post(stack.api.url(CLEAN), data='{"state": "failed"}',
                                    headers={"Content-Type": "text/plain"}, timeout=10)
    assert failed.status_code == 415
    form = stack.api.session.post(stack.api.url("/api/documents/upload-url"),
                                  data={"filename": "a.pdf", "size": "5"}, timeout=10)
    assert form.status_code == 415 and form.json()["code"] == "unsupported_media_type"


def test_clients_with_a_bearer_key_are_unaffected(stack: Stack) -> None:
    """The CLI and curl send no Origin or token; an empty-body POST needs no content type."""
    assert stack.api.session.post(stack.api.url(PAUSE), timeout=10).status_code == 200
    assert stack.api.session.post(stack.api.url(RESUME), timeout=10).status_code == 200
    same = stack.api.session.post(stack.api.url(PAUSE), json={}, timeout=10,
                                  headers={"Sec-Fetch-Site": "same-origin",
                                           "Origin": stack.api.http.url})
    assert same.status_code == 200
    assert stack.api.session.post(stack.api.url(RESUME), timeout=10).ok


ATTACK = """<!doctype html><html><body>
<form id="pause" method="POST" action="{api}{pause}"></form>
<form id="clean" method="POST" action="{api}{clean}" enctype="text/plain">
  <input name='{{"state":"completed","olderThanMs":0,"x":"' value='"}}'>
</form>
<iframe name="a"></iframe><iframe name="b"></iframe>
<script>
  document.getElementById("pause").target = "a";
  document.getElementById("clean").target = "b";
  document.getElementById("pause").submit();
  document.getElementById("clean").submit();
  fetch("{api}{pause}", {{method: "POST", mode: "no-cors", credentials: "include",
                          headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}})
    .finally(() => {{ document.title = "sent"; }});
</script></body></html>"""


@pytest.fixture
def attacker(stack: Stack) -> Iterator[str]:
    """A page on another port of 127.0.0.1 (same site as the api) that tries three writes."""
    body = ATTACK.format(api=stack.api.http.url, pause=PAUSE, clean=CLEAN).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_a_same_site_page_cannot_write_with_the_cookie(
    stack: Stack, browser: webdriver.Chrome, attacker: str
) -> None:
    completed = stack.api.session.post(
        stack.api.url("/api/documents/async-upload"), timeout=10,
        files={"files": ("n.txt", b"hello\n", "text/plain")}).json()["jobs"][0]["jobId"]
    stack.wait_state(QueueName.DOCUMENTS, completed, "completed")
    # Signed in: the page moves the key into its cookie.
    browser.get(stack.api.url(f"/admin/queues?key={API_KEY}"))
    wait_until(browser, lambda d: text(d.find_element(By.ID, "live")) == "live", name="live")
    browser.get(attacker)
    wait_until(browser, lambda d: d.title == "sent", name="attack")
    time.sleep(1)  # the form posts land in their frames
    assert not paused(stack)
    kept = stack.api.session.get(stack.api.url("/api/queues/documents/jobs"),
                                 params={"state": "completed"}, timeout=10).json()
    assert completed in [job["id"] for job in kept["jobs"]]  # not cleaned away
    api_log = stack.api.http.log.read_text()
    assert api_log.count('"path": "/api/queues/documents/pause", "status": 403') >= 2
