"""Checkpoint's pages at the widths people use (issue 17 §4.12), in a real Chromium: between a phone
and a laptop the header's links take their own line instead of widening the page (it overflowed
from 601 to ~800 px), the timeline's table scrolls inside itself, and column names in the list
break between words, never inside one ("Auth|or")."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model

pytestmark = pytest.mark.browser
WIDTHS = (1024, 901, 700, 390)


def test_no_page_is_wider_than_the_window(browser_page, screenshot, sqlite_checkpoint, mlflow_server):  # noqa: F811
    page, base = browser_page, sqlite_checkpoint.url
    name, (v1, v2) = make_model(mlflow_server.url)
    for version in (v1, v2):  # a history with periods, so the timeline has rows
        change = {"kind": "set_alias", "name": name, "alias": "champion", "version": version}
        opened = api(base, "POST", "/requests", "alice", json={"change": change, "title": f"champion v{version}"})
        assert api(base, "POST", f"/requests/{opened.json()['id']}/reviews", "bob", json={"verdict": "approve"}).ok
    change = {"kind": "set_alias", "name": name, "alias": "challenger", "version": v1}
    waiting = api(base, "POST", "/requests", "alice", json={"change": change, "title": "Challenger back to the first"}).json()

    page.goto(f"{base}/checkpoint/whoami")
    page.locator("#name").fill("bob")
    page.get_by_role("button", name="Continue").click()
    model = quote(name, safe="")
    paths = {
        "list": "/checkpoint/requests",
        "inbox": "/checkpoint/inbox",
        "request": f"/checkpoint/requests/{waiting['id']}",
        "timeline": f"/checkpoint/models/{model}/timeline",
        "compare": f"/checkpoint/models/{model}/compare?a={v1}&b={v2}",
        "email": "/checkpoint/notifications",
    }
    wide = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        for label, path in paths.items():
            page.goto(base + path)
            scrolled = page.evaluate("document.documentElement.scrollWidth")
            if scrolled > width:
                wide.append(f"{label} at {width} px is {scrolled} px wide")
                screenshot(f"{label}-{width}")
        page.goto(base + "/checkpoint/requests?state=applied")
        if width > 600:
            heads = page.locator(".cp-table thead th")
            # A single word in one line: its box is one line high (a word split inside takes two).
            heights = heads.evaluate_all(
                "(ths) => ths.filter(th => th.getClientRects().length).map(th => [th.innerText, th.getClientRects()[0].height])"
            )
            one_line = min(h for _, h in heights)
            split = [text for text, h in heights if " " not in text.strip() and h > one_line * 1.5]
            assert not split, f"column names split inside a word at {width} px: {split}"
    page.set_viewport_size({"width": 700, "height": 800})
    page.goto(base + "/checkpoint/requests?state=applied")
    screenshot("list-700")
    assert not wide, "\n".join(wide)
    assert page.js_errors == []
