"""The timeline against a real MLflow, through Checkpoint: a champion first seen in MLflow, a
series of promotions (alice asks, bob approves), a stage with an archive, a break-glass and an
outside change made straight on MLflow (noticed when the next request for the target opens).
Every period is asserted, then ``which --at`` at each boundary (just before, at, just after)
through the API, the Python client and the CLI, and the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
import requests
from mlflow import MlflowClient

from checkpoint.client import CheckpointClient, NotKnown
from tests.support.browser import SCREENSHOTS, browser_page, chromium  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model
from tests.support.openapi import check_answer as _check
from tests.support.processes import run_against as run

US = timedelta(microseconds=1)


@pytest.fixture
def checkpoint_config(checkpoint_config) -> dict:
    return {**checkpoint_config, "admins": "root"}


def ask(base: str, change: dict, title: str) -> dict:
    opened = api(base, "POST", "/requests", user="alice", json={"change": change, "title": title})
    assert opened.status_code == 201, opened.text
    return opened.json()


def approve(base: str, request_id: int) -> dict:
    done = api(base, "POST", f"/requests/{request_id}/reviews", user="bob", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    return done


def applied_at(item: dict) -> str:
    return next(e["created_at"] for e in item["events"] if e["kind"] == "applied")


def moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


@dataclass(frozen=True)
class Story:
    name: str
    versions: tuple[str, str, str]
    first: dict  # alice moves @champion to v2, bob approves
    prod1: dict  # v1 to Production
    prod2: dict  # v2 to Production, archiving v1
    urgent: dict  # root breaks the glass: @champion to v3
    noticed: dict  # opening it noticed @champion moved to v1 in MLflow


def tell(base: str, mlflow_url: str, hotfix: str = "Hotfix") -> Story:
    """The story every test here reads: see the module's docstring."""
    direct = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    name, (v1, v2, v3) = make_model(mlflow_url, versions=3)
    direct.set_registered_model_alias(name, "champion", v1)  # before Checkpoint knows the model

    alias = {"kind": "set_alias", "name": name, "alias": "champion"}
    first = ask(base, {**alias, "version": v2}, "Retrained on May data")
    seen = next(e for e in api(base, "GET", "/audit/export", user="root").text.splitlines() if '"outside_change"' in e)
    assert name in seen and '"first_seen": true' in seen  # opening read the champion Checkpoint never saw placed
    first = approve(base, first["id"])

    stage = {"kind": "transition", "name": name, "stage": "Production"}
    prod1 = approve(base, ask(base, {**stage, "version": v1, "archive_existing_versions": False}, "v1 to Production")["id"])
    prod2 = approve(base, ask(base, {**stage, "version": v2, "archive_existing_versions": True}, "v2 replaces v1")["id"])
    assert direct.get_model_version(name, v1).current_stage == "Archived"

    urgent = ask(base, {**alias, "version": v3}, hotfix)
    forced = api(base, "POST", f"/requests/{urgent['id']}/break-glass", user="root", json={"reason": "fraud spike"}).json()
    assert forced["state"] == "applied", forced

    direct.set_registered_model_alias(name, "champion", v1)  # straight on MLflow, behind Checkpoint's back
    noticed = ask(base, {**alias, "version": v2}, "Back to v2")  # opening it reads the champion: v1
    return Story(name, (v1, v2, v3), first, prod1, prod2, forced, noticed)


