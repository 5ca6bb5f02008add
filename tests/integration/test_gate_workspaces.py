"""Issue 12, class 4: MLflow workspaces (`mlflow server --enable-workspaces`).

MLflow picks a call's workspace from the ``X-MLFLOW-WORKSPACE`` header. Checkpoint used to decide
governance by reading the default workspace while MLflow acted in the caller's, so a Production
version in another workspace could be archived, its champion deleted, the model deleted, through
Checkpoint and without a request. These tests attack a real ``--enable-workspaces`` server where
the same model name lives in the default workspace, in A and in B, through Checkpoint's port as an
ordinary user; every result is read back from MLflow directly, with the workspace header.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import urllib3

from checkpoint import create_app
from checkpoint.review.reconcile import Reconciler
from checkpoint.services import services
from checkpoint.storage.entities import APPLIED, APPLYING, APPROVED, OPEN
from tests.support.apps import LiveCheckpoint, live
from tests.support.workspaces import HEADER, Direct, make_workspace


@dataclass
class World:
    url: str  # MLflow
    a: str  # two workspaces besides the default one
    b: str

    def direct(self, workspace: str) -> Direct:
        return Direct(self.url, workspace)

    def model(self, production_in: tuple[str, ...]) -> tuple[str, dict[str, dict[str, str]]]:
        """One model name in the default workspace, in A and in B; Production and champion only
        in the workspaces named in ``production_in``. Returns the name and each side's run ids."""
        name = f"fraud-{uuid.uuid4().hex[:8]}"
        runs = {ws: self.direct(ws).seed(name, ws in production_in, ws or "default") for ws in ("", self.a, self.b)}
        return name, runs

    def states(self, name: str) -> dict[str, dict]:
        return {ws or "default": self.direct(ws).state(name) for ws in ("", self.a, self.b)}


@pytest.fixture(scope="module")
def world(mlflow_workspaces_server) -> World:
    url = mlflow_workspaces_server.url
    return World(url, make_workspace(url, "ws-a"), make_workspace(url, "ws-b"))


@pytest.fixture
def checkpoint(world, sqlite_url, tmp_path) -> Iterator[LiveCheckpoint]:
    """Checkpoint in front of the workspaces server, with rules that name one workspace: Production
    in B needs two approvals (one elsewhere); champion in A needs version tag ``team = a``."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        f"  - name: b-production\n    workspaces: [{world.b}]\n    targets: ['stage:Production']\n"
        "    required_approvals: 2\n"
        f"  - name: a-champion\n    workspaces: [{world.a}]\n    targets: ['alias:champion']\n"
        "    checks: [{name: team-tag, kind: tags, tags: {team: a}}]\n"
    )
    app = create_app({"registry_url": world.url, "database_url": sqlite_url, "data_dir": tmp_path, "policy_file": policy})
    with live(app, sqlite_url) as served:
        yield served


def through(
    cp: LiveCheckpoint,
    method: str,
    endpoint: str,
    body: dict,
    workspace: str | None,
    user: str = "alice",
    prefix: str = "/api/2.0/mlflow",
    headers: dict | None = None,
) -> requests.Response:
    """An MLflow REST call through Checkpoint's port, as ``user``, in ``workspace`` (None: no header)."""
    sent = {**({HEADER: workspace} if workspace is not None else {}), **(headers or {})}
    return requests.request(method, f"{cp.url}{prefix}/{endpoint}", json=body, headers=sent, auth=(user, "x"), timeout=30)


def api(cp: LiveCheckpoint, method: str, path: str, user: str = "bob", **kwargs) -> requests.Response:
    return requests.request(method, f"{cp.url}/checkpoint/api/v1{path}", auth=(user, "x"), timeout=30, **kwargs)


def opened(answer: requests.Response) -> int:
    """The request a governed call was turned into (403, MLflow-shaped)."""
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    return body["checkpoint"]["request_id"]


# -- the attacks of the issue, in a non-default workspace -------------------------------------

