"""Batch requests (issue 16 §4) against a real MLflow: opened through the JSON API, reviewed once
under every change's rule, applied in order, all or nothing.

The failing change fails in MLflow for real: while the batch applies, right after its second
change lands, the model the third change acts on is renamed directly in MLflow (as someone
working outside Checkpoint would), so MLflow refuses the third change. Renaming it back is the
fix; the retry then applies all four, once.
"""

from __future__ import annotations

import re

import pytest
import requests
from mlflow import MlflowClient

from checkpoint.events import history, timeline
from checkpoint.registry import Registry
from checkpoint.review.reconcile import Reconciler
from checkpoint.services import services
from checkpoint.storage.entities import APPLYING, APPROVED, OPEN, EventKind
from tests.support.governed import api, make_model, unique

POLICY = """
rules:
  - name: default-batch
    models: ["*"]
    targets: ["*"]
    required_approvals: 1
  - name: carol-only
    models: ["strict-*"]
    targets: ["*"]
    reviewers: [carol]
    required_approvals: 1
"""


@pytest.fixture
def checkpoint_config(tmp_path) -> dict:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"policy_file": policy, "background": False}


def _direct(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def _state(direct: MlflowClient, names: list[str]) -> dict:
    """What MLflow holds for ``names``, read directly: every version's stage, aliases and tags,
    each model's aliases and tags (no time stamps: a move back is a new write)."""
    out = {}
    for name in names:
        model = direct.get_registered_model(name)
        versions = direct.search_model_versions(f"name='{name}'")
        out[name] = {
            "aliases": dict(model.aliases),
            "tags": dict(model.tags),
            "versions": sorted(
                (v.version, v.current_stage, tuple(sorted(v.aliases)), tuple(sorted(v.tags.items()))) for v in versions
            ),
        }
    return out


def _open(base: str, changes: list[dict], user: str = "bob", **extra):
    return api(base, "POST", "/requests", user=user, json={"changes": changes, **extra})


def _count(base: str) -> int:
    return len(api(base, "GET", "/requests?limit=200").json()["requests"])


def test_bad_changes_are_refused_naming_the_index_and_nothing_is_stored(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (v1, v2) = make_model(mlflow_server.url)
    good = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
    before = _count(base)
    cases = [
        ([good, {"kind": "set_alias", "name": name, "alias": "champion"}], r"^changes\[1\]: "),
        ([good, {"kind": "nope", "name": name}], r"^changes\[1\]: change.kind must be one of"),
        (
            [good, {"kind": "delete_version", "name": name, "version": v1}],
            r"^changes\[1\]: a delete_version change cannot be undone",
        ),
        ([good, "not an object"], r"^changes\[1\]: a change is an object"),
        ([good, {**good, "unknown": 1}], r"^changes\[1\]: unknown field"),
        ([good, good], r"^changes\[1\]: .* same target as changes\[0\]"),
        ([], "non-empty list"),
        ("x", "non-empty list"),
        ([good, {"kind": "set_alias", "name": name, "alias": "challenger", "version": "99"}], r"^changes\[1\]: .*no version 99"),
    ]
    for changes, message in cases:
        answer = _open(base, changes)
        assert answer.status_code in (400, 422), (changes, answer.text)
        assert re.search(message, answer.json()["message"]), (message, answer.json())
    both = _open(base, [good], change=good)
    assert both.status_code == 400 and "either change or changes" in both.json()["message"]
    assert _count(base) == before


def test_a_batch_is_reviewed_once_under_every_rule_and_applies_all(sqlite_checkpoint, mlflow_server):
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    plain, (p1, p2) = make_model(mlflow_server.url)
    strict, (s1, s2) = make_model(mlflow_server.url, name=unique("strict"))
    changes = [
        {"kind": "set_alias", "name": plain, "alias": "champion", "version": p2},
        {"kind": "transition", "name": strict, "version": s2, "stage": "Production", "archive_existing_versions": True},
    ]
    opened = _open(base, changes, title="Both at once")
    assert opened.status_code == 201, opened.text
    body = opened.json()
    assert body["kind"] == "batch" and body["change"] is None
    assert [(c["model"], c["target"], c["rule"]) for c in body["changes"]] == [
        (plain, "alias:champion", "default-batch"),
        (strict, "stage:Production", "carol-only"),
    ]
    assert body["rule"]["name"] == "default-batch + carol-only"
    again = _open(base, changes)
    assert again.status_code == 200 and again.json()["id"] == body["id"]  # the same open request

    # alice may approve the plain change but not the strict one: the batch is refused to her.
    refused = api(base, "POST", f"/requests/{body['id']}/reviews", user="alice", json={"verdict": "approve"})
    assert refused.status_code == 403 and "carol" in refused.json()["message"]
    assert direct.get_registered_model(plain).aliases == {}
    done = api(base, "POST", f"/requests/{body['id']}/reviews", user="carol", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done["state_reason"]
    assert direct.get_registered_model(plain).aliases == {"champion": p2}
    assert direct.get_model_version(strict, s2).current_stage == "Production"
    kinds = [e["kind"] for e in done["events"]]
    assert kinds.count("change_applied") == 2 and kinds[-1] == "applied"


def test_the_third_of_four_failing_reverts_the_first_two_and_a_retry_applies_all_once(
    live_checkpoint, mlflow_server, monkeypatch
):
    """On SQLite and PostgreSQL."""
    base, direct = live_checkpoint.url, _direct(mlflow_server)
    a, (a1, a2) = make_model(mlflow_server.url)
    b, (b1, b2) = make_model(mlflow_server.url)
    c, (c1, c2) = make_model(mlflow_server.url)
    prod = f"prod.{unique('copy')}"
    direct.set_registered_model_alias(a, "champion", a1)
    direct.transition_model_version_stage(b, b1, "Production")
    direct.set_registered_model_alias(c, "champion", c1)
    direct.create_registered_model(prod)
    direct.copy_model_version(f"models:/{a}/{a1}", prod)
    changes = [
        {"kind": "set_alias", "name": a, "alias": "champion", "version": a2},
        {"kind": "transition", "name": b, "version": b2, "stage": "Production", "archive_existing_versions": True},
        {"kind": "set_alias", "name": c, "alias": "champion", "version": c2},
        {"kind": "create_version", "name": prod, "source": f"models:/{a}/{a2}"},
    ]
    request = _open(base, changes, title="Release 12").json()
    names = [a, b, c, prod]
    before = _state(direct, names)

    # Right after the second change lands, c is renamed away in MLflow directly: the third fails there.
    original, renamed = Registry.transition_stage, []

    def transition_then_rename(self, name, version, stage, archive_existing):
        out = original(self, name, version, stage, archive_existing)
        if not renamed:
            renamed.append(True)
            direct.rename_registered_model(c, f"{c}-away")
        return out

    monkeypatch.setattr(Registry, "transition_stage", transition_then_rename)
    failed = api(base, "POST", f"/requests/{request['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    monkeypatch.setattr(Registry, "transition_stage", original)
    assert failed["state"] == "failed", failed["state_reason"]
    expected = f"change 3 of 4 (moving alias 'champion' of '{c}' to version {c2}) failed: RESOURCE_DOES_NOT_EXIST"
    assert failed["state_reason"].startswith(expected)
    assert "changes 2, 1 reverted, MLflow is as it was" in failed["state_reason"]

    direct.rename_registered_model(f"{c}-away", c)  # the fix
    assert _state(direct, names) == before  # identical, read directly: a and b were put back, prod untouched
    log = [(e["kind"], e["data"].get("index"), e["data"].get("result")) for e in failed["events"]]
    print("\nthe batch's event log:")
    for e in failed["events"]:
        print(f"  {e['kind']:<16} {e['actor']:<6} {e['data']}")
    steps = [(k, i) for k, i, _ in log if k.startswith("change_")]
    assert steps == [
        ("change_applied", 0),
        ("change_applied", 1),
        ("change_failed", 2),
        ("change_reverted", 1),
        ("change_reverted", 1),
        ("change_reverted", 0),
    ]

    retried = api(base, "POST", f"/requests/{request['id']}/retry", user="alice").json()
    assert retried["state"] == "applied", retried["state_reason"]
    after = _state(direct, names)
    assert direct.get_registered_model(a).aliases == {"champion": a2}
    assert direct.get_model_version(b, b2).current_stage == "Production"
    assert direct.get_model_version(b, b1).current_stage == "Archived"
    assert direct.get_registered_model(c).aliases == {"champion": c2}
    assert len(after[prod]["versions"]) == len(before[prod]["versions"]) + 1  # one copy, not two
    applied = [e for e in retried["events"] if e["kind"] == "change_applied"]
    assert [e["data"]["index"] for e in applied] == [0, 1, 0, 1, 2, 3]  # the failed round's two, then all four once
    print("\nafter the retry:")
    for e in retried["events"][len(failed["events"]) :]:
        print(f"  {e['kind']:<16} {e['actor']:<6} {e['data']}")
    again = api(base, "POST", f"/requests/{request['id']}/retry", user="alice")
    assert again.status_code == 409  # applied: a retry applies nothing more

    # Each step is logged under the model it changed: b's timeline (not the batch's first model's)
    # shows v2 put in Production by the batch, put back, and put there again by the retry.
    wired = services(live_checkpoint.app)
    lanes = {lane.target: lane for lane in timeline.for_model(wired.store, b)}
    held = [(p.version, p.how, p.request_id) for p in lanes["stage:Production"].periods if p.how != "unknown"]
    assert held == [
        (b1, "outside_change", None),  # what opening the batch found there
        (b2, "request", request["id"]),
        (b1, "request", request["id"]),  # the compensation put v1 back
        (b2, "request", request["id"]),
    ], held
    steps = [(e.target, e.version, e.summary.split(":")[0]) for e in history.for_model(wired.store, b) if not e.outside]
    assert steps == [
        ("stage:Production", b2, f"'{b}' version {b2} is now in Production"),
        ("stage:None", b2, "reverted"),
        ("stage:Production", b1, "reverted"),
        ("stage:Production", b2, f"'{b}' version {b2} is now in Production"),
    ]


def test_a_batch_request_is_stored_as_one_row_and_a_single_request_is_unchanged(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (v1, v2) = make_model(mlflow_server.url)
    single = api(
        base, "POST", "/requests", json={"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}}
    )
    assert single.status_code == 201
    body = single.json()
    assert "changes" not in body and body["change"]["kind"] == "set_alias"
    stored = services(sqlite_checkpoint.app).store.get(body["id"])
    assert stored.changes is None and stored.change["alias"] == "champion"
    one = _open(base, [{"kind": "set_alias", "name": name, "alias": "challenger", "version": v1}])
    assert one.status_code == 201 and "changes" not in one.json()  # a batch of one is an ordinary request


def test_the_request_page_shows_one_section_and_one_diff_per_change(sqlite_checkpoint, mlflow_server):
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    a, (a1, a2) = make_model(mlflow_server.url)
    b, (b1, b2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(a, "champion", a1)
    changes = [
        {"kind": "set_alias", "name": a, "alias": "champion", "version": a2},
        {"kind": "transition", "name": b, "version": b2, "stage": "Staging"},
    ]
    opened = _open(base, changes, title="<b>two</b>").json()
    page = requests.get(f"{base}/checkpoint/requests/{opened['id']}", auth=("alice", "x"), timeout=30)
    assert page.status_code == 200
    html = page.text
    assert f"2 changes to {a}, {b}, applied all or nothing" in html
    assert f"Change 1 of 2: {a} v{a2} → @champion (replaces v{a1})" in html
    assert f"Change 2 of 2: {b} v{b2} → Staging (first promotion)" in html
    assert f"set @champion of {a} to v{a2}" in html and f"move {b} v{b2} to Staging" in html
    # Each change's own diff, under its own heading id; no id twice on the page.
    assert f'id="diff-h-1">Diff: {a} v{a2} (challenger) against {a} v{a1} (champion)' in html
    assert f'id="diff-h-2">Diff: {b} v{b2} (challenger), first promotion' in html
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert "<b>two</b>" not in html and "&lt;b&gt;two&lt;/b&gt;" in html


def test_a_batch_cut_short_by_a_crash_is_reconciled_failed_naming_what_is_missing(sqlite_checkpoint, mlflow_server):
    """A process that died mid-batch leaves it applying: the reconciler never applies, it says how
    far MLflow got; the retry then applies the rest, and the change already there is not sent again."""
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    a, (a1, a2) = make_model(mlflow_server.url)
    b, (b1, b2) = make_model(mlflow_server.url)
    changes = [
        {"kind": "set_alias", "name": a, "alias": "champion", "version": a2},
        {"kind": "set_alias", "name": b, "alias": "champion", "version": b2},
    ]
    request_id = _open(base, changes).json()["id"]
    wired = services(sqlite_checkpoint.app)
    assert wired.store.transition(request_id, (OPEN,), APPROVED, actor="alice", event=EventKind.APPROVED)
    assert wired.store.transition(request_id, (APPROVED,), APPLYING, actor="alice", event=EventKind.APPLYING)
    direct.set_registered_model_alias(a, "champion", a2)  # the first change landed, then the process died
    outcome = Reconciler(wired.store, wired.registry, lease=0).run()
    assert outcome.failed == [request_id]
    stuck = wired.store.get(request_id)
    assert stuck.state_reason == (
        f"interrupted while applying: 1 of 2 changes are in MLflow, not moving alias 'champion' of '{b}' "
        f"to version {b2}; retry to apply the rest"
    )
    done = api(base, "POST", f"/requests/{request_id}/retry", user="alice").json()
    assert done["state"] == "applied", done["state_reason"]
    steps = [(e["data"]["index"], bool(e["data"].get("already_true"))) for e in done["events"] if e["kind"] == "change_applied"]
    assert steps == [(0, True), (1, False)]
    assert direct.get_registered_model(b).aliases == {"champion": b2}


def test_a_revert_leaves_alone_what_another_account_moved_and_deletes_only_the_copy_it_made(
    sqlite_checkpoint, mlflow_server, monkeypatch
):
    """A batch sets a's champion, copies into an existing prod.* model and into a new one, then
    fails on its fourth change. In between, another account (straight to MLflow) moves a's
    champion on, and registers a version of its own in both prod.* models. The revert must not
    put a's champion back over theirs, must delete exactly the two versions the batch created
    (not "the newest"), and must not delete the new model now that it holds their version."""
    base, direct = sqlite_checkpoint.url, _direct(mlflow_server)
    a, (a1, a2, a3) = make_model(mlflow_server.url, versions=3)
    c, (c1, c2) = make_model(mlflow_server.url)
    prod, fresh = f"prod.{unique('copy')}", f"prod.{unique('new')}"
    direct.set_registered_model_alias(a, "champion", a1)
    direct.set_registered_model_alias(c, "champion", c1)
    direct.create_registered_model(prod)
    direct.copy_model_version(f"models:/{a}/{a1}", prod)
    changes = [
        {"kind": "set_alias", "name": a, "alias": "champion", "version": a2},
        {"kind": "create_version", "name": prod, "source": f"models:/{a}/{a2}"},
        {"kind": "create_version", "name": fresh, "source": f"models:/{a}/{a2}"},
        {"kind": "set_alias", "name": c, "alias": "champion", "version": c2},
    ]
    request = _open(base, changes, title="Release 13").json()
    original, made = Registry.create_version, []

    def create_then_interfere(self, body):
        created = original(self, body)
        made.append((created.name, created.version))
        if len(made) == 2:  # both copies landed: the other account acts, then c goes away
            direct.set_registered_model_alias(a, "champion", a3)
            theirs.extend(direct.copy_model_version(f"models:/{a}/{a3}", m).version for m in (prod, fresh))
            direct.rename_registered_model(c, f"{c}-away")
        return created

    theirs: list[str] = []
    monkeypatch.setattr(Registry, "create_version", create_then_interfere)
    failed = api(base, "POST", f"/requests/{request['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    monkeypatch.setattr(Registry, "create_version", original)
    direct.rename_registered_model(f"{c}-away", c)
    assert failed["state"] == "failed", failed["state_reason"]
    reason = failed["state_reason"]
    print("\n", reason)
    assert f"change 1: could not undo moving alias 'champion' of '{a}' to version {a1}: moved since it was applied" in reason
    assert f"change 3: could not undo deleting registered model '{fresh}' with all its versions: moved since" in reason

    # Read from MLflow directly: their champion stands, their versions stand, the batch's copies are gone.
    assert direct.get_registered_model(a).aliases == {"champion": a3}
    prod_versions = sorted(v.version for v in direct.search_model_versions(f"name='{prod}'"))
    fresh_versions = sorted(v.version for v in direct.search_model_versions(f"name='{fresh}'"))
    ours = {name: version for name, version in made}
    assert ours[prod] not in prod_versions and theirs[0] in prod_versions and len(prod_versions) == 2
    assert fresh_versions == [theirs[1]] and ours[fresh] != theirs[1]
    events = failed["events"]
    stuck = [e["data"] for e in events if e["kind"] == "revert_failed"]
    assert [d["index"] for d in stuck] == [2, 0], stuck  # the new model's delete, then a's alias
    assert all("moved since it was applied" in d["result"] for d in stuck)
    reverted = [(e["data"]["index"], e["data"]["change"]["kind"]) for e in events if e["kind"] == "change_reverted"]
    assert reverted == [(2, "delete_version"), (1, "delete_version")]
