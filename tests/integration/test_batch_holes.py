"""A batch's later changes count as much as its first (issue 16 §4), tried as an attacker would:
with ordinary accounts, through Checkpoint, reading MLflow directly.

Each test puts what matters on the batch's *second* change: a freeze on its target, a required
status on its rule (and a status posted on the wrong version), a rule that refuses a reviewer
the first change's rule lists. The first change alone would pass; the batch must not.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests as http
from mlflow import MlflowClient

from tests.support.apps import background_task
from tests.support.clock import MovableClock
from tests.support.governed import api, make_model, unique

SATURDAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # inside the weekend freeze (Fri 16:00 - Mon 08:00 Berlin)
TUESDAY = datetime(2026, 1, 13, 10, 0, tzinfo=UTC)
POLICY = """
rules:
  - name: team
    models: ["team-*"]
    reviewers: [alice, carol]
    required_approvals: 1
  - name: strict
    models: ["strict-*"]
    reviewers: [carol]
    required_approvals: 1
  - name: evaluated
    models: ["ci-*"]
    required_approvals: 1
    required_statuses: ["ci/eval"]
  - name: anyone
    models: ["*"]
    required_approvals: 1
freezes:
  - name: weekend
    models: ["frz-*"]
    targets: ["alias:champion"]
    every: "Fri 16:00 - Mon 08:00"
    timezone: Europe/Berlin
