"""Rollback against a real MLflow, through Checkpoint: v1 → v2 → v3 promoted to @champion through
reviewed requests (alice asks, bob approves), then rolled back — to the previous holder with one
approval, to a picked one from the CLI, at once under a fast-path rule — and every refused case
(never held that target, already true, files changed, deleted, another workspace, forged labels)
leaving MLflow as it was. The browser test clicks Roll back on the timeline page."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
import requests
from mlflow import MlflowClient

from checkpoint import create_app
from tests.support.apps import live
from tests.support.browser import SCREENSHOTS, browser_page, chromium  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model, unique
from tests.support.openapi import check_answer as _check
from tests.support.processes import run_against as run
from tests.support.workspaces import Direct, make_workspace

ART = "/api/2.0/mlflow-artifacts/artifacts"
SHOT = SCREENSHOTS / "rollback.png"
FAST_RULE = "fast rollback"
POLICY = (
    "rules:\n"
    f"  - name: {FAST_RULE}\n"
    "    models: ['fast-*']\n"
    "    targets: ['alias:champion']\n"
    "    rollback: {required_approvals: 0}\n"
)


@pytest.fixture
def checkpoint_config(checkpoint_config, tmp_path) -> dict:
    """Models named fast-* have a fast path for a genuine rollback of @champion; others the default rule."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {**checkpoint_config, "policy_file": policy, "admins": "root"}


