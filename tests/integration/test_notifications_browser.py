"""The email preferences page ``/checkpoint/notifications`` in a real Chromium, with a real SMTP
server configured: labelled choices a keyboard reaches, the choice saved and shown back (the JSON
API agrees), and axe-core finds nothing serious before and after saving, nor on the signed-out page."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.support.accessibility import assert_accessible
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api

pytestmark = pytest.mark.browser


@pytest.fixture
def checkpoint_config(tmp_path, sink):
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"people": {"bob": "bob@example.com"}}))
    return {"policy_file": policy, "public_url": "http://127.0.0.1", **sink.config()}


def test_preferences_page_is_accessible_and_saves(browser_page, screenshot, sqlite_checkpoint):  # noqa: F811
    page, base = browser_page, sqlite_checkpoint.url
    page.goto(f"{base}/checkpoint/notifications")
    expect(page.get_by_role("heading", name="Your email")).to_be_visible()
    expect(page.locator(".cp-empty")).to_contain_text("Sign in (or pick a name)")
    assert_accessible(page, "signed-out preferences page")

    page.goto(f"{base}/checkpoint/whoami")
    page.locator("#name").fill("bob")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("link", name="Email", exact=True).click()
    expect(page.locator(".cp-lede")).to_contain_text("bob@example.com")
    group = page.get_by_role("group", name="How you get email")
    expect(group.get_by_role("radio", name="An email for every event")).to_be_checked()
    assert_accessible(page, "preferences page")
    screenshot("before")

    # By keyboard: the first choice, then the arrow keys move the choice within the group.
    group.get_by_role("radio", name="An email for every event").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(group.get_by_role("radio", name="A daily digest")).to_be_checked()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved: a daily digest.")
    expect(page.get_by_role("radio", name="A daily digest")).to_be_checked()
    assert_accessible(page, "preferences page after saving")
    screenshot("saved")

    answer = api(base, "GET", "/notifications", user="bob")
    assert (answer.status_code, answer.json()["mode"], answer.json()["digest"]) == (200, "daily", "daily")
    assert page.js_errors == []
