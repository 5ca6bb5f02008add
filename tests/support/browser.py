"""A real Chromium for browser tests: one browser per session, a fresh context (cookies, storage) per test.

Use it from a test module with::

    from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name

    @pytest.mark.browser
    def test_something(browser_page, screenshot, served_checkpoint):  # noqa: F811 - the fixtures above
        browser_page.goto(f"{served_checkpoint.url}/#/models")
        screenshot("models")

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright's Python package; Playwright's
own browser download (``playwright install``) is never used. Screenshots land in
``tests/screenshots/`` (git-ignored), one per call to ``screenshot(label)`` plus a ``final`` one
after every test, so a failing test leaves a picture of where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1440, "height": 900}
# Playwright's waits (expect(), locator actions) give up after this long.
TIMEOUT_MS = 20_000


# Each test module that imports ``chromium`` gets its own session-scoped instance of it from
# pytest, but Playwright's sync API runs one driver per thread: every instance shares this one.
_SHARED: dict = {}


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the whole session, closed at its end."""
    from playwright.sync_api import expect, sync_playwright

    # The same patience for every test that uses the browser, whichever fixture it came through.
    expect.set_options(timeout=TIMEOUT_MS)

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (bash scripts/test does)")
    owner = not _SHARED
    if owner:
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        except BaseException:
            playwright.stop()
            raise
        _SHARED.update(playwright=playwright, browser=browser)
    try:
        yield _SHARED["browser"]
    finally:
        if owner:  # set up first, so torn down last
            playwright = _SHARED.pop("playwright")
            try:
                _SHARED.pop("browser").close()
            finally:
                playwright.stop()


def _file_name(test_name: str, label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{test_name}-{label}").strip("-") + ".png"


@pytest.fixture
def browser_page(chromium, request) -> Iterator:
    """A new page in a new browser context; its uncaught JavaScript errors are in ``page.js_errors``."""
    context = chromium.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    try:
        yield page
    finally:
        from playwright.sync_api import Error

        try:
            save_screenshot(page, _file_name(request.node.name, "final"))
        except Error:  # a crashed or closed page: the test's own failure says more
            pass
        finally:
            context.close()


def save_screenshot(page, file_name: str, full_page: bool = True) -> Path:
    """Save a screenshot (of the whole page, or what the viewport shows) under tests/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / file_name
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture
def screenshot(browser_page, request) -> Callable[[str], Path]:
    """``screenshot("label")`` saves ``tests/screenshots/<test>-<label>.png`` of the current page;
    ``screenshot("label", full_page=False)`` only what the viewport shows (a very long page)."""
    return lambda label, full_page=True: save_screenshot(browser_page, _file_name(request.node.name, label), full_page)