def test_timeline_of_promotions_break_glass_and_an_outside_change(live_checkpoint, mlflow_server):
    base = live_checkpoint.url
    told = tell(base, mlflow_server.url)
    name, (v1, v2, v3) = told.name, told.versions
    first, prod1, prod2, urgent, forced, noticed = told.first, told.prod1, told.prod2, told.urgent, told.urgent, told.noticed
    data = api(base, "GET", f"/models/{quote(name, safe='')}/timeline", user="carol").json()
    document = api(base, "GET", "/openapi.json").json()
    _check(document, "/models/{name}/timeline", "get", "200", data)
    assert (data["model"], data["workspace"]) == (name, "default")
    lanes = {lane["target"]: lane["periods"] for lane in data["targets"]}
    assert list(lanes) == ["alias:champion", "stage:Production"]
    champion, production = lanes["alias:champion"], lanes["stage:Production"]
    rows = [(p["version"], p["how"], p["request_id"], p["actor"], p["approvers"], p["first_seen"]) for p in champion]
    assert rows == [
        (None, "unknown", None, None, [], False),
        (v1, "outside_change", None, None, [], True),
        (v2, "request", first["id"], "alice", ["bob"], False),
        (v3, "break_glass", urgent["id"], "alice", [], False),
        (v1, "outside_change", None, None, [], False),
    ]
    t_seen, t_first, t_forced = champion[1]["from"], applied_at(first), applied_at(forced)
    t_noticed = champion[4]["from"]
    assert [(p["from"], p["until"]) for p in champion] == [
        (None, t_seen),
        (t_seen, t_first),
        (t_first, t_forced),
        (t_forced, t_noticed),
        (t_noticed, None),
    ]
    assert moment(t_seen) <= moment(first["created_at"]) <= moment(t_first)  # seen as the request opened
    assert moment(t_forced) < moment(t_noticed) <= moment(noticed["created_at"]) + timedelta(seconds=5)
    assert champion[3]["note"] == "Hotfix — break-glass by root: fraud spike" and champion[2]["note"] == "Retrained on May data"
    assert champion[2]["request_url"].endswith(f"/checkpoint/requests/{first['id']}")
    t_prod1, t_prod2 = applied_at(prod1), applied_at(prod2)
    assert [(p["version"], p["from"], p["until"], p["how"], p["request_id"]) for p in production] == [
        (None, None, t_prod1, "unknown", None),
        (v1, t_prod1, t_prod2, "request", prod1["id"]),  # archived by the next one
        (v2, t_prod2, None, "request", prod2["id"]),
    ]

    # which --at, at each boundary of the champion's lane: before, at, after.
    def which_at(at: datetime, **target) -> dict:
        answer = api(base, "GET", "/which", user="carol", params={"model": name, **target, "at": at.isoformat()})
        assert answer.status_code == 200, answer.text
        _check(document, "/which", "get", "200", answer.json())
        return answer.json()

    expected = [
        (t_seen, None, v1),  # before the first record: not known
        (t_first, v1, v2),
        (t_forced, v2, v3),
        (t_noticed, v3, v1),
    ]
    for boundary, before, after in expected:
        at = moment(boundary)
        just_before, exactly, just_after = (which_at(t, alias="champion") for t in (at - US, at, at + US))
        if before is None:
            assert just_before["known"] is False and just_before["version"] is None
            assert just_before["reason"].startswith("Checkpoint has no record of alias:champion before that time")
        else:
            assert (just_before["known"], just_before["version"]) == (True, before)
        assert (exactly["known"], exactly["version"], exactly["versions"]) == (True, after, [after])
        assert (just_after["version"], just_after["at"]) == (after, (at + US).isoformat())
    overlap = which_at(moment(t_prod2) - US, stage="production")
    assert (overlap["version"], overlap["versions"], overlap["stage"]) == (v1, [v1], "production")
    assert which_at(moment(t_prod2), stage="Production")["versions"] == [v2]
    assert which_at(moment(t_prod1) - US, stage="Production")["known"] is False

    # The Python client: a zone-less time is UTC; before the first record it raises NotKnown.
    client = CheckpointClient(base, username="carol", password="x")
    naive = moment(t_first).replace(tzinfo=None)
    assert client.which(name, alias="champion", at=naive) == v2
    assert client.which(name, alias="champion", at=naive - US) == v1
    assert client.which(name, alias="champion", at=t_forced) == v3
    assert client.which(name, alias="champion") == v1  # without at: MLflow, now
    with pytest.raises(NotKnown, match="no record of alias:champion before that time"):
        client.which(name, alias="champion", at=moment(t_seen) - US)
    assert [t["target"] for t in client.timeline(name)["targets"]] == ["alias:champion", "stage:Production"]

    # The CLI: the version, exit 1 when nothing held it, 2 when Checkpoint cannot say.
    zulu = moment(t_forced).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    held = run(base, "which", name, "--alias", "champion", "--at", zulu, user="carol")
    assert (held.returncode, held.stdout.strip()) == (0, v3), held.stderr
    unknown = run(base, "which", name, "--stage", "Production", "--at", (moment(t_prod1) - US).isoformat(), user="carol")
    assert unknown.returncode == 2 and "unknown: Checkpoint has no record of stage:Production" in unknown.stderr
    staging = run(base, "which", name, "--stage", "Staging", "--at", t_prod2, user="carol")
    assert staging.returncode == 2 and "no record of stage:Staging" in staging.stderr
    printed = run(base, "timeline", name, user="carol")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == "alias:champion" and lines[1].startswith("  unknown  (before the first record) → ")
    assert f"  v{v3}" in lines[4] and f"break_glass #{urgent['id']} by alice" in lines[4]
    assert f"request #{first['id']} by alice, approved by bob" in lines[3]

    # The page: one lane per target, bars linking to their requests, the periods as a table.
    page = requests.get(f"{base}/checkpoint/models/{quote(name, safe='')}/timeline", auth=("carol", "x"), timeout=30)
    assert page.status_code == 200
    assert page.text.count('class="cp-tl-lane"') == 2
    for item in (first, prod1, prod2, urgent):
        assert f'href="/checkpoint/requests/{item["id"]}"' in page.text
    assert "<title>" in page.text and "asked by alice, approved by bob" in page.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alias": "champion", "at": "yesterday"}, "at must be an ISO 8601 time such as 2026-11-01T12:00Z, got 'yesterday'"),
        ({"alias": "champion", "at": ""}, "at must be an ISO 8601 time"),
        ({"stage": "Prod", "at": "2026-11-01T12:00Z"}, "stage must be one of"),
        ({"at": "2026-11-01T12:00Z"}, "give model and exactly one of stage or alias"),
    ],
)
def test_which_at_refuses_a_malformed_time(sqlite_checkpoint, params, message):
    answer = api(sqlite_checkpoint.url, "GET", "/which", params={"model": "m", **params})
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in answer.json()["message"]


