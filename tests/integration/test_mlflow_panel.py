"""The panel inside MLflow's UI at 1024 px, in a real Chromium against a real MLflow (issue 17
§4.13): each open request's checks, approvals and whether it awaits the viewer; a marker on the
versions with an open request; and a closed control that covers nothing of MLflow's page
(docked in MLflow's sidebar, the count alone when the sidebar is collapsed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from checkpoint import create_app
from tests.support.apps import close_app, live
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model, unique
from tests.support.openapi import check_answer

pytestmark = pytest.mark.browser

POLICY = """
rules:
  - name: panel
    models: ["panel-*"]
    targets: ["alias:champion"]
    required_approvals: 1
    checks:
      - {name: why, kind: description, min_length: 10}
"""
NARROW = {"width": 1024, "height": 768}
# What lies under the closed control's corners and centre: anything but Checkpoint's own control
# and MLflow's sidebar is page content it would hide.
UNDER = """(box) => {
  const points = [[box.x + 2, box.y + 2], [box.x + box.width - 2, box.y + 2], [box.x + 2, box.y + box.height - 2],
                  [box.x + box.width - 2, box.y + box.height - 2], [box.x + box.width / 2, box.y + box.height / 2]];
  const root = document.querySelector('[data-checkpoint="panel"]');
  const side = document.querySelector('aside');
  return points.flatMap(([x, y]) => document.elementsFromPoint(x, y))
    .filter(e => !root.contains(e) && !side.contains(e) && !e.contains(side))
    .map(e => e.tagName + '.' + e.className);
}"""


@pytest.fixture
def site(mlflow_server, sqlite_url, tmp_path) -> Iterator:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = {
        "registry_url": mlflow_server.url,
        "database_url": sqlite_url,
        "data_dir": tmp_path,
        "policy_file": policy,
        "background": False,
    }
    application = create_app(settings)
    try:
        with live(application, sqlite_url) as served:
            yield served
    finally:
        close_app(application)


def _open(base: str, name: str, version: str, title: str, description: str) -> int:
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": version}
    answer = api(base, "POST", "/requests", "alice", json={"change": change, "title": title, "description": description})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _sign_in(page, base: str, name: str) -> None:
    page.goto(f"{base}/checkpoint/whoami?next={quote('/checkpoint/inbox')}")
    page.locator("#name").fill(name)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()


def test_summary_says_checks_approvals_and_who_is_awaited(site, mlflow_server):
    base = site.url
    name, (_v1, v2, v3) = make_model(mlflow_server.url, name=unique("panel"), versions=3)
    ready = _open(base, name, v2, "Ready", "Better on every metric we track.")
    blocked = _open(base, name, v3, "Blocked", "short")
    summary = api(base, "GET", "/summary", "bob", params={"model": name})
    assert summary.status_code == 200, summary.text
    check_answer(api(base, "GET", "/openapi.json").json(), "/summary", "get", "200", summary.json())
    items = {i["id"]: i for i in summary.json()["requests"]}
    assert items[ready]["checks"] == {"total": 1, "passing": 1, "failing": [], "pending": []}
    assert items[blocked]["checks"] == {"total": 1, "passing": 0, "failing": ["why"], "pending": []}
    assert items[ready]["approvals"] == {"count": 0, "required": 1, "awaited": []}
    assert (items[ready]["blocked_by"], items[blocked]["blocked_by"]) == ([], ["why"])
    assert (items[ready]["awaiting_me"], items[blocked]["awaiting_me"]) == (True, False)  # blocked: nothing to review yet
    assert summary.json()["awaiting_me"] == 1
    mine = api(base, "GET", "/summary", "alice", params={"model": name}).json()
    assert [i["awaiting_me"] for i in mine["requests"]] == [False, False]  # her own requests
    assert mine["awaiting_me"] == 0


def test_panel_at_1024_px(site, mlflow_server, browser_page, screenshot):  # noqa: F811 - the fixtures above
    page, base = browser_page, site.url
    name, (_v1, v2, v3) = make_model(mlflow_server.url, name=unique("panel"), versions=3)
    ready = _open(base, name, v2, "Ready <b>now</b>", "Better on every metric we track.")
    blocked = _open(base, name, v3, "Blocked", "short")

    page.set_viewport_size(NARROW)
    _sign_in(page, base, "bob")
    page.goto(f"{base}/#/models/{quote(name, safe='')}")
    root, toggle = page.locator('[data-checkpoint="panel"]'), page.locator(".cp-panel-toggle")
    expect(toggle).to_be_visible(timeout=30_000)
    expect(page.locator(".cp-panel-mine")).to_have_text("1 for you")
    expect(page.locator(".cp-panel-count")).to_have_text("2")

    # The versions with an open request are marked in MLflow's own table.
    expect(page.locator(f'a[data-cp-review="in review #{ready}"]')).to_have_count(1)
    expect(page.locator(f'a[data-cp-review="in review #{blocked}"]')).to_have_count(1)
    expect(page.locator("[data-cp-review-row]")).to_have_count(2)

    # Closed, the control sits in MLflow's sidebar and covers nothing of the page.
    expect(root).to_have_attribute("class", _has("cp-panel-docked"))
    box = toggle.bounding_box()
    side = page.locator("aside").first.bounding_box()
    assert box and side and box["x"] >= side["x"] and box["x"] + box["width"] <= side["x"] + side["width"], (box, side)
    assert page.evaluate(UNDER, box) == []
    screenshot("closed-1024")

    toggle.click()
    items = page.locator(".cp-panel-item")
    expect(items).to_have_count(2)
    first = items.filter(has_text="Ready <b>now</b>")  # a title is text, never markup
    expect(first.locator(".cp-panel-fact-good")).to_have_text("1 of 1 checks passing")
    expect(first.locator(".cp-panel-fact-approvals")).to_have_text("0 of 1 approvals")
    expect(first.locator(".cp-panel-fact-you")).to_have_text("awaiting your review")
    second = items.filter(has_text="Blocked")
    expect(second.locator(".cp-panel-fact-bad")).to_have_text("0 of 1 checks passing · 1 failing: why")
    # Open, the panel is above MLflow's table (whose row-select cells sit at z-index 1000).
    box = page.locator(".cp-panel-body").bounding_box()
    assert box is not None
    point = [box["x"] + box["width"] - 20, box["y"] + box["height"] / 2]
    assert page.evaluate("([x, y]) => !!document.elementFromPoint(x, y).closest('.cp-panel-body')", point)
    expect(second.locator(".cp-panel-fact-you")).to_have_count(0)
    screenshot("open-1024")

    # On a version's own page the control says that version is in review.
    page.keyboard.press("Escape")
    page.goto(f"{base}/#/models/{quote(name, safe='')}/versions/{v2}")
    expect(page.locator(".cp-panel-here")).to_have_text(f"v{v2} in review")
    toggle.click()
    expect(page.locator(".cp-panel-item-here")).to_contain_text("Ready")
    screenshot("version-1024")
    page.keyboard.press("Escape")

    # A collapsed sidebar: the count alone, still inside it.
    page.get_by_role("button", name="Toggle sidebar").click()
    expect(root).to_have_attribute("class", _has("cp-panel-compact"))
    page.wait_for_function("() => document.querySelector('aside').getBoundingClientRect().width < 60")
    page.wait_for_function(
        "() => { const t = document.querySelector('.cp-panel-toggle').getBoundingClientRect();"
        " return t.right <= document.querySelector('aside').getBoundingClientRect().right; }"
    )
    assert page.evaluate(UNDER, toggle.bounding_box()) == []
    screenshot("collapsed-1024")
    assert page.js_errors == []


def _has(cls: str) -> re.Pattern:
    return re.compile(rf"(^|\s){re.escape(cls)}(\s|$)")