ATTACKS = {
    "archive the Production version": (
        "POST",
        "model-versions/transition-stage",
        lambda n: {"name": n, "version": "1", "stage": "Archived"},
    ),
    "delete the champion version": ("DELETE", "model-versions/delete", lambda n: {"name": n, "version": "1"}),
    "delete the model": ("DELETE", "registered-models/delete", lambda n: {"name": n}),
    "move champion": ("POST", "registered-models/alias", lambda n: {"name": n, "alias": "champion", "version": "2"}),
    "rename the model": ("POST", "registered-models/rename", lambda n: {"name": n, "new_name": f"{n}-renamed"}),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_in_workspace_b_becomes_a_request_in_b(checkpoint, world, attack):
    """Production lives only in B; the default workspace and A hold the same name with nothing
    promoted (where Checkpoint used to look). The call in B is a request for B; nothing moves."""
    method, endpoint, body = ATTACKS[attack]
    name, _ = world.model(production_in=(world.b,))
    before = world.states(name)
    assert before[world.b] == {"exists": True, "stages": {"1": "Production", "2": "None"}, "champion": "1"}

    answer = through(checkpoint, method, endpoint, body(name), world.b)
    request_id = opened(answer)
    assert f"in workspace '{world.b}' needs review" in answer.json()["message"]

    assert world.states(name) == before  # nothing changed in any workspace
    assert not world.direct(world.b).exists(f"{name}-renamed")
    item = api(checkpoint, "GET", f"/requests/{request_id}").json()
    assert item["workspace"] == world.b and item["change"]["workspace"] == world.b
    assert item["model"] == name and item["state"] == "open"


def test_ui_call_in_b_carries_the_workspace_to_the_form(checkpoint, world):
    """MLflow's UI (``/ajax-api``) gets the pre-filled form; the form opens the request in B."""
    name, _ = world.model(production_in=(world.b,))
    answer = through(
        checkpoint, "DELETE", "model-versions/delete", {"name": name, "version": "1"}, world.b, prefix="/ajax-api/2.0/mlflow"
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["checkpoint"]["change"]["workspace"] == world.b
    form = requests.get(answer.json()["checkpoint"]["url"], auth=("alice", "x"), timeout=30)
    assert form.status_code == 200 and world.b in form.text
    assert world.direct(world.b).state(name)["stages"] == {"1": "Production", "2": "None"}


def test_request_in_b_reads_b_and_applies_to_b_only(checkpoint, world):
    name, runs = world.model(production_in=("", world.a, world.b))
    request_id = opened(
        through(checkpoint, "POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "2"}, world.b)
    )
    item = api(checkpoint, "GET", f"/requests/{request_id}").json()
    # The snapshots are B's versions (their runs), not the same-named model's in A or the default.
    assert item["challenger"]["run_id"] == runs[world.b]["2"]
    assert item["champion"]["run_id"] == runs[world.b]["1"]

    page = requests.get(f"{checkpoint.url}/checkpoint/requests/{request_id}", auth=("bob", "x"), timeout=30)
    assert page.status_code == 200
    assert f"{world.b}-2" in page.text and f"{world.b}-1" in page.text  # the diff's params are B's
    assert "default-2" not in page.text and f"{world.a}-2" not in page.text
    assert world.b in page.text  # the workspace is shown

    done = api(checkpoint, "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    after = world.states(name)
    assert after[world.b]["champion"] == "2"
    assert after["default"]["champion"] == "1" and after[world.a]["champion"] == "1"  # untouched

    which = api(checkpoint, "GET", f"/which?model={name}&alias=champion&workspace={world.b}").json()
    assert which["version"] == "2" and which["workspace"] == world.b
    assert api(checkpoint, "GET", f"/which?model={name}&alias=champion").json()["version"] == "1"
    history_b = requests.get(f"{checkpoint.url}/checkpoint/models/{name}/history?workspace={world.b}", timeout=30)
    history_default = requests.get(f"{checkpoint.url}/checkpoint/models/{name}/history", timeout=30)
    assert f"#{request_id}" in history_b.text and f"#{request_id}" not in history_default.text


def test_same_change_in_a_and_b_is_two_requests(checkpoint, world):
    name, _ = world.model(production_in=(world.a, world.b))
    body = {"name": name, "alias": "champion", "version": "2"}
    in_a = opened(through(checkpoint, "POST", "registered-models/alias", body, world.a))
    in_b = opened(through(checkpoint, "POST", "registered-models/alias", body, world.b))
    assert in_a != in_b
    # A retry in B finds B's request, not A's.
    again = through(checkpoint, "POST", "registered-models/alias", body, world.b).json()["checkpoint"]
    assert (again["request_id"], again["action"]) == (in_b, "request_exists")

    listed_b = api(checkpoint, "GET", f"/requests?model={name}&workspace={world.b}").json()["requests"]
    listed_a = api(checkpoint, "GET", f"/requests?model={name}&workspace={world.a}").json()["requests"]
    listed_all = api(checkpoint, "GET", f"/requests?model={name}").json()["requests"]
    assert [r["id"] for r in listed_b] == [in_b] and [r["id"] for r in listed_a] == [in_a]
    assert {r["id"] for r in listed_all} == {in_a, in_b}
    assert api(checkpoint, "GET", f"/requests?model={name}&workspace=default").json()["requests"] == []
    panel = api(checkpoint, "GET", f"/summary?model={name}&workspace={world.b}").json()  # the panel in B's UI
    assert panel["open_for_model"] == 1 and [r["id"] for r in panel["requests"]] == [in_b]
    page = requests.get(f"{checkpoint.url}/checkpoint/requests?state=all&workspace={world.b}&model={name}", timeout=30)
    assert page.status_code == 200 and f'/checkpoint/requests/{in_b}"' in page.text
    assert f'/checkpoint/requests/{in_a}"' not in page.text

    # Each read its own workspace when it opened: both saw champion at v1 for the first time.
    events = [e for e in services(checkpoint.app).store.events(model=name) if e.kind == "outside_change"]
    assert sorted(e.data.get("workspace", "") for e in events) == sorted([world.a, world.b])


def test_rule_naming_only_b_governs_b_differently(checkpoint, world):
    """``b-production`` (workspaces: [B]) asks two approvals for Production; A keeps the default one."""
    name, _ = world.model(production_in=(world.a, world.b))
    body = {"name": name, "version": "2", "stage": "Production", "archive_existing_versions": True}
    in_a = opened(through(checkpoint, "POST", "model-versions/transition-stage", body, world.a))
    in_b = opened(through(checkpoint, "POST", "model-versions/transition-stage", body, world.b))
    rule_a = api(checkpoint, "GET", f"/requests/{in_a}").json()
    rule_b = api(checkpoint, "GET", f"/requests/{in_b}").json()
    assert (rule_a["rule"]["name"], rule_a["approvals"]["required"]) == ("default", 1)
    assert (rule_b["rule"]["name"], rule_b["approvals"]["required"]) == ("b-production", 2)

    assert api(checkpoint, "POST", f"/requests/{in_a}/reviews", json={"verdict": "approve"}).json()["state"] == "applied"
    assert api(checkpoint, "POST", f"/requests/{in_b}/reviews", json={"verdict": "approve"}).json()["state"] == "open"
    after = world.states(name)
    assert after[world.a]["stages"] == {"1": "Archived", "2": "Production"}
    assert after[world.b]["stages"] == {"1": "Production", "2": "None"}  # still waits for a second approval
    done = api(checkpoint, "POST", f"/requests/{in_b}/reviews", user="carol", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    assert world.direct(world.b).state(name)["stages"] == {"1": "Archived", "2": "Production"}


def test_ungoverned_calls_in_b_pass_untouched(checkpoint, world):
    """The legitimate path: registering, tagging, a non-protected alias in B reach MLflow in B."""
    name = f"plain-{uuid.uuid4().hex[:8]}"
    b = world.direct(world.b)
    assert through(checkpoint, "POST", "registered-models/create", {"name": name}, world.b).status_code == 200
    experiment_id = b.call("POST", "experiments/create", {"name": f"exp-{name}"}).json()["experiment_id"]
    run = b.call("POST", "runs/create", {"experiment_id": experiment_id}).json()["run"]["info"]
    made = through(
        checkpoint,
        "POST",
        "model-versions/create",
        {"name": name, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]},
        world.b,
    )
    assert made.status_code == 200, made.text
    version = made.json()["model_version"]["version"]
    calls = [
        ("POST", "registered-models/alias", {"name": name, "alias": "candidate", "version": version}),
        ("POST", "model-versions/set-tag", {"name": name, "version": version, "key": "note", "value": "ok"}),
        ("POST", "model-versions/transition-stage", {"name": name, "version": version, "stage": "Archived"}),
    ]
    for method, endpoint, body in calls:
        answer = through(checkpoint, method, endpoint, body, world.b)
        assert answer.status_code == 200, (endpoint, answer.text)
    got = b.version(name, version)
    assert got["current_stage"] == "Archived" and b.alias(name, "candidate") == version
    assert {t["key"]: t["value"] for t in got["tags"]} == {"note": "ok"}
    assert not world.direct("").exists(name) and not world.direct(world.a).exists(name)
    assert api(checkpoint, "GET", f"/requests?model={name}").json()["requests"] == []


@pytest.mark.parametrize("spelling", ["Team-B", "x", "api", "a b", "café", "ws,other"])
def test_malformed_workspace_header_is_refused_on_a_governed_route(checkpoint, world, spelling):
    name, _ = world.model(production_in=("",))
    answer = through(
        checkpoint,
        "DELETE",
        "model-versions/delete",
        {"name": name, "version": "1"},
        None,
        headers={HEADER: spelling.encode("utf-8").decode("latin-1")},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "workspace" in answer.json()["message"].lower()
    assert world.direct("").state(name)["stages"] == {"1": "Production", "2": "None"}
    assert api(checkpoint, "GET", f"/requests?model={name}").json()["requests"] == []


def test_two_workspace_headers_are_refused(checkpoint, world):
    """MLflow honours the first of two headers; Checkpoint's WSGI server joins them: refused, never guessed."""
    name, _ = world.model(production_in=(world.a,))
    headers = urllib3.HTTPHeaderDict({"Content-Type": "application/json"})
    headers.add(HEADER, world.a)
    headers.add(HEADER, world.b)
    headers.add("Authorization", "Basic YWxpY2U6eA==")
    answer = urllib3.request(
        "DELETE",
        f"{checkpoint.url}/api/2.0/mlflow/model-versions/delete",
        headers=headers,
        body=json.dumps({"name": name, "version": "1"}).encode(),
        retries=False,
    )
    assert answer.status == 400, answer.data
    assert world.states(name)[world.a]["stages"] == {"1": "Production", "2": "None"}


@pytest.mark.parametrize(
    ("sent", "canonical"), [(" {b}", "{b}"), ("{b}\t", "{b}"), ("\xa0{b}", "{b}"), ("default", ""), ("", ""), ("\t", "")]
)
def test_workspace_spellings_mlflow_accepts_mean_the_same_to_checkpoint(checkpoint, world, sent, canonical):
    """Padding (even a non-ASCII space: MLflow strips it with ``str.strip``), an empty header and
    ``default`` are what MLflow makes of them: the request is in that workspace, and its snapshot
    is that workspace's version."""
    sent, canonical = sent.format(b=world.b), canonical.format(b=world.b)
    name, runs = world.model(production_in=("", world.a, world.b))
    headers = {HEADER: sent.encode("latin-1"), "Content-Type": "application/json", "Authorization": "Basic YWxpY2U6eA=="}
    answer = urllib3.request(
        "DELETE",
        f"{checkpoint.url}/api/2.0/mlflow/model-versions/delete",
        headers=headers,
        body=json.dumps({"name": name, "version": "1"}).encode(),
        retries=False,
    )
    assert answer.status == 403, answer.data
    item = api(checkpoint, "GET", f"/requests/{answer.json()['checkpoint']['request_id']}").json()
    assert item["workspace"] == (canonical or "default")
    assert item["challenger"]["run_id"] == runs[canonical]["1"]
    assert world.direct(canonical).state(name)["stages"] == {"1": "Production", "2": "None"}
    # MLflow itself reads the spelling the same way (the Checkpoint-free control).
    control = urllib3.request(
        "GET",
        f"{world.url}/api/2.0/mlflow/model-versions/get?name={name}&version=1",
        headers={HEADER: sent.encode("latin-1")},
        retries=False,
    )
    assert control.status == 200 and control.json()["model_version"]["run_id"] == runs[canonical]["1"]


def test_workspace_header_named_in_connection_is_read_as_mlflow_reads_it(checkpoint, world):
    """A header listed in ``Connection`` is hop-by-hop: the proxy drops it and MLflow acts in the
    default workspace. Checkpoint must govern there, not in the workspace the dropped header named."""
    name, _ = world.model(production_in=("",))  # Production in the default workspace only
    answer = through(
        checkpoint,
        "POST",
        "model-versions/transition-stage",
        {"name": name, "version": "1", "stage": "Archived"},
        world.b,
        headers={"Connection": f"keep-alive, {HEADER}"},
    )
    request_id = opened(answer)
    assert api(checkpoint, "GET", f"/requests/{request_id}").json()["workspace"] == "default"
    assert world.direct("").state(name)["stages"] == {"1": "Production", "2": "None"}


def test_unknown_workspace_changes_nothing(checkpoint, world):
    name, _ = world.model(production_in=("",))
    answer = through(checkpoint, "DELETE", "model-versions/delete", {"name": name, "version": "1"}, "no-such-ws")
    assert 400 <= answer.status_code < 500, answer.text  # never a 5xx, which MLflow's client retries
    assert world.direct("").state(name)["stages"] == {"1": "Production", "2": "None"}


def test_filters_refuse_a_malformed_workspace(checkpoint):
    answer = api(checkpoint, "GET", "/requests?workspace=Not_Valid")
    assert answer.status_code == 400 and "workspace" in answer.json()["message"].lower()
    assert requests.get(f"{checkpoint.url}/checkpoint/requests?workspace=Not_Valid", timeout=30).status_code == 400


def test_api_opens_a_request_in_a_named_workspace(checkpoint, world):
    """The pipeline path (JSON API): ``change.workspace`` is canonicalised like the header."""
    name, runs = world.model(production_in=(world.b,))
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": "2", "workspace": f" {world.b}"}
    made = api(checkpoint, "POST", "/requests", user="alice", json={"change": change})
    assert made.status_code == 201, made.text
    assert made.json()["workspace"] == world.b and made.json()["challenger"]["run_id"] == runs[world.b]["2"]
    bad = api(checkpoint, "POST", "/requests", user="alice", json={"change": {**change, "workspace": "B!"}})
    assert bad.status_code == 422 and "workspace" in bad.json()["message"].lower()


def test_reconciler_asks_the_requests_workspace(checkpoint, world):
    """An apply interrupted by a crash is settled by asking MLflow in the request's workspace:
    the change made in B is found there (A's same-named model does not have it)."""
    name, _ = world.model(production_in=(world.a, world.b))
    request_id = opened(
        through(checkpoint, "POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "2"}, world.b)
    )
    workflow = services(checkpoint.app).workflow
    store = workflow.store
    assert store.transition(request_id, (OPEN,), APPROVED, actor="test", event="approved")
    assert store.transition(request_id, (APPROVED,), APPLYING, actor="test", event="applying")
    world.direct(world.b).call("POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "2"})
    outcome = Reconciler(store, workflow.registry, lease=0.0).run()
    assert request_id in outcome.applied and store.get(request_id).state == APPLIED
    assert world.states(name)[world.a]["champion"] == "1"


# -- a server without workspaces (the pieces without a server: tests/unit/review/changes/test_workspaces.py) --


def test_workspace_header_to_a_server_without_workspaces(sqlite_checkpoint, mlflow_server):
    """A plain server refuses any workspace header (FEATURE_DISABLED, a 500 from MLflow): on a governed
    route Checkpoint answers 400 (never a 5xx the client would retry) and nothing changes."""
    direct = Direct(mlflow_server.url)
    name = f"plain-{uuid.uuid4().hex[:8]}"
    direct.seed(name, production=True, label="plain")
    answer = through(sqlite_checkpoint, "DELETE", "model-versions/delete", {"name": name, "version": "1"}, "team-b")
    assert answer.status_code == 400, answer.text
    assert "workspace" in answer.json()["message"].lower()
    assert direct.state(name) == {"exists": True, "stages": {"1": "Production", "2": "None"}, "champion": "1"}


def test_checks_read_the_requests_workspace(checkpoint, world):
    """A's rule requires tag ``team = a`` on the challenger: A's v2 carries it, the default
    workspace's v2 of the same name carries ``team = other``. The check passes only if it reads A."""
    name, _ = world.model(production_in=("", world.a))
    tag = {"name": name, "version": "2", "key": "team"}
    world.direct(world.a).call("POST", "model-versions/set-tag", {**tag, "value": "a"})
    world.direct("").call("POST", "model-versions/set-tag", {**tag, "value": "other"})
    request_id = opened(
        through(checkpoint, "POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "2"}, world.a)
    )
    item = api(checkpoint, "GET", f"/requests/{request_id}").json()
    assert item["rule"]["name"] == "a-champion"
    assert [(c["name"], c["status"]) for c in item["checks"]] == [("team-tag", "pass")], item["checks"]
    in_default = opened(
        through(checkpoint, "POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "2"}, None)
    )
    assert api(checkpoint, "GET", f"/requests/{in_default}").json()["checks"] == []  # A's rule stays in A


# -- a random run across workspaces -----------------------------------------------------------


def workspace_state(direct: Direct, name: str) -> dict | None:
    """What ``tests.support.hostile.governed_view`` reads, for ``name`` in one workspace, straight from MLflow."""
    answer = direct.call("GET", "registered-models/get", query={"name": name}, ok=False)
    if answer.status_code == 404:
        return None
    model = answer.json()["registered_model"]
    found = direct.call("GET", "model-versions/search", query={"filter": f"name = '{name}'"}).json()
    return {
        "description": model.get("description", ""),
        "tags": {t["key"]: t.get("value", "") for t in model.get("tags", [])},
        "aliases": {a["alias"]: a["version"] for a in model.get("aliases", [])},
        "versions": {
            v["version"]: {
                "stage": v["current_stage"],
                "description": v.get("description", ""),
                "tags": {t["key"]: t.get("value", "") for t in v.get("tags", [])},
                "source": v["source"],
            }
            for v in found.get("model_versions", [])
        },
    }


def test_random_calls_across_workspaces_never_change_governed_state(checkpoint, world):
    """A seeded random run (CHECKPOINT_BYPASS_SEED replays one) of governed and ungoverned calls on
    one model name that lives, promoted differently, in the default workspace, A and B, each call with a random workspace
    spelling (none, ``default``, padded, upper case, unknown, two headers). Read straight from MLflow
    in every workspace: the governed part is unchanged while nothing was approved."""
    import os
    import random
    from collections import Counter

    from tests.support.hostile import governed_view

    seed = int(os.environ.get("CHECKPOINT_BYPASS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"workspace bypass seed: {seed}")
    rng = random.Random(seed)
    # The same name everywhere, promoted differently: a decision read in the wrong workspace differs.
    name, _ = world.model(production_in=(world.a, world.b))  # A and B: v1 in Production, champion v1
    default, b = world.direct(""), world.direct(world.b)
    default.call("POST", "model-versions/transition-stage", {"name": name, "version": "2", "stage": "Production"})
    b.call("POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "2"})
    b.call("POST", "model-versions/set-tag", {"name": name, "version": "1", "key": "validation_status", "value": "passed"})
    names = [name, f"{name}-renamed"]
    spaces = ("", world.a, world.b)
    gov = services(checkpoint.app).workflow.governance

    def snapshot() -> dict:
        return {ws: {n: workspace_state(world.direct(ws), n) for n in names} for ws in spaces}

    spellings = [
        None,
        "default",
        " default",
        world.a,
        f" {world.a} ",
        world.b,
        f"{world.b}\t",
        world.b.upper(),
        "no-such-ws",
        (world.a, world.b),
        (world.b, world.a),
    ]
    calls = [
        (
            "POST",
            "registered-models/alias",
            lambda: {"name": name, "alias": rng.choice(["champion", "candidate"]), "version": rng.choice("12")},
        ),
        ("DELETE", "registered-models/alias", lambda: {"name": name, "alias": rng.choice(["champion", "candidate"])}),
        (
            "POST",
            "model-versions/transition-stage",
            lambda: {
                "name": name,
                "version": rng.choice("12"),
                "stage": rng.choice(["Production", "archived", "None", "staging"]),
            },
        ),
        ("DELETE", "model-versions/delete", lambda: {"name": name, "version": rng.choice("12")}),
        ("DELETE", "registered-models/delete", lambda: {"name": name}),
        ("POST", "registered-models/rename", lambda: {"name": name, "new_name": f"{name}-renamed"}),
        (
            "POST",
            "model-versions/set-tag",
            lambda: {"name": name, "version": rng.choice("12"), "key": rng.choice(["validation_status", "note"]), "value": "x"},
        ),
        ("DELETE", "model-versions/delete-tag", lambda: {"name": name, "version": "1", "key": "validation_status"}),
        ("PATCH", "model-versions/update", lambda: {"name": name, "version": "2", "description": f"d{rng.randrange(99)}"}),
    ]
    before = snapshot()
    outcomes: Counter[str] = Counter()
    for _ in range(120):
        method, endpoint, body = rng.choice(calls)
        headers = urllib3.HTTPHeaderDict({"Content-Type": "application/json", "Authorization": "Basic bWFsbG9yeTp4"})
        spelling = rng.choice(spellings)
        for value in spelling if isinstance(spelling, tuple) else () if spelling is None else (spelling,):
            headers.add(HEADER, value)
        answer = urllib3.request(
            method,
            f"{checkpoint.url}/api/2.0/mlflow/{endpoint}",
            headers=headers,
            body=json.dumps(body()).encode(),
            retries=False,
            timeout=60,
        )
        assert answer.status < 500, (method, endpoint, spelling, answer.data[:300])
        outcomes[str(answer.status)] += 1
    after = snapshot()
    print(dict(outcomes))

    store = services(checkpoint.app).store
    assert store.count(state="applied") == 0
    for ws in spaces:
        assert governed_view(after[ws], gov) == governed_view(before[ws], gov), f"seed {seed}: governed state moved in {ws!r}"
    assert outcomes["403"] >= 10 and outcomes["200"] >= 5, outcomes  # both kinds of call were exercised
    assert outcomes["400"] >= 1, outcomes  # malformed spellings were refused
    assert after != before, "no ungoverned call got through: the run did not exercise the proxy"


def test_protected_model_created_for_the_caller_lands_in_the_callers_workspace(checkpoint, world):
    """Checkpoint creates a protected name (``prod.*``) with its own account: in B when asked in B."""
    name = f"prod.ws-{uuid.uuid4().hex[:8]}"
    answer = through(checkpoint, "POST", "registered-models/create", {"name": name}, world.b)
    assert answer.status_code == 200, answer.text
    assert world.direct(world.b).exists(name)
    assert not world.direct("").exists(name) and not world.direct(world.a).exists(name)


def test_artifact_writes_over_a_registered_version_in_b_are_refused(checkpoint, world):
    """With workspaces on, MLflow roots a path written in B at ``workspaces/<B>/``: a PUT over B's
    registered version (either spelling of the path) is refused; the run's other files, and the
    same relative path in the default workspace (another file), pass."""
    name, runs = world.model(production_in=(world.b,))
    run = world.direct(world.b).call("GET", "runs/get", query={"run_id": runs[world.b]["1"]}).json()["run"]["info"]
    experiment = run["experiment_id"]
    stored = run["artifact_uri"].split("mlflow-artifacts:/", 1)[1]  # workspaces/<B>/<exp>/<run>/artifacts
    assert stored.startswith(f"workspaces/{world.b}/")
    unscoped = f"{experiment}/{run['run_id']}/artifacts"

    def put(path: str, workspace: str | None) -> requests.Response:
        headers = {HEADER: workspace} if workspace else {}
        return requests.put(
            f"{checkpoint.url}/api/2.0/mlflow-artifacts/artifacts/{path}",
            data=b"swapped",
            headers=headers,
            auth=("mallory", "x"),
            timeout=30,
        )

    for path in (f"{unscoped}/model/MLmodel", f"{stored}/model/model.pkl"):
        answer = put(path, world.b)
        assert answer.status_code == 403, (path, answer.text)
        assert f"registered model '{name}' version 1" in answer.json()["message"]
    listing = requests.get(
        f"{world.url}/api/2.0/mlflow-artifacts/artifacts",
        params={"path": f"{stored}/model"},
        headers={HEADER: world.b},
        timeout=30,
    )
    assert listing.status_code == 200 and listing.json().get("files") is None  # nothing was written there
    assert put(f"{unscoped}/notes.txt", world.b).status_code == 200  # outside the version's files
    assert put(f"{unscoped}/model/MLmodel", None).status_code == 200  # the default workspace's path: another file
