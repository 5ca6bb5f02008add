"""Issue 17's "Done when", as a user runs it: `checkpoint demo` started as the README says, then
two people in two Chromium contexts. alice compares fraud-detector's challenger with its champion,
follows "open a promote request for this" and names bob; bob's email lands in the demo's mailbox
(its console line and the saved .eml), his MLflow panel says "1 for you", his inbox lists it, the
request page opens with its one-paragraph summary, he approves; MLflow's @champion moves once, and
alice's "is applied" email arrives. Screenshots: the compare page, bob's inbox, the summary."""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from mlflow import MlflowClient
from playwright.sync_api import expect

from tests.support.browser import VIEWPORT, browser_page, chromium, save_screenshot, screenshot  # noqa: F401 - fixtures
from tests.support.demo import running_demo

pytestmark = pytest.mark.browser
MODEL = "fraud-detector"


def sign_in(page, base: str, name: str) -> None:
    """The demo has no sign-in: each browser picks its name on /checkpoint/whoami, as the banner says."""
    page.goto(f"{base}/checkpoint/whoami")
    page.locator("#name").fill(name)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".cp-who strong")).to_have_text(name)


def champion_periods(base: str) -> list[dict]:
    timeline = requests.get(f"{base}/checkpoint/api/v1/models/{MODEL}/timeline", auth=("visitor", "x"), timeout=30)
    assert timeline.status_code == 200, timeline.text
    [champion] = [t for t in timeline.json()["targets"] if t["target"] == "alias:champion"]
    return champion["periods"]


# A write that moves an alias or a stage, in the access log of the demo's MLflow server (uvicorn's lines,
# "2026/12/04 13:33:59 INFO:     127.0.0.1:43612 - "POST /api/2.0/mlflow/registered-models/alias HTTP/1.1" 200 OK").
REGISTRY_MOVE = re.compile(
    r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) .*"(POST|DELETE|PATCH) /(?:ajax-)?api/2\.0/mlflow/'
    r"(registered-models/alias|model-versions/transition-stage)\b"
)


def registry_moves(log: Path, since: str) -> list[str]:
    """The alias and stage writes MLflow itself logged from the second ``since`` on."""
    found = (REGISTRY_MOVE.match(line) for line in log.read_text(errors="replace").splitlines())
    return [f"{m.group(2)} {m.group(3)}" for m in found if m and m.group(1) >= since]