def test_a_model_checkpoint_never_saw(sqlite_checkpoint):
    empty = api(sqlite_checkpoint.url, "GET", "/models/nobody%2Fknows/timeline").json()
    assert empty == {"model": "nobody/knows", "workspace": "default", "targets": []}
    answer = api(sqlite_checkpoint.url, "GET", "/which", params={"model": "nobody", "alias": "a", "at": "2026-11-01"}).json()
    assert answer["known"] is False and answer["reason"] == "Checkpoint has no record of alias:a"
    assert answer["at"] == "2026-11-01T00:00:00+00:00"  # a date alone is its midnight, UTC


XSS = '<img src=x onerror="window.__pwned = 1">'
SHOT = SCREENSHOTS / "timeline.png"


@pytest.mark.browser
def test_timeline_page_in_a_browser(sqlite_checkpoint, mlflow_server, browser_page):  # noqa: F811 - the imported fixture
    from playwright.sync_api import expect

    base, page = sqlite_checkpoint.url, browser_page
    told = tell(base, mlflow_server.url, hotfix=f"Hotfix {XSS}")
    _, v2, v3 = told.versions

    # Reached from the request page (and the history page links it too).
    page.goto(f"{base}/checkpoint/requests/{told.first['id']}")
    page.get_by_role("link", name="timeline", exact=True).click()
    expect(page).to_have_url(f"{base}/checkpoint/models/{quote(told.name, safe='')}/timeline")
    expect(page.locator("h1")).to_have_text(f"Timeline of {told.name}")

    svg = page.locator("svg.cp-tl-svg")
    expect(svg.locator(".cp-tl-lane")).to_have_count(2)
    expect(svg.locator(".cp-tl-target")).to_have_text(["@champion", "Production"])
    for item in (told.first, told.prod1, told.prod2, told.urgent):
        expect(svg.locator(f'a[href="/checkpoint/requests/{item["id"]}"]')).to_have_count(1)
    # Hover text: who and why, the typed title as text (never markup).
    glass = svg.locator("g.cp-tl-break_glass title")
    expect(glass).to_have_count(1)
    hover = glass.text_content() or ""
    assert f"v{v3}:" in hover and f"break-glass #{told.urgent['id']}" in hover
    assert f"Hotfix {XSS} — break-glass by root: fraud spike" in hover
    approved = svg.locator(f'a[href="/checkpoint/requests/{told.first["id"]}"] title').text_content() or ""
    assert "asked by alice, approved by bob" in approved and "Retrained on May data" in approved
    expect(svg.locator("g.cp-tl-outside_change")).to_have_count(1)  # v1 put back in MLflow behind Checkpoint's back
    expect(svg.locator("g.cp-tl-first_seen")).to_have_count(1)  # v1 as Checkpoint first found it: no warning
    expect(svg.locator("g.cp-tl-unknown")).to_have_count(2)  # before the first record, in each lane

    # The table below: every period, for keyboard and screen-reader users.
    tables = page.get_by_role("table")
    expect(tables).to_have_count(2)
    champion_rows = tables.nth(0).locator("tbody tr")
    expect(champion_rows).to_have_count(5)
    expect(champion_rows.nth(1)).to_contain_text("found in place")
    expect(champion_rows.nth(4)).to_contain_text("outside change")
    expect(champion_rows.nth(2)).to_contain_text(f"v{v2}")
    expect(champion_rows.nth(2)).to_contain_text("alice")
    expect(champion_rows.nth(3)).to_contain_text(f"Hotfix {XSS} — break-glass by root: fraud spike")
    expect(page.get_by_role("row").filter(has_text="break-glass").first).to_contain_text(f"#{told.urgent['id']}")
    assert page.evaluate("window.__pwned") is None and page.locator("main img").count() == 0
    assert page.js_errors == []
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT), full_page=True)

    # A bar is a link to its request; the history page links back to the timeline.
    svg.locator(f'a[href="/checkpoint/requests/{told.prod2["id"]}"]').click()
    expect(page).to_have_url(f"{base}/checkpoint/requests/{told.prod2['id']}")
    page.goto(f"{base}/checkpoint/models/{quote(told.name, safe='')}/history")
    page.get_by_role("link", name="Timeline (what held each target when, as lanes)").click()
    expect(page.locator("svg.cp-tl-svg")).to_be_visible()