def promote(base: str, name: str, version: str, title: str, **change) -> dict:
    """alice asks for @champion → ``version``, bob approves: applied."""
    body = {"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": version, **change}, "title": title}
    opened = api(base, "POST", "/requests", user="alice", json=body)
    assert opened.status_code == 201, opened.text
    done = api(base, "POST", f"/requests/{opened.json()['id']}/reviews", user="bob", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    return done


def roll_back(base: str, name: str, user: str = "alice", **body) -> requests.Response:
    return api(base, "POST", f"/models/{quote(name, safe='')}/rollback", user=user, json={"target": "alias:champion", **body})


def champion(mlflow_url: str, name: str) -> str:
    return MlflowClient(tracking_uri=mlflow_url).get_model_version_by_alias(name, "champion").version


def three_promotions(base: str, mlflow_url: str, prefix: str = "model") -> tuple[str, list[str], list[dict]]:
    name, versions = make_model(mlflow_url, name=unique(prefix), versions=4)
    done = [promote(base, name, v, f"Champion v{v}") for v in versions[:3]]
    assert champion(mlflow_url, name) == versions[2]
    return name, versions, done


def refused(answer: requests.Response, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) >= {"error_code", "message"}, body  # MLflow's error shape
    for word in words:
        assert word in body["message"], body["message"]


def champion_lane(base: str, name: str) -> list[dict]:
    data = api(base, "GET", f"/models/{quote(name, safe='')}/timeline", user="carol").json()
    return next(t["periods"] for t in data["targets"] if t["target"] == "alias:champion")


def test_rollback_to_the_previous_holder_with_one_approval_then_to_a_picked_one(live_checkpoint, mlflow_server):
    base, url = live_checkpoint.url, mlflow_server.url
    name, (v1, v2, v3, _), (first, second, third) = three_promotions(base, url)

    answer = roll_back(base, name)
    assert answer.status_code == 201, answer.text
    opened = answer.json()
    _check(api(base, "GET", "/openapi.json").json(), "/models/{name}/rollback", "post", "201", opened)
    assert (opened["kind"], opened["version"], opened["target"], opened["state"]) == ("set_alias", v2, "alias:champion", "open")
    assert opened["title"] == f"Roll back {name} @champion to v{v2}"
    assert f"Undoes request #{third['id']} “Champion v{v3}”" in opened["description"]
    found = opened["rollback"]
    assert (found["version"], found["replacing"], found["undoes_request_id"]) == (v2, [v3], third["id"])
    assert (found["held"]["request_id"], found["held"]["how"], found["verified"]) == (second["id"], "request", True)
    assert found["digest"] == second["challenger"]["digest"] == opened["challenger"]["digest"]
    assert next(e for e in opened["events"] if e["kind"] == "opened")["data"]["rollback"] == found  # in the log, signed
    # The diff reads in reverse: the old version is the challenger, the current holder the champion.
    assert (opened["challenger"]["version"], opened["champion"]["version"]) == (v2, v3)
    assert (opened["approvals"]["required"], opened["rule"]["name"]) == (1, "default")  # no fast path: the ordinary rule
    page = requests.get(f"{base}/checkpoint/requests/{opened['id']}", auth=("bob", "x"), timeout=30).text
    assert f"rollback: v{v2} returns, replacing v{v3}" in page
    assert f"v{v2} (challenger) against {name} v{v3} (champion)" in page
    assert champion(url, name) == v3  # nothing moves before the review
    undone = requests.get(f"{base}/checkpoint/requests/{third['id']}", auth=("bob", "x"), timeout=30).text
    assert f"Roll back to v{v2}" in undone and f"/checkpoint/models/{name}/rollback?target=alias" in undone  # its button

    self_review = api(base, "POST", f"/requests/{opened['id']}/reviews", user="alice", json={"verdict": "approve"})
    refused(self_review, 403, "does not allow approving your own request")
    done = api(base, "POST", f"/requests/{opened['id']}/reviews", user="bob", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    assert champion(url, name) == v2
    applied = next(e for e in done["events"] if e["kind"] == "applied")
    assert applied["data"]["rollback"] == found and "fast_path" not in applied["data"]

    # From the CLI, to a picked earlier holder: v1.
    cli = run(base, "request", "rollback", name, "--alias", "champion", "--to", v1)
    assert cli.returncode == 0, cli.stderr
    request_id = int(re.search(r"opened rollback request #(\d+) \(open\)", cli.stdout).group(1))
    assert f"Roll back {name} @champion to v{v1}" in cli.stdout
    done = api(base, "POST", f"/requests/{request_id}/reviews", user="bob", json={"verdict": "approve"}).json()
    assert done["state"] == "applied" and done["rollback"]["replacing"] == [v2], done
    assert champion(url, name) == v1

    lane = champion_lane(base, name)
    rows = [(p["version"], p["how"], p["request_id"]) for p in lane if p["how"] != "unknown"]
    assert rows == [
        (v1, "request", first["id"]),
        (v2, "request", second["id"]),
        (v3, "request", third["id"]),
        (v2, "rollback", opened["id"]),
        (v1, "rollback", request_id),
    ]


def test_fast_path_applies_at_once_and_only_for_a_genuine_rollback(sqlite_checkpoint, mlflow_server):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, (v1, v2, v3, v4), _ = three_promotions(base, url, prefix="fast")

    # An ordinary request for v2 under the same rule still needs its approval, and no body can say "rollback".
    plain = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
    forged = api(base, "POST", "/requests", user="alice", json={"change": plain, "rollback": {"verified": True}})
    refused(forged, 400, "unknown field(s): rollback")
    forged = api(base, "POST", "/requests", user="alice", json={"change": {**plain, "rollback": {"verified": True}}})
    assert forged.status_code in (400, 422) and "rollback" in forged.json()["message"], forged.text
    forged = roll_back(base, name, rollback={"verified": True}, to=v4)
    refused(forged, 400, "unknown field(s): rollback")
    ordinary = api(base, "POST", "/requests", user="alice", json={"change": plain}).json()
    assert (ordinary["state"], ordinary["approvals"]["required"], ordinary["rollback"]) == ("open", 1, None)
    assert champion(url, name) == v3

    answer = roll_back(base, name, to=v2, title="Bad v3: back to v2")
    assert answer.status_code == 201, answer.text
    done = answer.json()
    assert done["state"] == "applied" and done["title"] == "Bad v3: back to v2", done
    assert done["rollback"]["verified"] is True and done["rule"]["name"] == FAST_RULE
    assert done["approvals"]["required"] == 0
    assert champion(url, name) == v2
    approved = next(e for e in done["events"] if e["kind"] == "approved")
    assert approved["data"]["fast_path"] == FAST_RULE and approved["data"]["rollback"]["version"] == v2
    assert approved["actor"] == "alice"
    assert done["state_reason"] == "applied"
    assert approved["data"]["required_approvals"] == 0
    assert approved["data"]["reason"] == f"fast-path rollback under rule '{FAST_RULE}': 0 of 0 approvals"
    audit = api(base, "GET", "/audit/export", user="root").text
    assert f'"fast_path": "{FAST_RULE}"' in audit or f'"fast_path":"{FAST_RULE}"' in audit
    last = champion_lane(base, name)[-1]
    assert (last["version"], last["how"], last["request_id"], last["until"]) == (v2, "rollback", done["id"], None)


def test_a_stage_rollback_puts_the_version_back_and_archives_what_it_replaces(sqlite_checkpoint, mlflow_server):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, (v1, v2) = make_model(url, name=unique("stage"))
    for version in (v1, v2):
        change = {
            "kind": "transition",
            "name": name,
            "version": version,
            "stage": "Production",
            "archive_existing_versions": True,
        }
        asked = api(base, "POST", "/requests", user="alice", json={"change": change}).json()
        done = api(base, "POST", f"/requests/{asked['id']}/reviews", user="bob", json={"verdict": "approve"}).json()
        assert done["state"] == "applied", done
    cli = run(base, "request", "rollback", name, "--stage", "production", "--json")
    assert cli.returncode == 0, cli.stderr
    opened = json.loads(cli.stdout)
    assert (opened["kind"], opened["target"], opened["version"]) == ("transition", "stage:Production", v1)
    assert opened["change"]["archive_existing_versions"] is True and opened["rollback"]["replacing"] == [v2]
    assert opened["title"] == f"Roll back {name} stage Production to v{v1}"
    done = api(base, "POST", f"/requests/{opened['id']}/reviews", user="bob", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    direct = MlflowClient(tracking_uri=url)
    assert [direct.get_model_version(name, v).current_stage for v in (v1, v2)] == ["Production", "Archived"]
    data = api(base, "GET", f"/models/{quote(name, safe='')}/timeline", user="carol").json()
    production = next(t["periods"] for t in data["targets"] if t["target"] == "stage:Production")
    assert [(p["version"], p["how"], p["until"] is None) for p in production[-2:]] == [
        (v2, "request", False),
        (v1, "rollback", True),
    ]


def test_refused_rollbacks_leave_mlflow_unchanged(sqlite_checkpoint, mlflow_server):
    """Under a fast-path rule, so each refusal is one that would otherwise have applied at once."""
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, (v1, v2, v3, v4), _ = three_promotions(base, url, prefix="fast")
    direct = MlflowClient(tracking_uri=url)
    # v4 held stage:Production (through a reviewed request), never @champion.
    stage = {"kind": "transition", "name": name, "version": v4, "stage": "Production", "archive_existing_versions": False}
    asked = api(base, "POST", "/requests", user="alice", json={"change": stage}).json()
    assert api(base, "POST", f"/requests/{asked['id']}/reviews", user="bob", json={"verdict": "approve"}).json()["state"] == (
        "applied"
    )
    before = api(base, "GET", "/requests", params={"model": name, "state": "open"}).json()["requests"]

    refused(roll_back(base, name, to=v4), 409, f"v{v4} never held alias:champion of '{name}'", "open an ordinary request")
    refused(roll_back(base, name, to="99"), 409, "v99 never held alias:champion")
    refused(roll_back(base, name, to=v3), 409, f"already true: v{v3} holds alias:champion")
    refused(roll_back(base, name, target="model:whatever"), 400, "target must be alias:NAME or a governed stage")
    refused(roll_back(base, name, target="stage:Production", to=v1), 409, f"v{v1} never held stage:Production")

    # v1's files change after it held @champion: written straight to MLflow's storage.
    uri = direct.get_model_version_download_uri(name, v1)
    path = re.sub(r"^mlflow-artifacts:(//[^/]*)?/*", "", uri)
    put = requests.put(f"{url}{ART}/{path}/weights.bin", data=b"swapped", timeout=30)
    assert put.status_code == 200, put.text
    refused(roll_back(base, name, to=v1), 409, f"the files of v{v1} of '{name}' changed since it last held alias:champion")

    direct.delete_model_version(name, v2)  # deleted since it held @champion
    refused(roll_back(base, name, to=v2), 409, f"v{v2} of '{name}' no longer exists in MLflow")
    refused(roll_back(base, name), 409, f"v{v2} of '{name}' no longer exists")  # the previous holder is v2 too

    assert champion(url, name) == v3
    assert api(base, "GET", "/requests", params={"model": name, "state": "open"}).json()["requests"] == before
    assert [p["how"] for p in champion_lane(base, name)].count("rollback") == 0

    # The form answers with the same reasons.
    form = requests.get(
        f"{base}/checkpoint/models/{quote(name, safe='')}/rollback",
        params={"target": "alias:champion", "to": v4},
        auth=("alice", "x"),
        timeout=30,
    )
    assert form.status_code == 409 and f"v{v4} never held alias:champion" in form.text
    # The form's post needs its CSRF token like every form (here with v1's files still changed: no request either way).
    forged = requests.post(
        f"{base}/checkpoint/models/{quote(name, safe='')}/rollback",
        data={"target": "alias:champion", "to": v3, "title": "x"},
        auth=("alice", "x"),
        timeout=30,
    )
    assert forged.status_code == 400 and "CSRF" in forged.text
    assert champion(url, name) == v3


def test_a_version_that_held_the_target_in_another_workspace_is_refused(mlflow_workspaces_server, sqlite_url, tmp_path):
    url = mlflow_workspaces_server.url
    other = make_workspace(url, "rb")
    name = f"fast-{unique('ws')}"
    Direct(url).seed(name, False, "default")
    Direct(url, other).seed(name, False, other)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    app = create_app({"registry_url": url, "database_url": sqlite_url, "data_dir": tmp_path, "policy_file": policy})
    with live(app, sqlite_url) as served:
        base = served.url
        promote(base, name, "1", "v1 in default")
        promote(base, name, "2", "v2 in default")
        promote(base, name, "2", f"v2 in {other}", workspace=other)
        refused(
            roll_back(base, name, to="1", workspace=other),
            409,
            f"v1 never held alias:champion of '{name}' in workspace '{other}'",
        )
        refused(roll_back(base, name, workspace=other), 409, "no earlier holder of alias:champion")
        assert Direct(url, other).alias(name, "champion") == "2"
        back = roll_back(base, name).json()  # in the default workspace v1 did hold it
        assert back["state"] == "applied" and back["workspace"] == "default", back
        assert (Direct(url).alias(name, "champion"), Direct(url, other).alias(name, "champion")) == ("1", "2")


@pytest.mark.browser
def test_roll_back_from_the_timeline_page_in_a_browser(sqlite_checkpoint, mlflow_server, browser_page):  # noqa: F811
    from playwright.sync_api import expect

    base, page = sqlite_checkpoint.url, browser_page
    name, (v1, v2, v3, _), (_, _, third) = three_promotions(base, mlflow_server.url)
    page.goto(f"{base}/checkpoint/whoami")
    page.get_by_label("Name", exact=False).fill("alice")
    page.get_by_role("button").first.click()

    page.goto(f"{base}/checkpoint/models/{quote(name, safe='')}/timeline")
    table = page.get_by_role("table").nth(0)
    expect(table.get_by_role("link", name=f"Roll back to v{v3}")).to_have_count(0)  # the current holder
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT.with_name("rollback-timeline.png")), full_page=True)
    table.get_by_role("link", name=f"Roll back to v{v2}").click()
    expect(page.locator("h1")).to_have_text(f"Roll back {name} @champion")
    expect(page.get_by_label("Title")).to_have_value(f"Roll back {name} @champion to v{v2}")
    expect(page.get_by_label("Description")).to_contain_text(f"Undoes request #{third['id']} “Champion v{v3}”")
    expect(page.locator(".cp-rollback-lede")).to_contain_text(f"v{v2} returns, replacing v{v3}")
    expect(page.get_by_role("link", name=f"v{v1}", exact=True)).to_have_count(1)  # another earlier holder to pick
    page.screenshot(path=str(SHOT), full_page=True)

    page.get_by_role("button", name="Open rollback request").click()  # the form's CSRF token goes with it
    expect(page.locator(".cp-rollback-note")).to_contain_text(f"rollback: v{v2} returns, replacing v{v3}")
    expect(page.locator("#diff-h")).to_contain_text(f"rollback: v{v2} returns, replacing v{v3}")
    page.screenshot(path=str(SHOT.with_name("rollback-request.png")), full_page=True)
    assert champion(mlflow_server.url, name) == v3  # the ordinary rule: waiting for a review

    request_id = int(page.url.rsplit("/", 1)[-1])
    done = api(base, "POST", f"/requests/{request_id}/reviews", user="bob", json={"verdict": "approve"}).json()
    assert done["state"] == "applied" and champion(mlflow_server.url, name) == v2
    page.goto(f"{base}/checkpoint/models/{quote(name, safe='')}/timeline")
    bar = page.locator("svg.cp-tl-svg g.cp-tl-rollback")
    expect(bar).to_have_count(1)
    assert f"rollback #{request_id}" in (bar.locator("title").text_content() or "")
    rows = page.get_by_role("table").nth(0).locator("tbody tr")
    expect(rows.last).to_contain_text("rollback")
    expect(rows.last).not_to_contain_text("Roll back to")  # it holds now
    page.screenshot(path=str(SHOT.with_name("rollback-timeline-after.png")), full_page=True)
    assert page.js_errors == []
