"""Headless Debian Chromium driven by Selenium through Debian's chromedriver. Installed with
apt-get on first use when missing (CI runs as root on a fresh Debian machine)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
# Runs in every document before its own scripts (scripts added over CDP are exempt from the CSP):
# the page's Content-Security-Policy violations, for csp_violations().
_RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(
  `${e.effectiveDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


def ensure_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0:
        pytest.fail("chromium is missing: sudo apt-get install -y chromium chromium-driver")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, timeout=900)


@pytest.fixture(scope="module", name="browser")
def browser_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Without the background-networking flags Chromium keeps calling Google's hosts, which this
    # machine's closed network refuses. A page left for the back/forward cache keeps its open
    # event streams; a test loading pages one after another would run out of Chromium's six
    # connections per host (a later load waits about a minute): no back/forward cache.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-features=BackForwardCache",
                 "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORD_VIOLATIONS})
    yield driver
    driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_until(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], object],
               timeout: float = 30, name: str = "page") -> None:
    """Wait for `check`; on timeout keep a screenshot of what the page showed."""
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except Exception:
        screenshot(driver, f"timeout-{name}")
        raise


def text(element: WebElement) -> str:
    return str(element.text).strip()


def csp_violations(driver: webdriver.Chrome) -> list[str]:
    """The current page's Content-Security-Policy violations so far."""
    found: list[str] = driver.execute_script("return window.__violations")
    return found


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Console errors (uncaught exceptions, refused loads, CSP reports) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