def saved_email(line_after: str, output: str) -> email.message.EmailMessage:
    """The .eml the mailbox printed it saved right after ``line_after`` on the console."""
    tail = output[output.index(line_after) :]
    path = Path(re.search(r"\(saved as (\S+\.eml)\)", tail).group(1))
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_the_reviewers_day_in_the_demo(browser_page, chromium, screenshot, tmp_path):  # noqa: F811
    with running_demo(tmp_path) as demo:
        base = demo.url
        mlflow = MlflowClient(demo.mlflow_url, registry_uri=demo.mlflow_url)
        before = mlflow.get_registered_model(MODEL).aliases
        champion, challenger = before["champion"], before["challenger"]
        assert champion != challenger
        periods_before = champion_periods(base)

        # alice: MLflow's page of the challenger, the panel's "Compare with champion", then the form.
        alice = browser_page
        sign_in(alice, base, "alice")
        alice.goto(f"{base}/#/models/{MODEL}/versions/{challenger}")
        alice.locator(".cp-panel-toggle").click(timeout=30_000)
        alice.get_by_role("link", name=f"Compare v{challenger} with champion").click()
        expect(alice.get_by_role("heading", name=f"Compare {MODEL} v{challenger} with v{champion}", level=1)).to_be_visible()
        diff = alice.locator("section.cp-diff")
        for words in ("signature unchanged", "4 metrics better", "params changed"):
            expect(diff).to_contain_text(words)
        screenshot("compare")
        alice.get_by_role("link", name=f"Open a promote request for this: set @champion of {MODEL} to v{challenger}").click()
        expect(alice.get_by_role("heading", name="New promote request")).to_be_visible()
        expect(alice.locator(".cp-preview")).to_contain_text("auc-gate")
        expect(alice.locator(".cp-preview-diff")).to_contain_text("4 metrics better")
        alice.locator("#title").fill("Promote the October retrain")
        alice.locator("#description").fill("Better val_auc on October data; same inputs.")
        alice.locator("#reviewers").fill("bob")
        since = time.strftime("%Y/%m/%d %H:%M:%S")  # the MLflow server logs local time, as this does
        alice.get_by_role("button", name="Open promote request").click()
        expect(alice.locator(".cp-headline")).to_contain_text(MODEL)
        number = int(re.search(r"/checkpoint/requests/(\d+)", alice.url).group(1))
        assert number == 4, "the README's walkthrough names #4: the seeded history holds #1 to #3"

        # bob's email: on the demo's console with the link, and kept as an .eml.
        moves = f"{MODEL} v{challenger} → alias:champion"
        asks = f"email to bob@example.com: [Checkpoint] alice asks for your review on #{number}: {moves}"
        output = demo.wait_for(asks)
        assert f"{base}/checkpoint/requests/{number}" in output[output.index(asks) :]
        to_bob = saved_email(asks, output)
        assert to_bob["To"] == "bob@example.com"
        assert f"{base}/checkpoint/requests/{number}" in to_bob.get_body(preferencelist=("plain",)).get_content()

        # bob, in a browser of his own: the badge on MLflow's model page, the inbox, the summary.
        context = chromium.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
        try:
            bob = context.new_page()
            errors: list[str] = []
            bob.on("pageerror", lambda error: errors.append(str(error)))
            sign_in(bob, base, "bob")
            bob.goto(f"{base}/#/models/{quote(MODEL)}")
            expect(bob.locator(".cp-panel-mine")).to_have_text("1 for you", timeout=30_000)
            save_screenshot(bob, "test_the_reviewers_day_in_the_demo-bob-panel.png")

            bob.goto(f"{base}/checkpoint/inbox")
            waiting = bob.locator("#waiting")
            expect(waiting.locator("tbody tr")).to_have_count(1)
            expect(waiting).to_contain_text("Promote the October retrain")
            save_screenshot(bob, "test_the_reviewers_day_in_the_demo-inbox.png")
            waiting.get_by_role("link", name=re.compile(f"#{number}|Promote the October retrain")).first.click()

            summary = bob.locator(".cp-summary-text")
            expect(summary).to_contain_text(f"{MODEL}: @champion v{champion} → v{challenger}")
            expect(summary).to_contain_text("alice")
            for words in ("awaiting bob", "4 metrics better"):
                expect(summary).to_contain_text(words)
            # The three required checks pass; holdout-auc (optional) waits for the behavioural diff, or passed.
            expect(summary).to_contain_text(
                re.compile(r"Checks: (3 of 4 passing, 1 pending: holdout-auc \(optional\)|4 of 4 passing)")
            )
            expect(bob.locator(".cp-sum-turn")).to_be_visible()
            main = bob.locator("main").inner_text()
            assert '{"' not in main and '"kind"' not in main, "no raw JSON where a person reads"
            save_screenshot(bob, "test_the_reviewers_day_in_the_demo-summary.png", full_page=False)

            bob.locator("#review").get_by_role("button", name="Approve").click()
            expect(bob.locator(".cp-request-head .cp-state")).to_contain_text("applied")
            # Said once: not "Applied: applied." in the summary, nor a box repeating the badge.
            expect(bob.locator(".cp-sum-decided")).to_have_text("Applied.")
            expect(bob.locator(".cp-request-head .cp-reason")).to_have_count(0)
            assert errors == []
        finally:
            context.close()

        # MLflow itself, read directly: @champion is the challenger, and it moved once.
        assert mlflow.get_registered_model(MODEL).aliases == {"champion": challenger, "challenger": challenger}
        periods = champion_periods(base)
        assert periods[: len(periods_before)][:-1] == periods_before[:-1]
        added = periods[len(periods_before) :]
        assert [(p["version"], p["how"], p["request_id"]) for p in added] == [(challenger, "request", number)], added

        demo.wait_for(f"email to alice@example.com: [Checkpoint] Your request #{number} was approved by bob: {moves}")
        applied = f"email to alice@example.com: [Checkpoint] Your request #{number} is applied: {moves}"
        output = demo.wait_for(applied)
        to_alice = saved_email(applied, output)
        assert to_alice["To"] == "alice@example.com"
        assert alice.js_errors == []
    # Read once the demo has stopped, so MLflow's log is complete: one alias write, no stage write.
    assert registry_moves(demo.data / "mlflow" / "mlflow-server.log", since) == ["POST registered-models/alias"]