"""


@pytest.fixture
def checkpoint_clock() -> MovableClock:
    return MovableClock(SATURDAY)


@pytest.fixture
def checkpoint_config(tmp_path) -> dict:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"policy_file": policy, "background": False}


def _direct(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def _aliases(direct: MlflowClient, *names: str) -> dict:
    return {name: dict(direct.get_registered_model(name).aliases) for name in names}


def _champion(name: str, version: str) -> dict:
    return {"kind": "set_alias", "name": name, "alias": "champion", "version": version}


def _open(base: str, changes: list[dict], user: str = "bob") -> dict:
    answer = api(base, "POST", "/requests", user=user, json={"changes": changes, "title": "Two at once"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _page(base: str, path: str, user: str = "bob") -> str:
    answer = http.get(f"{base}{path}", auth=(user, "x"), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def _link(request_id: int) -> str:
    return f'/checkpoint/requests/{request_id}"'


def test_a_freeze_on_the_second_change_holds_the_whole_batch(sqlite_checkpoint, mlflow_server, checkpoint_clock):
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    plain, (_, p2) = make_model(mlflow_server.url)
    frozen, (_, f2) = make_model(mlflow_server.url, name=unique("frz"))
    batch = _open(base, [_champion(plain, p2), _champion(frozen, f2)])
    assert "weekend: Fri 16:00 - Mon 08:00" in _page(base, f"/checkpoint/requests/{batch['id']}")  # named on the page

    approved = api(base, "POST", f"/requests/{batch['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    assert approved["state"] == "approved", approved["state_reason"]
    assert approved["waiting_for"]["kind"] == "freeze" and approved["waiting_for"]["name"] == "weekend"
    assert _aliases(direct, plain, frozen) == {plain: {}, frozen: {}}  # neither change applied

    release = background_task(sqlite_checkpoint.app, "release")
    assert release() == []  # still Saturday: held
    assert _aliases(direct, plain, frozen) == {plain: {}, frozen: {}}

    checkpoint_clock.advance(TUESDAY - SATURDAY)
    assert release() == [batch["id"]]
    done = api(base, "GET", f"/requests/{batch['id']}").json()
    assert done["state"] == "applied", done["state_reason"]
    assert _aliases(direct, plain, frozen) == {plain: {"champion": p2}, frozen: {"champion": f2}}


def _post_version(base: str, name: str, version: str, state: str = "success", user: str = "bob"):
    body = {"context": "ci/eval", "state": state}
    return api(base, "POST", f"/models/{name}/versions/{version}/statuses", user=user, json=body)


def test_a_required_status_of_the_second_change_is_met_only_on_its_own_version(sqlite_checkpoint, mlflow_server):
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    plain, (p1, p2) = make_model(mlflow_server.url)
    evaluated, (e1, e2) = make_model(mlflow_server.url, name=unique("ci"))
    batch = _open(base, [_champion(plain, p2), _champion(evaluated, e2)])
    assert batch["blocked_by_statuses"] == ["2. ci/eval"]
    assert [c["rule"] for c in batch["changes"]] == ["anyone", "evaluated"]

    approved = api(base, "POST", f"/requests/{batch['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    assert approved["state"] == "open" and approved["blocked_by_statuses"] == ["2. ci/eval"]

    # A success on the first change's version, or on another version of the second's model, is
    # not a success for the second change.
    for name, version in ((plain, p2), (evaluated, e1), (plain, p1)):
        assert _post_version(base, name, version).status_code == 201
        after = api(base, "GET", f"/requests/{batch['id']}").json()
        assert after["state"] == "open" and after["blocked_by_statuses"] == ["2. ci/eval"], (name, version)
    assert _aliases(direct, plain, evaluated) == {plain: {}, evaluated: {}}

    # A failure on the right version is shown for that change; a success there applies the batch, once.
    assert _post_version(base, evaluated, e2, "failure").status_code == 201
    failing = api(base, "GET", f"/requests/{batch['id']}").json()
    assert [(s["context"], s["state"]) for s in failing["statuses"] if s.get("change") == 2] == [("ci/eval", "failure")]
    assert _aliases(direct, plain, evaluated) == {plain: {}, evaluated: {}}
    assert _post_version(base, evaluated, e2).status_code == 201
    done = api(base, "GET", f"/requests/{batch['id']}").json()
    assert done["state"] == "applied", done["state_reason"]
    assert _aliases(direct, plain, evaluated) == {plain: {"champion": p2}, evaluated: {"champion": e2}}
    assert [e["kind"] for e in done["events"]].count("applied") == 1


def test_a_status_posted_on_the_batch_counts_for_each_change(sqlite_checkpoint, mlflow_server):
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    first, (_, a2) = make_model(mlflow_server.url, name=unique("ci"))
    second, (_, b2) = make_model(mlflow_server.url, name=unique("ci"))
    batch = _open(base, [_champion(first, a2), _champion(second, b2)])
    assert batch["blocked_by_statuses"] == ["1. ci/eval", "2. ci/eval"]
    assert _post_version(base, first, a2).status_code == 201
    assert api(base, "GET", f"/requests/{batch['id']}").json()["blocked_by_statuses"] == ["2. ci/eval"]
    posted = api(base, "POST", f"/requests/{batch['id']}/statuses", json={"context": "ci/eval", "state": "success"})
    assert posted.status_code == 201, posted.text
    assert posted.json()["request"]["blocked_by_statuses"] == []
    assert _aliases(direct, first, second) == {first: {}, second: {}}  # still short of an approval
    done = api(base, "POST", f"/requests/{batch['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done["state_reason"]
    assert _aliases(direct, first, second) == {first: {"champion": a2}, second: {"champion": b2}}


def test_a_reviewer_the_second_changes_rule_refuses_is_not_awaited_and_cannot_approve(sqlite_checkpoint, mlflow_server):
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    team, (_, t2) = make_model(mlflow_server.url, name=unique("team"))
    strict, (_, s2) = make_model(mlflow_server.url, name=unique("strict"))
    batch = _open(base, [_champion(team, t2), _champion(strict, s2)])
    alone = _open(base, [_champion(team, t2)])  # the first change alone awaits alice: the control

    def awaiting(user: str) -> list[int]:
        answer = api(base, "GET", "/requests?awaiting=me", user=user)
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()["requests"]]

    assert batch["id"] not in awaiting("alice") and alone["id"] in awaiting("alice")
    assert batch["id"] in awaiting("carol")
    inbox = _page(base, "/checkpoint/inbox", user="alice")
    waiting = inbox[inbox.index('id="waiting"') : inbox.index('id="mine"')]
    assert _link(batch["id"]) not in waiting and _link(alone["id"]) in waiting
    for model in (team, strict):  # the panel's badge, on either model's page
        summary = api(base, "GET", f"/summary?model={model}", user="alice").json()
        mine = {r["id"]: r["awaiting_me"] for r in summary["requests"]}
        assert mine.get(batch["id"]) is False, (model, summary["requests"])

    refused = api(base, "POST", f"/requests/{batch['id']}/reviews", user="alice", json={"verdict": "approve"})
    assert refused.status_code == 403 and "strict" in refused.json()["message"]
    assert _aliases(direct, team, strict) == {team: {}, strict: {}}
    done = api(base, "POST", f"/requests/{batch['id']}/reviews", user="carol", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done["state_reason"]
    assert _aliases(direct, team, strict) == {team: {"champion": t2}, strict: {"champion": s2}}


def test_lists_filters_and_summaries_see_every_change(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    plain, (_, p2) = make_model(mlflow_server.url)
    other, (_, o2) = make_model(mlflow_server.url)
    first = {"kind": "set_alias", "name": plain, "alias": "challenger", "version": p2}
    batch = _open(base, [first, _champion(other, o2)])

    by_model = api(base, "GET", f"/requests?model={other}").json()["requests"]
    assert [r["id"] for r in by_model] == [batch["id"]]
    by_both = api(base, "GET", f"/requests?model={other}&target=alias:champion").json()["requests"]
    assert [r["id"] for r in by_both] == [batch["id"]]
    assert api(base, "GET", f"/requests?model={other}&target=alias:challenger").json()["requests"] == []
    summary = api(base, "GET", f"/summary?model={other}").json()
    assert [r["id"] for r in summary["requests"]] == [batch["id"]] and summary["open_for_model"] == 1
    assert summary["requests"][0]["target"] == "alias:champion"  # the change about this model, not the first
    assert api(base, "GET", f"/summary?model={plain}").json()["requests"][0]["target"] == "alias:challenger"
    page = _page(base, f"/checkpoint/requests?model={other}")
    assert _link(batch["id"]) in page
    assert f">{other}</a>" in page and f">{plain}</a>" in page  # the row names both models

    # The plan sees the batch holding the second change's target, and what that change does there.
    desired = {"models": {other: {"aliases": {"champion": o2}}}}
    plan = api(base, "POST", "/plan", json={"desired": desired})
    assert plan.status_code == 200, plan.text
    (entry,) = plan.json()["entries"]
    assert [(m["id"], m["summary"], m["matches"]) for m in entry["open_requests"]] == [(batch["id"], f"moves it to {o2}", True)]


def test_no_batch_is_authored_by_anonymous(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    plain, (_, p2) = make_model(mlflow_server.url)
    other, (_, o2) = make_model(mlflow_server.url)
    before = api(base, "GET", "/requests?limit=200").json()["requests"]
    body = {"changes": [_champion(plain, p2), _champion(other, o2)], "title": "Nobody asked"}
    answer = http.post(f"{base}/checkpoint/api/v1/requests", json=body, auth=("", "x"), timeout=30)  # no user name
    assert answer.status_code == 401 and answer.json()["error_code"] == "UNAUTHENTICATED", answer.text
    assert "Basic-auth user name" in answer.json()["message"]
    assert api(base, "GET", "/requests?limit=200").json()["requests"] == before
    assert _aliases(_direct(mlflow_server), plain, other) == {plain: {}, other: {}}


def _model_with_files(mlflow_url: str, text: str, prefix: str = "files") -> tuple[str, str, str]:
    """A model whose version 1 holds one file with ``text`` (so its content digest is its own):
    its name, its version, and the run the files are in."""
    client = _direct_url(mlflow_url)
    name = unique(prefix)
    client.create_registered_model(name)
    experiment = client.get_experiment_by_name("governance-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("governance-tests")
    run = client.create_run(experiment_id)
    client.log_text(run.info.run_id, text, "model/weights.txt")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version
    return name, version, run.info.run_id


def _direct_url(url: str) -> MlflowClient:
    return MlflowClient(tracking_uri=url, registry_uri=url)


def test_a_batch_with_different_files_applies_and_files_relogged_under_its_second_change_stop_it(
    sqlite_checkpoint, mlflow_server, checkpoint_clock
):
    """The approvals are bound to every change's files: the batch applies when nothing changed,
    and re-logging the *second* change's files while it waits (a freeze) dismisses them instead."""
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    a, a1, _ = _model_with_files(mlflow_server.url, "weights of a")
    b, b1, _ = _model_with_files(mlflow_server.url, "weights of b")
    batch = _open(base, [_champion(a, a1), _champion(b, b1)])
    digests = [c["challenger"]["digest"] for c in batch["changes"]]
    assert all(digests) and digests[0] != digests[1]
    done = api(base, "POST", f"/requests/{batch['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done["state_reason"]
    assert _aliases(direct, a, b) == {a: {"champion": a1}, b: {"champion": b1}}

    c, c1, _ = _model_with_files(mlflow_server.url, "weights of c")
    d, d1, d_run = _model_with_files(mlflow_server.url, "weights of d", prefix="frz")  # the weekend freeze holds it
    second = _open(base, [_champion(c, c1), _champion(d, d1)])
    waiting = api(base, "POST", f"/requests/{second['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    assert waiting["state"] == "approved" and waiting["waiting_for"]["name"] == "weekend"
    direct.log_text(d_run, "other weights", "model/weights.txt")  # outside any proxy, while it waits
    checkpoint_clock.advance(TUESDAY - SATURDAY)
    assert background_task(sqlite_checkpoint.app, "release")() == [second["id"]]
    after = api(base, "GET", f"/requests/{second['id']}").json()
    assert after["state"] == "open" and "change 2" in after["state_reason"], after["state_reason"]
    assert "files changed" in after["state_reason"] and after["approvals"]["count"] == 0
    assert _aliases(direct, c, d) == {c: {}, d: {}}
