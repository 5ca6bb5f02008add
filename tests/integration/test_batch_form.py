"""The new-request form opens batch requests (issue 16 §4): several ``change`` parameters, "Add a
change", a preview per change (its diff in one line and its checks judged now), a remove link
per change, one title and description; submitting opens one batch through ``open_batch``, as the
JSON API does. In a real Chromium (with an axe-core pass) against a real MLflow, and bad input
through plain HTTP: a clear error and nothing stored.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import requests
from mlflow import MlflowClient
from playwright.sync_api import expect

from tests.support.accessibility import assert_accessible
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model, unique

POLICY = """
rules:
  - {name: gated, models: ["form-*"], targets: ["alias:champion"], required_approvals: 1,
     checks: [{name: validated, kind: tags, tags: {validation_status: passed}}]}
  - {name: anyone, models: ["*"], required_approvals: 1}
"""
XSS = "<script>window.__x=1</script> May retrain"


@pytest.fixture
def checkpoint_config(tmp_path) -> dict:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"policy_file": policy, "background": False}


def link(change: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(change).encode()).decode().rstrip("=")


def champion(name: str, version: str, alias: str = "champion") -> dict:
    return {"kind": "set_alias", "name": name, "alias": alias, "version": version}


def stored(base: str) -> list:
    return api(base, "GET", "/requests?limit=200").json()["requests"]


def aliases(mlflow_url: str, *names: str) -> dict:
    direct = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    return {n: dict(direct.get_registered_model(n).aliases) for n in names}


def test_a_batch_is_assembled_previewed_and_opened_in_the_browser(browser_page, screenshot, sqlite_checkpoint, mlflow_server):  # noqa: F811
    page, base = browser_page, sqlite_checkpoint.url
    gated, (_, g2) = make_model(mlflow_server.url, name=unique("form"))
    other, (o1, o2) = make_model(mlflow_server.url)
    page.goto(f"{base}/checkpoint/whoami")
    page.locator("#name").fill("alice")
    page.get_by_role("button", name="Continue").click()

    page.goto(f"{base}/checkpoint/requests/new?change={link(champion(gated, g2))}")
    expect(page.get_by_role("heading", name="New promote request")).to_be_visible()
    add = page.get_by_role("group", name="Add a change")
    for alias, version in (("champion", o2), ("challenger", o1)):
        add.get_by_label("What it does").select_option("set_alias")
        add.get_by_role("textbox", name="Model").fill(other)
        add.get_by_role("textbox", name=re.compile("^Version")).fill(version)
        add.get_by_role("textbox", name=re.compile("^Alias")).fill(alias)
        add.get_by_role("button", name="Add this change").click()
    expect(page.get_by_role("heading", name="New batch request")).to_be_visible()
    expect(page.locator(".cp-batch-change")).to_have_count(3)

    # Each change shows its own preview: the gated one its failing check, the others no checks.
    first = page.locator(".cp-batch-change").nth(0)
    expect(first.get_by_role("heading")).to_contain_text(f"Change 1 of 3: moving alias 'champion' of '{gated}' to version {g2}")
    expect(first.locator(".cp-check-fail")).to_contain_text("fail")
    expect(first).to_contain_text("validated")
    expect(first.locator(".cp-preview-diff")).to_contain_text("Diff:")
    second = page.locator(".cp-batch-change").nth(1)
    expect(second).to_contain_text("The rule declares no checks.")
    expect(second.locator(".cp-preview-diff")).to_contain_text("Diff:")
    assert_accessible(page, "batch form")
    screenshot("three-changes")

    page.get_by_role("link", name=re.compile("^Remove change 3")).click()
    expect(page.locator(".cp-batch-change")).to_have_count(2)
    page.get_by_label("Title").fill(XSS)
    page.get_by_label("Description").fill("Both at once, all or nothing.")
    assert aliases(mlflow_server.url, gated, other) == {gated: {}, other: {}}
    screenshot("two-changes")
    page.get_by_role("button", name=re.compile("^Open batch request")).click()

    expect(page.get_by_role("heading", name=XSS)).to_be_visible()  # the title, as text
    assert page.evaluate("window.__x") is None
    request_id = int(page.url.rsplit("/", 1)[1])
    opened = api(base, "GET", f"/requests/{request_id}", user="alice").json()
    assert opened["kind"] == "batch" and opened["author"] == "alice"
    assert [(c["model"], c["target"], c["change"]["version"]) for c in opened["changes"]] == [
        (gated, "alias:champion", g2),
        (other, "alias:champion", o2),
    ]
    assert aliases(mlflow_server.url, gated, other) == {gated: {}, other: {}}  # opened, not applied
    screenshot("opened")
    assert page.js_errors == []


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_bad_input_is_a_clear_error_and_stores_nothing(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    gated, (_, g2) = make_model(mlflow_server.url, name=unique("form"))
    other, (_, o2) = make_model(mlflow_server.url)
    held = api(base, "POST", "/requests", user="bob", json={"change": champion(other, o2)})
    assert held.status_code == 201, held.text
    before = stored(base)
    browser = requests.Session()
    browser.auth = ("alice", "x")
    form = f"{base}/checkpoint/requests/new"
    good = link(champion(gated, g2))

    unreadable = browser.get(form, params={"change": [good, "not-a-change"]}, timeout=60)
    assert unreadable.status_code == 400 and "the change in this link is not readable" in unreadable.text

    twice = browser.get(form, params={"change": [good, good]}, timeout=60)
    assert twice.status_code == 200 and "same target as changes[0]" in twice.text  # said before submitting
    csrf = _csrf(twice.text)

    def post(changes: list[str], **fields) -> requests.Response:
        data = {"change": changes, "title": "t", "description": "", "csrf_token": csrf, "action": "open", **fields}
        return browser.post(form, data=data, timeout=60, allow_redirects=False)

    cases = [
        (post([good, good]), 400, "changes[1]: moving alias &#39;champion&#39;"),
        (post([good, link(champion(other, o2))]), 409, f"open request #{held.json()['id']} holds already"),
        (post([good, link(champion(other, "99", "challenger"))]), 400, "no version 99"),
        (post([good, link({"kind": "delete_version", "name": other, "version": o2})]), 400, "cannot be in a batch"),
        (post([good, link(champion(other, o2, "challenger"))], apply_at="2030-01-01T00:00:00Z"), 400, "leave “Apply at” empty"),
        (post([good, link(champion(other, o2, "challenger"))], title=""), 400, "Give the request a title."),
    ]
    for answer, status, message in cases:
        assert answer.status_code == status, (message, answer.status_code)
        assert message in answer.text.replace("&#34;", '"'), (message, answer.text[:3000])
    for fields, message in (
        ({"add_kind": "set_alias", "add_name": other, "add_alias": "champion"}, "give the version for this change"),
        ({"add_kind": "rename", "add_name": other}, "choose what the change does"),
        ({"add_kind": "transition", "add_name": "", "add_version": "1", "add_stage": "Production"}, "give the model&#39;s name"),
        ({"add_kind": "transition", "add_name": other, "add_version": o2, "add_stage": "Nowhere"}, "Nowhere"),
    ):
        refused = post([good], action="add", **fields)
        assert refused.status_code == 400 and message in refused.text, (fields, refused.text[:3000])
    assert stored(base) == before
    assert aliases(mlflow_server.url, gated, other) == {gated: {}, other: {}}

    # The author's own batch, submitted twice, is found again (not refused as "held").
    again = [good, link(champion(other, o2, "challenger"))]
    first = post(again)
    assert first.status_code == 303, first.text[:2000]
    second = post(again)
    assert second.status_code == 303 and second.headers["Location"] == first.headers["Location"]
    assert len(stored(base)) == len(before) + 1
