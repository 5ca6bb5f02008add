"""The review box on a request page (issue #17 §4.2 and §4.11), in a real Chromium: one box whose
text goes with the button pressed; Reject and Withdraw ask once more (no JavaScript needed); a
notice near Approve when required checks fail, saying the approval will only be recorded."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from mlflow import MlflowClient
from playwright.sync_api import Page, expect

from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model
from tests.support.proxy import checkpoint_process

POLICY = """
rules:
  - name: gated
    models: ["{model}"]
    targets: ["alias:champion"]
    required_approvals: 1
    checks:
      - {{name: floor, kind: metric, expression: "val_auc > 0.5"}}
"""


def _become(page: Page, base: str, name: str, request_id: int) -> None:
    page.goto(f"{base}/checkpoint/whoami?next={quote(f'/checkpoint/requests/{request_id}')}")
    page.locator("#name").fill(name)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"**/checkpoint/requests/{request_id}")


def _open(base: str, name: str, version: str) -> int:
    made = api(
        base,
        "POST",
        "/requests",
        user="alice",
        json={"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": version}},
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


@pytest.mark.browser
def test_one_box_confirmations_and_the_failing_checks_notice(browser_page, screenshot, mlflow_server, tmp_path):  # noqa: F811
    name, (v1, v2) = make_model(mlflow_server.url)
    MlflowClient(tracking_uri=mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(model=name))
    page = browser_page
    with checkpoint_process(mlflow_server.url, tmp_path / "cp", CHECKPOINT_POLICY_FILE=str(policy)) as served:
        base = served.url
        request_id = _open(base, name, v2)
        _become(page, base, "bob", request_id)

        form = page.locator("form.cp-review-form")
        expect(page.locator("textarea")).to_have_count(1)  # one box for reviews and comments
        notice = page.locator(".cp-approve-notice")
        expect(notice).to_contain_text("Required check failing: floor")
        expect(notice).to_contain_text("only recorded")
        expect(form.get_by_role("button", name="Approve (recorded only)")).to_be_visible()
        expect(form.get_by_role("button", name="Yes, reject")).to_be_hidden()  # behind the confirm step
        screenshot("1-box-with-notice")

        page.locator("#review-comment").fill("Which holdout is this on?")
        form.get_by_role("button", name="Comment").click()
        expect(page.locator(".cp-thread")).to_contain_text("Which holdout is this on?")
        expect(page.locator(".cp-request-head .cp-state")).to_contain_text("open")

        page.locator("#review-comment").fill("Not with the **floor** failing.")
        page.locator("summary", has_text="Reject…").click()
        expect(form).to_contain_text(f"Rejecting closes request #{request_id}")
        screenshot("2-reject-confirm")
        form.get_by_role("button", name="Yes, reject").click()
        expect(page.locator(".cp-request-head .cp-state")).to_contain_text("rejected")
        expect(page.locator(".cp-thread strong", has_text="floor")).to_have_count(1)  # the text typed, as markdown
        rejected = api(base, "GET", f"/requests/{request_id}").json()
        assert [(r["verdict"], r["comment"]) for r in rejected["reviews"]] == [("reject", "Not with the **floor** failing.")]

        again = _open(base, name, v2)
        _become(page, base, "alice", again)
        expect(page.get_by_role("button", name="Yes, withdraw")).to_be_hidden()
        page.locator("summary", has_text="Withdraw…").click()
        screenshot("3-withdraw-confirm")
        page.get_by_role("button", name="Yes, withdraw").click()
        expect(page.locator(".cp-request-head .cp-state")).to_contain_text("withdrawn")
        screenshot("4-withdrawn")
