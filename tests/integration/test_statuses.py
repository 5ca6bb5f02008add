"""Statuses from CI (issue 16 §2) against a real MLflow: a rule's ``required_statuses`` block a
request until each is ``success``, on the request or on the version it promotes (a copy into
``prod.*`` included); the latest per context wins and the history stays; a status is bound to the
files it was posted for; an arriving status applies the request on its own, exactly once, with two
app instances on one PostgreSQL; bad input stores nothing; the CLI and the request page.
The grammar of ``required_statuses`` and what "latest" means are in tests/unit/review/test_statuses.py.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient
from playwright.sync_api import expect

from checkpoint import create_app
from checkpoint.storage.models import EventRow, StatusRow
from tests.support.apps import close_app, live
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, unique
from tests.support.openapi import check_answer
from tests.support.race import race
from tests.support.relay import Relay

POLICY = """\
rules:
  - name: ci gated
    models: ["ci-*", "prod.ci-*"]
    required_approvals: 1
    required_statuses: [ci/eval]
  - name: bot gated
    models: ["bot-*"]
    required_approvals: 1
    required_statuses: [{context: security/scan, from: [ci-bot]}]
  - name: racing
    models: ["race-*"]
    required_approvals: 1
    required_statuses: [ci/eval, security/scan]
webhooks:
  - name: ci-feed
    url: http://127.0.0.1:9/never-sent   # no background thread here: deliveries stay in the outbox
    events: [status_changed]
