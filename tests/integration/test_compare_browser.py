"""The compare page in a real Chromium, reached as a user would: MLflow's page of a version, the
injected panel's "Compare v3 with champion", the diff, then "open a promote request for this" to
the pre-filled form and the request it opens. A mistyped version: the form again, its field marked.
Screenshots: the page at 1440 px and 390 px, the bad reference; axe-core finds no violation."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api
from tests.support.versions import fraud_model

pytestmark = pytest.mark.browser


def sign_in(page, base: str, name: str) -> None:
    page.goto(f"{base}/checkpoint/whoami")
    page.locator("#name").fill(name)
    page.get_by_role("button", name="Continue").click()


def test_compare_with_champion_from_the_panel_to_a_request(browser_page, screenshot, sqlite_checkpoint, mlflow_server):  # noqa: F811
    page, base = browser_page, sqlite_checkpoint.url
    name = fraud_model(mlflow_server.url)
    sign_in(page, base, "alice")

    page.goto(f"{base}/#/models/{quote(name, safe='')}/versions/3")
    page.locator(".cp-panel-toggle").click(timeout=30_000)
    compare = page.get_by_role("link", name="Compare v3 with champion")
    expect(compare).to_be_visible()
    screenshot("panel")
    compare.click()
    expect(page.get_by_role("heading", name=f"Compare {name} v3 with v1", level=1)).to_be_visible()
    assert "/compare?a=%40champion&b=3" in page.url
    expect(page.locator("#cmp-a")).to_have_value("@champion")
    diff = page.locator("section.cp-diff")
    expect(diff.get_by_role("heading", level=2)).to_have_text(f"Diff: {name} v3 (challenger) against {name} v1 (champion)")
    expect(diff.locator(".cp-breaking")).to_have_text("⚠ breaking")
    expect(diff.locator("tr.cp-diff-breaking")).to_contain_text("country")
    expect(diff.locator("tr.cp-verdict-row-better")).to_contain_text("accuracy")
    expect(diff.locator("tr.cp-verdict-row-worse")).to_contain_text("loss")
    expect(diff.locator("tr.cp-diff-added")).to_contain_text("scipy")
    screenshot("compare")
    violations = Axe().run(page)
    assert violations.violations_count == 0, violations.generate_report()

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="Compare")).to_be_visible()
    screenshot("compare-390")
    page.set_viewport_size({"width": 1440, "height": 900})

    page.get_by_role("link", name=f"Open a promote request for this: set @champion of {name} to v3").click()
    expect(page.get_by_role("heading", name="New promote request")).to_be_visible()
    expect(page.locator(".cp-lede")).to_contain_text(f"moving alias 'champion' of '{name}' to version 3")
    page.get_by_role("button", name="Open promote request").click()
    expect(page.locator(".cp-headline")).to_contain_text(name)
    opened = api(base, "GET", "/requests", user="alice").json()["requests"]
    assert [(r["change"]["kind"], r["change"]["alias"], r["change"]["version"], r["author"]) for r in opened] == [
        ("set_alias", "champion", "3", "alice")
    ]
    screenshot("request")

    page.goto(f"{base}/checkpoint/models/{quote(name, safe='')}/compare?a=%40champion&b=3")
    page.locator("#cmp-b").fill("v9")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#cmp-error")).to_have_text(
        "b 'v9' is not a version number (7), an alias (@champion), a stage (Production) or latest"
    )
    expect(page.locator("#cmp-b")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#cmp-a")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("section.cp-diff")).to_have_count(0)
    screenshot("bad-reference")
    assert page.js_errors == []
