"""The inbox page ``/checkpoint/inbox`` in a real Chromium: bob's "Waiting for my review" and
the header's count, alice's "My requests" and "Recently decided"; typed text stays text."""

from __future__ import annotations

import re
from urllib.parse import quote

from playwright.sync_api import expect

from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model


def sign_in(page, base: str, name: str) -> None:
    page.goto(f"{base}/checkpoint/whoami?next={quote('/checkpoint/inbox')}")
    page.locator("#name").fill(name)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()


def test_inbox_page_and_header_count(browser_page, screenshot, sqlite_checkpoint, mlflow_server):  # noqa: F811
    page, base = browser_page, sqlite_checkpoint.url
    opened = []
    for title in ("Retrained on May data", "<script>window.pwned=1</script> hotfix"):
        name, (_v1, v2) = make_model(mlflow_server.url)
        body = {"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}, "title": title}
        answer = api(base, "POST", "/requests", "alice", json=body)
        assert answer.status_code == 201, answer.text
        opened.append(answer.json()["id"])

    sign_in(page, base, "bob")
    waiting = page.locator("#waiting")
    expect(page.locator(".cp-nav .cp-count")).to_have_text("2 waiting for your review")
    expect(waiting.locator("tbody tr")).to_have_count(2)
    expect(waiting).to_contain_text("<script>window.pwned=1</script> hotfix")  # shown as text, not run
    assert page.evaluate("window.pwned") is None
    expect(page.locator("#mine")).to_contain_text("You have no open requests.")
    screenshot("bob")

    decided = api(base, "POST", f"/requests/{opened[0]}/reviews", "bob", json={"verdict": "approve"})
    assert decided.json()["state"] == "applied", decided.text
    page.goto(f"{base}/checkpoint/requests")  # the count is in every page's header
    expect(page.locator(".cp-nav .cp-count")).to_have_text("1 waiting for your review")
    page.goto(f"{base}/checkpoint/requests?awaiting=me")  # the full filtered list
    expect(page.get_by_role("heading", name="Waiting for your review")).to_be_visible()
    expect(page.locator(".cp-table tbody tr")).to_have_count(1)

    sign_in(page, base, "alice")
    expect(page.locator(".cp-nav .cp-count")).to_have_count(0)  # nothing waits for her
    expect(page.locator("#waiting")).to_contain_text("Nothing waits for your review.")
    expect(page.locator("#mine tbody tr")).to_have_count(1)
    expect(page.locator("#decided tbody tr")).to_have_count(1)
    expect(page.locator("#decided")).to_contain_text("Retrained on May data")
    screenshot("alice")
    page.locator("#mine").get_by_role("link", name="All of them »").click()
    expect(page.locator(".cp-table tbody tr")).to_have_count(1)
    assert "author=me" in page.url
    assert page.js_errors == []


def test_mlflow_panel_says_how_many_wait_for_you(browser_page, screenshot, sqlite_checkpoint, mlflow_server):  # noqa: F811
    page, base = browser_page, sqlite_checkpoint.url
    name, (_v1, v2) = make_model(mlflow_server.url)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
    assert api(base, "POST", "/requests", "alice", json={"change": change}).status_code == 201

    sign_in(page, base, "bob")
    page.goto(f"{base}/#/models/{quote(name, safe='')}")
    expect(page.locator(".cp-panel-toggle")).to_be_visible(timeout=30_000)
    expect(page.locator(".cp-panel-mine")).to_have_text("1 for you")
    expect(page.locator(".cp-panel-toggle")).to_have_attribute("aria-label", re.compile("1 waiting for your review"))
    screenshot("panel-bob")

    sign_in(page, base, "alice")  # her own request waits for someone else
    page.goto(f"{base}/#/models/{quote(name, safe='')}")
    expect(page.locator(".cp-panel-count")).to_have_text("1")
    expect(page.locator(".cp-panel-mine")).to_be_hidden()