"""
BIN = Path(sys.executable).parent


@pytest.fixture
def checkpoint_config(tmp_path) -> dict:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"policy_file": policy, "background": False}


def direct(url: str) -> MlflowClient:
    return MlflowClient(tracking_uri=url, registry_uri=url)


def model_with_files(url: str, prefix: str, tmp_path: Path, versions: int = 2) -> tuple[str, list[tuple[str, str]]]:
    """A model whose versions have real files (logged straight on MLflow): (version, run id) each."""
    client = direct(url)
    name = unique(prefix)
    client.create_registered_model(name)
    experiment = client.get_experiment_by_name("status-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("status-tests")
    made = []
    for i in range(versions):
        run = client.create_run(experiment_id)
        weights = tmp_path / f"{name}-weights-{i}.txt"
        weights.write_text(f"weights of version {i + 1}\n")
        client.log_artifact(run.info.run_id, str(weights), artifact_path="model")
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        made.append((version.version, run.info.run_id))
    return name, made


def promote(base: str, name: str, version: str, user: str = "alice") -> dict:
    change = {"kind": "set_alias", "name": name, "version": version, "alias": "champion"}
    answer = api(base, "POST", "/requests", user, json={"change": change})
    assert answer.status_code == 201, answer.text
    return answer.json()


def post(base: str, path: str, user: str, **body) -> dict:
    answer = api(base, "POST", f"{path}/statuses", user, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def approve(base: str, request_id: int, user: str = "bob") -> dict:
    answer = api(base, "POST", f"/requests/{request_id}/reviews", user, json={"verdict": "approve"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def champion(url: str, name: str) -> str | None:
    try:
        return direct(url).get_model_version_by_alias(name, "champion").version
    except Exception:  # noqa: BLE001 - MLflow's "no such alias"
        return None


def test_a_request_status_blocks_until_success_and_then_applies_it_on_its_own(sqlite_checkpoint, mlflow_server, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _), _) = model_with_files(url, "ci", tmp_path, versions=2)
    opened = promote(base, name, v1)
    rid = opened["id"]
    assert opened["blocked_by_statuses"] == ["ci/eval"] and opened["statuses"] == []

    after_review = approve(base, rid)
    assert after_review["state"] == "open" and after_review["approvals"]["met"] is True
    assert after_review["blocked_by_statuses"] == ["ci/eval"]

    for state in ("pending", "failure"):
        posted = post(base, f"/requests/{rid}", "ci-bot", context="ci/eval", state=state, target_url="https://ci.example/run/1")
        assert posted["request"]["state"] == "open" and posted["request"]["blocked_by_statuses"] == ["ci/eval"]
    assert champion(url, name) is None

    done = post(
        base,
        f"/requests/{rid}",
        "ci-bot",
        context="ci/eval",
        state="success",
        target_url="https://ci.example/run/2",
        description="auc 0.93",
    )
    assert done["request"]["state"] == "applied", done["request"]
    assert champion(url, name) == v1

    final = api(base, "GET", f"/requests/{rid}", "bob").json()
    (standing,) = final["statuses"]
    assert standing["context"] == "ci/eval" and standing["state"] == "success"
    assert standing["target_url"] == "https://ci.example/run/2" and standing["description"] == "auc 0.93"
    assert standing["posted_by"] == "ci-bot" and standing["scope"] == "request" and standing["updated_at"]
    assert final["blocked_by_statuses"] == []
    kinds = [e["kind"] for e in final["events"]]
    assert kinds.count("status_changed") == 3 and kinds.count("applied") == 1, kinds
    approved = next(e for e in final["events"] if e["kind"] == "approved")
    assert approved["actor"] == "checkpoint", approved  # moved on by Checkpoint; the poster is on the status

    deliveries = api(base, "GET", "/deliveries", "bob").json()["deliveries"]
    mine = [d for d in deliveries if d["request_id"] == rid]
    assert [d["event"] for d in mine] == ["status_changed"] * 3 and {d["webhook"] for d in mine} == {"ci-feed"}

    listed = api(base, "GET", f"/requests/{rid}/statuses", "bob").json()
    assert [s["state"] for s in listed["history"]] == ["success", "failure", "pending"]  # newest first: the history stays
    assert [s["state"] for s in listed["statuses"]] == ["success"]

    document = requests.get(f"{base}/checkpoint/api/v1/openapi.json", timeout=30).json()  # the answers fit the document
    check_answer(document, "/requests/{request_id}/statuses", "post", "201", done)
    check_answer(document, "/requests/{request_id}/statuses", "get", "200", listed)
    check_answer(document, "/requests/{request_id}", "get", "200", final)
    version = api(base, "GET", f"/models/{name}/versions/{v1}/statuses", "bob").json()
    check_answer(document, "/models/{name}/versions/{version}/statuses", "get", "200", version)


def test_the_latest_per_context_wins_and_a_later_failure_blocks_again(sqlite_checkpoint, mlflow_server, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "ci", tmp_path, versions=1)
    rid = promote(base, name, v1)["id"]
    post(base, f"/requests/{rid}", "ci-bot", context="ci/eval", state="success")
    later = post(base, f"/requests/{rid}", "ci-bot", context="ci/eval", state="error", description="runner lost")
    assert later["request"]["blocked_by_statuses"] == ["ci/eval"]
    post(base, f"/requests/{rid}", "ci-bot", context="lint", state="failure")  # not required: shown, blocks nothing
    after = approve(base, rid)
    assert after["state"] == "open" and after["blocked_by_statuses"] == ["ci/eval"]
    assert {s["context"]: (s["state"], s["required"]) for s in after["statuses"]} == {
        "ci/eval": ("error", True),
        "lint": ("failure", False),
    }
    assert champion(url, name) is None


def test_a_version_status_counts_for_every_request_promoting_it_copies_included(sqlite_checkpoint, mlflow_server, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _), (v2, _)) = model_with_files(url, "ci", tmp_path, versions=2)
    copy = {"kind": "create_version", "name": f"prod.{name}", "source": f"models:/{name}/{v2}"}
    copied = api(base, "POST", "/requests", "alice", json={"change": copy})
    assert copied.status_code == 201, copied.text
    promoted = promote(base, name, v2)
    other = promote(base, name, v1)  # another version: the status on v2 says nothing about it
    for item in (copied.json(), promoted, other):
        approve(base, item["id"])

    posted = post(base, f"/models/{name}/versions/{v2}", "ci-bot", context="ci/eval", state="success")
    assert posted["status"]["scope"] == "version" and posted["status"]["digest"]
    states = {i: api(base, "GET", f"/requests/{i}", "bob").json() for i in (copied.json()["id"], promoted["id"], other["id"])}
    assert states[copied.json()["id"]]["state"] == "applied", states[copied.json()["id"]]["state_reason"]
    assert states[promoted["id"]]["state"] == "applied"
    assert states[other["id"]]["state"] == "open" and states[other["id"]]["blocked_by_statuses"] == ["ci/eval"]
    assert [v.source for v in direct(url).search_model_versions(f"name = 'prod.{name}'")] == [f"models:/{name}/{v2}"]
    assert champion(url, name) == v2
    version_history = api(base, "GET", f"/models/{name}/versions/{v2}/statuses", "bob").json()
    assert [s["state"] for s in version_history["history"]] == ["success"]
    # The status's event is in the timeline of each request it counted for.
    assert "status_changed" in [e["kind"] for e in states[copied.json()["id"]]["events"]]


def test_a_version_status_posted_before_the_request_opens_counts(sqlite_checkpoint, mlflow_server, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "ci", tmp_path, versions=1)
    post(base, f"/models/{name}/versions/{v1}", "ci-bot", context="ci/eval", state="success")
    opened = promote(base, name, v1)
    assert opened["blocked_by_statuses"] == [] and opened["statuses"][0]["scope"] == "version"
    assert approve(base, opened["id"])["state"] == "applied"


def test_files_relogged_after_a_success_leave_it_behind(sqlite_checkpoint, mlflow_server, tmp_path):
    """A status speaks for the files it was posted for: re-logging the version's files (straight on
    MLflow) refreshes the request's digest, the old success no longer counts, CI must post again."""
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, run_id),) = model_with_files(url, "ci", tmp_path, versions=1)
    post(base, f"/models/{name}/versions/{v1}", "ci-bot", context="ci/eval", state="success")
    opened = promote(base, name, v1)
    first = opened["challenger"]["digest"]
    assert opened["blocked_by_statuses"] == []

    extra = tmp_path / "backdoor.txt"
    extra.write_text("not what CI evaluated\n")
    direct(url).log_artifact(run_id, str(extra), artifact_path="model")
    refused = api(base, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"})
    assert refused.status_code == 409 and "files changed" in refused.json()["message"]
    now = api(base, "GET", f"/requests/{opened['id']}", "bob").json()
    assert now["challenger"]["digest"] != first
    assert now["blocked_by_statuses"] == ["ci/eval"] and now["statuses"] == []
    assert approve(base, opened["id"])["state"] == "open"  # approved on the new files, still waiting for CI

    again = post(base, f"/models/{name}/versions/{v1}", "ci-bot", context="ci/eval", state="success")
    assert again["status"]["digest"] == now["challenger"]["digest"]
    assert api(base, "GET", f"/requests/{opened['id']}", "bob").json()["state"] == "applied"
    assert champion(url, name) == v1


def test_a_failure_posted_while_an_approved_request_waits_stops_its_apply(sqlite_checkpoint, mlflow_server, tmp_path):
    """Approved and held (its apply_at), then CI reports a failure: the apply re-reads the statuses."""
    from checkpoint.services import services

    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "ci", tmp_path, versions=1)
    rid = promote(base, name, v1)["id"]
    post(base, f"/requests/{rid}", "ci-bot", context="ci/eval", state="success")
    workflow = services(sqlite_checkpoint.app).workflow
    store = workflow.store
    store.transition(rid, ("open",), "approved", actor="test", event="approved")  # as an approval held back would be
    post(base, f"/requests/{rid}", "ci-bot", context="ci/eval", state="failure", description="regression found")
    after = workflow.apply(rid, "checkpoint")
    assert after.state == "open" and "required status ci/eval is failure" in after.state_reason
    assert champion(url, name) is None


