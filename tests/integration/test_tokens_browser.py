"""The API tokens page in a real Chromium: create (the secret shown once, never again), use it,
revoke it; the forms carry the CSRF token."""

from __future__ import annotations

import re
from urllib.parse import quote

import requests
from playwright.sync_api import expect

from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name


def test_tokens_page_creates_shows_once_and_revokes(browser_page, screenshot, sqlite_checkpoint):  # noqa: F811
    page, base = browser_page, sqlite_checkpoint.url
    page.goto(f"{base}/checkpoint/whoami?next={quote('/checkpoint/tokens')}")
    page.locator("#name").fill("alice")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Your API tokens")).to_be_visible()
    expect(page.get_by_text("You have no tokens yet.")).to_be_visible()
    expect(page.get_by_label("review")).to_be_disabled()  # not listed in CHECKPOINT_TOKEN_ELEVATED_USERS

    page.locator("#name").fill("nightly <b>training</b>")
    page.get_by_label("request").check()
    page.locator("#days").fill("30")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#token-secret").inner_text()
    assert re.fullmatch(r"cpt_[A-Za-z0-9_-]{43}", secret)
    expect(page.locator(".cp-token-new")).to_contain_text("shown once")
    expect(page.locator(".cp-table")).to_contain_text("nightly <b>training</b>")  # typed text stays text
    expect(page.locator(".cp-table")).to_contain_text(secret[:8])
    screenshot("created")

    answer = requests.get(f"{base}/checkpoint/api/v1/requests", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert answer.status_code == 200

    page.goto(f"{base}/checkpoint/tokens")
    assert secret not in page.content()  # shown once: not on the next visit
    expect(page.locator(".cp-table")).to_contain_text("active")

    page.get_by_role("button", name="Revoke token nightly <b>training</b>").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(page.locator(".cp-table")).to_contain_text("revoked")
    screenshot("revoked")
    after = requests.get(f"{base}/checkpoint/api/v1/requests", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert after.status_code == 401 and "revoked" in after.json()["message"]
    assert page.js_errors == []


def test_the_tokens_forms_need_the_csrf_token(sqlite_checkpoint):
    base = sqlite_checkpoint.url
    session = requests.Session()
    session.post(f"{base}/checkpoint/whoami", data={"name": "alice"}, timeout=30)  # no CSRF token either: refused too
    forged = session.post(f"{base}/checkpoint/tokens", data={"name": "x", "scopes": "read", "days": "5"}, timeout=30)
    assert forged.status_code == 400
    assert "CSRF" in forged.text
    listed = requests.get(f"{base}/checkpoint/api/v1/tokens", auth=("alice", "x"), timeout=30).json()
    assert listed["tokens"] == []
