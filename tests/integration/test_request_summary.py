"""The request page read in ten seconds (issue 17 §3), in a real Chromium: the summary paragraph
on top (what moves, who asks, the rule and who is awaited, checks, CI statuses, the diff in one
line), diff sections that fold with anchors and "show only differences", the review box one
click away from the middle of a 4,000-row diff, and no serious or critical axe-core finding on
the request page, the list and the inbox."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from playwright.sync_api import Page, expect

from checkpoint import create_app
from tests.support.accessibility import assert_accessible, findings
from tests.support.apps import close_app, live
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model, unique

pytestmark = pytest.mark.browser

POLICY = """
rules:
  - name: gated
    models: ["summary-*"]
    targets: ["alias:champion"]
    reviewers: [bob, carol]
    required_approvals: 2
    required_statuses: [ci/eval]
    checks:
      - {name: auc-floor, kind: metric, expression: "auc > 0.5"}
      - {name: auc-gate, kind: metric, expression: "auc > 0.99"}
      - {name: why, kind: description, min_length: 10}
"""
WIDE = 2_000  # params on each side, and as many metrics: a 4,000-row diff


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


def sign_in(page: Page, base: str, name: str, path: str) -> None:
    page.goto(f"{base}/checkpoint/whoami?next={quote(path)}")
    page.locator("#name").fill(name)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"**{path}")


def log_wide(client: MlflowClient, run_id: str, changed: int, worse: int, better: int) -> None:
    """``WIDE`` params and metrics, the first ``changed`` params and ``worse``/``better`` metrics
    differing from the champion's (whose run logs this with zeros)."""
    params = [Param(f"p{i:04d}", str(i + (1 if i < changed else 0))) for i in range(WIDE)]
    for start in range(0, WIDE, 100):  # MLflow takes 100 params per batch
        client.log_batch(run_id, params=params[start : start + 100])
    metrics = [
        Metric(f"m{i:04d}", 0.5 - (0.1 if i < worse else 0) + (0.1 if worse <= i < worse + better else 0), 0, 0)
        for i in range(WIDE)
    ]
    for start in range(0, WIDE, 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def test_the_summary_folds_and_the_review_box_from_a_long_diff(browser_page, screenshot, site, mlflow_server):  # noqa: F811
    page, base = browser_page, site.url
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (v1, _v2, v3) = make_model(mlflow_server.url, unique("summary"), versions=3)
    direct.set_registered_model_alias(name, "champion", v1)
    champion_run, challenger_run = (direct.get_model_version(name, v).run_id for v in (v1, v3))
    log_wide(direct, champion_run, 0, 0, 0)
    log_wide(direct, challenger_run, changed=5, worse=3, better=1)
    direct.log_metric(champion_run, "auc", 0.9)
    direct.log_metric(challenger_run, "auc", 0.95)
    body = {
        "change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v3},
        "title": "Retrained on May data",
        "description": "Retrained on May data; <b>auc</b> up.",
    }
    opened = api(base, "POST", "/requests", user="alice", json=body)
    assert opened.status_code == 201, opened.text
    rid = opened.json()["id"]
    posted = api(base, "POST", f"/requests/{rid}/statuses", "ci-bot", json={"context": "ci/eval", "state": "pending"})
    assert posted.status_code == 201, posted.text

    sign_in(page, base, "bob", f"/checkpoint/requests/{rid}")
    summary = page.locator(".cp-summary")
    expect(summary.locator(".cp-sum-moves")).to_have_text(f"{name}: @champion v{v1} → v{v3}")
    expect(summary.locator(".cp-sum-asker")).to_contain_text("alice asked")
    expect(summary.locator(".cp-sum-approvals")).to_have_text("Rule gated: 0 of 2 approvals, awaiting bob, carol.")
    expect(summary.locator(".cp-sum-checks")).to_have_text("Checks: 2 of 3 passing, 1 failing: auc-gate.")
    expect(summary.locator(".cp-sum-statuses")).to_have_text("CI statuses: 0 of 1 success, 1 pending: ci/eval.")
    expect(summary.locator(".cp-sum-diff")).to_have_text(
        "Diff: signature not readable · 3 metrics worse, 2 better · 6 params changed · requirements unknown."
    )
    expect(summary.locator(".cp-sum-turn")).to_contain_text("Your review counts here")
    text = page.locator("main").inner_text()
    assert "{" not in text and '"kind"' not in text  # no raw JSON where a person reads
    assert summary.locator("b").count() == 0
    screenshot("1-summary")

    # "Show only differences" by default: the 4,000 rows are there, the unchanged ones hidden.
    diff = page.locator(".cp-diff")
    toggle = diff.get_by_label("Show only differences")
    expect(toggle).to_be_checked()
    expect(page.locator("#diff-params tbody tr:visible")).to_have_count(6)  # p0000-p0004, and make_model's "i"
    expect(page.locator("#diff-params .cp-same-note")).to_have_text(f"{WIDE - 5} unchanged, hidden while only differences show.")
    expect(page.locator("#diff-metrics tbody tr:visible")).to_have_count(5)  # 3 worse, m0003 and auc better
    # Anchors: the diff's own table of contents, each section folding.
    diff.get_by_role("link", name="Parameters").click()
    assert page.evaluate("location.hash") == "#diff-params"
    page.locator("#diff-params > summary").click()
    expect(page.locator("#diff-params")).not_to_have_attribute("open", "")
    expect(page.locator("#diff-params table")).to_be_hidden()
    page.locator("#diff-params > summary").press("Enter")  # a keyboard opens it again
    expect(page.locator("#diff-params table")).to_be_visible()

    toggle.uncheck()
    expect(page.locator("#diff-params tbody tr:visible")).to_have_count(WIDE + 1)
    # From the middle of the long diff, the review box is one click away (the sticky bar).
    page.locator("#diff-params tbody tr").nth(WIDE // 2).scroll_into_view_if_needed()
    jump = page.locator(".cp-jump-review")
    expect(jump).to_be_in_viewport()
    screenshot("2-middle-of-the-diff", full_page=False)
    jump.click()
    expect(page.locator("#review-comment")).to_be_in_viewport()
    page.keyboard.press("Tab")  # the keyboard goes on from the box jumped to: into its text
    assert page.evaluate("document.activeElement.id") == "review-comment"
    screenshot("3-review-box", full_page=False)
    assert_accessible(page, "request page, all rows shown")
    toggle.check()  # only the differences again: a page short enough for the final full-page screenshot
    expect(page.locator("#diff-params tbody tr:visible")).to_have_count(6)
    assert page.js_errors == []


def test_no_serious_accessibility_finding_on_the_list_the_inbox_and_a_request(browser_page, site, mlflow_server):  # noqa: F811
    page, base = browser_page, site.url
    name, (v1, v2) = make_model(mlflow_server.url, unique("summary"))
    body = {"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}, "title": "<i>typed</i>"}
    opened = api(base, "POST", "/requests", user="alice", json=body)
    assert opened.status_code == 201, opened.text
    sign_in(page, base, "bob", "/checkpoint/inbox")
    assert_accessible(page, "inbox")
    page.goto(f"{base}/checkpoint/requests?state=all")
    assert_accessible(page, "requests list")
    page.goto(f"{base}/checkpoint/requests/{opened.json()['id']}")
    expect(page.locator(".cp-sum-moves")).to_have_text(f"{name}: @champion (none) → v{v2}")
    assert_accessible(page, "request page")
    # The pass can fail: an unlabelled box added to the page is a finding.
    page.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<input id=unlabelled>')")
    assert "label" in {v["id"] for v in findings(page)}