def test_the_latest_version_of_a_protected_model(sqlite_checkpoint, mlflow_server):
    """Copies into prod.NAME (alice asks, bob approves) are the lane of its latest version; deleting
    the latest puts the one before it back; the first copy's model existed with no version."""
    base = sqlite_checkpoint.url
    name, (v1, v2) = make_model(mlflow_server.url)
    prod = f"prod.{name}"
    MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url).create_registered_model(prod)
    copy = {"kind": "create_version", "name": prod}
    first = approve(base, ask(base, {**copy, "source": f"models:/{name}/{v1}"}, "copy v1")["id"])
    second = approve(base, ask(base, {**copy, "source": f"models:/{name}/{v2}"}, "copy v2")["id"])
    dropped = approve(base, ask(base, {"kind": "delete_version", "name": prod, "version": "2"}, "drop the copy of v2")["id"])

    lanes = api(base, "GET", f"/models/{quote(prod, safe='')}/timeline").json()["targets"]
    assert [lane["target"] for lane in lanes] == [f"model:{prod}"]
    periods = [(p["version"], p["from"], p["until"], p["how"], p["request_id"]) for p in lanes[0]["periods"]]
    t1, t2, t3 = applied_at(first), applied_at(second), applied_at(dropped)
    assert periods == [
        (None, None, t1, "unknown", None),
        ("1", t1, t2, "request", first["id"]),
        ("2", t2, t3, "request", second["id"]),
        ("1", t3, None, "request", dropped["id"]),
    ]
    unprotected = api(base, "GET", f"/models/{quote(name, safe='')}/timeline").json()
    assert unprotected["targets"] == []  # nothing of the source model was governed