def test_a_rule_taking_a_context_from_ci_bot_only_ignores_the_author(sqlite_checkpoint, mlflow_server, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "bot", tmp_path, versions=1)
    rid = promote(base, name, v1)["id"]
    approve(base, rid)
    own = api(base, "POST", f"/requests/{rid}/statuses", "alice", json={"context": "security/scan", "state": "success"})
    assert own.status_code == 403 and "only from ci-bot" in own.json()["message"], own.text
    on_version = post(base, f"/models/{name}/versions/{v1}", "alice", context="security/scan", state="success")
    assert on_version["status"]["posted_by"] == "alice"  # stored and in the history, but it does not count
    now = api(base, "GET", f"/requests/{rid}", "bob").json()
    assert now["state"] == "open" and now["blocked_by_statuses"] == ["security/scan"]
    assert champion(url, name) is None
    post(base, f"/requests/{rid}", "ci-bot", context="security/scan", state="success")
    assert api(base, "GET", f"/requests/{rid}", "bob").json()["state"] == "applied"


def stored(database_url: str) -> tuple[int, int]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return (
                connection.scalar(sa.select(sa.func.count()).select_from(StatusRow)),
                connection.scalar(sa.select(sa.func.count()).select_from(EventRow)),
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("path", "user", "body", "status", "words"),
    [
        ("/requests/{rid}", "ci-bot", {"context": "ci/eval", "state": "passed"}, 400, "state must be one of"),
        ("/requests/{rid}", "ci-bot", {"state": "success"}, 400, "context is required"),
        ("/requests/{rid}", "ci-bot", {"context": "ci eval!", "state": "success"}, 400, "context:"),
        (
            "/requests/{rid}",
            "ci-bot",
            {"context": "ci/eval", "state": "success", "target_url": "javascript:alert(1)"},
            400,
            "http",
        ),
        ("/requests/{rid}", "ci-bot", {"context": "ci/eval", "state": "success", "target_url": "ftp://x/y"}, 400, "http"),
        ("/requests/{rid}", "ci-bot", {"context": "ci/eval", "state": "success", "colour": "red"}, 400, "unknown field"),
        ("/requests/{rid}", "ci-bot", {"context": "ci/eval", "state": "success", "description": 7}, 400, "description"),
        ("/requests/999999", "ci-bot", {"context": "ci/eval", "state": "success"}, 404, "does not exist"),
        ("/models/{name}/versions/99", "ci-bot", {"context": "ci/eval", "state": "success"}, 404, "has no version 99"),
        ("/models/{name}/versions/abc", "ci-bot", {"context": "ci/eval", "state": "success"}, 404, "has no version abc"),
        ("/models/no-such-model-x/versions/1", "ci-bot", {"context": "ci/eval", "state": "success"}, 404, "has no version"),
        ("/models/{name}/versions/{v1}", "ci-bot", {"context": "ci/eval", "state": "maybe"}, 400, "state must be one of"),
    ],
)
def test_bad_input_gives_a_clear_4xx_and_stores_nothing(
    sqlite_checkpoint, mlflow_server, tmp_path, path, user, body, status, words
):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "ci", tmp_path, versions=1)
    rid = promote(base, name, v1)["id"]
    before = stored(sqlite_checkpoint.database_url)
    answer = api(base, "POST", path.format(rid=rid, name=name, v1=v1) + "/statuses", user, json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["message"], answer.json()
    assert stored(sqlite_checkpoint.database_url) == before


def test_an_anonymous_caller_may_not_post(sqlite_checkpoint, mlflow_server, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "ci", tmp_path, versions=1)
    rid = promote(base, name, v1)["id"]
    before = stored(sqlite_checkpoint.database_url)
    answer = requests.post(
        f"{base}/checkpoint/api/v1/requests/{rid}/statuses",
        json={"context": "ci/eval", "state": "success"},
        headers={"Authorization": "Bearer nobody"},  # no user: Checkpoint's anonymous caller
        timeout=30,
    )
    assert answer.status_code == 403, answer.text
    assert stored(sqlite_checkpoint.database_url) == before


def test_the_cli_posts_a_status_end_to_end(sqlite_checkpoint, mlflow_server, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "ci", tmp_path, versions=1)
    rid = promote(base, name, v1)["id"]
    approve(base, rid)
    env = {"PATH": str(BIN), "HOME": str(tmp_path), "CHECKPOINT_URL": base, "MLFLOW_TRACKING_USERNAME": "ci-bot"}
    env["MLFLOW_TRACKING_PASSWORD"] = "x"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "checkpoint"), "status", "set", *args], env=env, capture_output=True, text=True, timeout=120
        )

    first = cli("--request", str(rid), "--context", "ci/eval", "--state", "pending", "--url", "https://ci.example/1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"ci/eval is pending on request #{rid}", f"request #{rid} is open; waiting for ci/eval"]
    bad = cli("--request", str(rid), "--context", "ci/eval", "--state", "success", "--url", "javascript:alert(1)")
    assert bad.returncode == 1 and "target_url must be an http" in bad.stderr and "Traceback" not in bad.stderr
    usage = cli("--request", str(rid), "--model", name, "--version", v1, "--context", "ci/eval", "--state", "success")
    assert usage.returncode == 2 and "--request ID, or --model NAME and --version V" in usage.stderr
    on_version = cli("--model", name, "--version", v1, "--context", "ci/eval", "--state", "success", "--description", "auc 0.93")
    assert on_version.returncode == 0, on_version.stderr
    assert on_version.stdout.strip() == f"ci/eval is success on {name} v{v1}"
    assert api(base, "GET", f"/requests/{rid}", "bob").json()["state"] == "applied"
    assert champion(url, name) == v1


@pytest.mark.postgres
def test_an_arriving_status_applies_exactly_once_with_two_app_instances(mlflow_server, request, tmp_path):
    """Two app instances on one PostgreSQL: the last two required statuses arrive at both at once
    (one each): of every trial, exactly one instance approves and applies the request, once."""
    from tests.support.apps import migrated_database

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    database = migrated_database("postgresql", request, tmp_path, prefix="cp_statuses")
    database_url = next(database)
    relay = Relay(mlflow_server.url)  # counts the writes that reach MLflow
    settings = {"registry_url": relay.url, "database_url": database_url, "policy_file": policy, "background": False}
    first = create_app({**settings, "data_dir": tmp_path / "a"})
    second = create_app({**settings, "data_dir": tmp_path / "b"})
    try:
        with live(first, database_url) as a, live(second, database_url) as b:
            name, made = model_with_files(mlflow_server.url, "race", tmp_path, versions=8)
            for version, _ in made:
                rid = promote(a.url, name, version)["id"]
                approve(b.url, rid)
                path = f"/requests/{rid}/statuses"
                answers = race(
                    partial(api, a.url, "POST", path, "ci-bot", json={"context": "ci/eval", "state": "success"}),
                    partial(api, b.url, "POST", path, "ci-bot", json={"context": "security/scan", "state": "success"}),
                )
                assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
                final = api(a.url, "GET", f"/requests/{rid}", "bob").json()
                kinds = [e["kind"] for e in final["events"]]
                assert final["state"] == "applied", (final["state"], final["state_reason"], kinds)
                assert (kinds.count("approved"), kinds.count("applying"), kinds.count("applied")) == (1, 1, 1), kinds
                assert champion(mlflow_server.url, name) == version
            assert relay.count("POST", "/registered-models/alias") == len(made), "not exactly one write per request"
    finally:
        close_app(first)
        close_app(second)
        relay.stop()
        next(database, None)


XSS = '<img src=x onerror="window.__xss=1">'


@pytest.mark.browser
def test_the_request_page_shows_the_statuses_beside_the_checks(
    sqlite_checkpoint,
    mlflow_server,
    tmp_path,
    browser_page,  # noqa: F811 - the fixture imported above
    screenshot,  # noqa: F811
):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    name, ((v1, _),) = model_with_files(url, "race", tmp_path, versions=1)
    rid = promote(base, name, v1)["id"]
    approve(base, rid)
    post(
        base,
        f"/requests/{rid}",
        "ci-bot",
        context="ci/eval",
        state="failure",
        target_url="https://ci.example/run/41",
        description=XSS,
    )
    post(base, f"/models/{name}/versions/{v1}", "ci-bot", context="lint", state="success", description="ruff clean")

    browser_page.goto(f"{base}/checkpoint/requests/{rid}")
    section = browser_page.locator("section[aria-labelledby=statuses-h]")
    expect(section.locator("h2")).to_have_text("Statuses")
    expect(section).to_contain_text("Blocked by required statuses ci/eval, security/scan")
    failing = section.locator("li[data-context='ci/eval']")
    expect(failing).to_contain_text("failure")
    expect(failing).to_contain_text(XSS)  # shown as text, never as markup
    link = failing.get_by_role("link", name="details")
    expect(link).to_have_attribute("href", "https://ci.example/run/41")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(section.locator("li[data-context='lint']")).to_contain_text("on the version")
    expect(section.locator("li[data-context='security/scan']")).to_contain_text("expected")
    expect(browser_page.locator(".cp-timeline")).to_contain_text("ci/eval is failure")
    assert browser_page.evaluate("window.__xss") is None and section.locator("img").count() == 0
    assert browser_page.js_errors == []
    section.scroll_into_view_if_needed()
    screenshot("statuses")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"ci/eval"', "rules[0] (gated).required_statuses: expected a list of contexts"),
        ("[{context: ci/eval, from: []}]", "rules[0] (gated).required_statuses[0].from: expected a non-empty list"),
        ("[{context: ci/eval, by: [ci-bot]}]", "rules[0] (gated).required_statuses[0]: unknown key(s) by"),
    ],
)
def test_a_bad_required_statuses_key_stops_the_start_naming_it(mlflow_server, sqlite_url, tmp_path, value, words):
    from checkpoint.errors import ConfigError

    policy = tmp_path / "bad.yaml"
    policy.write_text(f"rules:\n  - name: gated\n    models: ['x-*']\n    required_statuses: {value}\n")
    settings = {"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path, "policy_file": policy}
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    assert words in str(caught.value)
