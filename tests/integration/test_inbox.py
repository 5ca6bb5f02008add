"""The inbox's filters (issue #17 §1): ``?awaiting=me`` and ``?author=me`` on the request list,
against a real MLflow, on SQLite and PostgreSQL, and in ``mlflow`` mode where a named reviewer
may not read the model."""

from __future__ import annotations

import base64

import pytest
import requests

from checkpoint import create_app
from tests.support.apps import live
from tests.support.auth import ADMIN, as_user, grant, mlflow_mode
from tests.support.governed import make_model, unique
from tests.support.openapi import check_answer
from tests.support.serving import close_app
from tests.support.workspaces import HEADER, Direct, make_workspace

POLICY = """
rules:
  - name: bob only
    models: ["inbox-r-*"]
    reviewers: [bob]
  - name: pair
    models: ["inbox-p-*"]
    required_approvals: 2
  - name: ci first
    models: ["inbox-b-*"]
    required_statuses: [ci/eval]
"""


@pytest.fixture
def inbox_app(mlflow_server, database_url, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path}
    app = create_app({**settings, "policy_file": policy, "background": False})
    yield app
    close_app(app)


def call(client, method: str, path: str, user: str | None = None, token: str | None = None, **kwargs):
    secret = token if token else base64.b64encode(f"{user}:x".encode()).decode()
    headers = {"Authorization": f"Bearer {secret}" if token else f"Basic {secret}"}
    return client.open(f"/checkpoint/api/v1{path}", method=method, headers=headers, **kwargs)


def ask(client, mlflow_url: str, prefix: str, author: str = "alice", **extra) -> int:
    name, (_v1, v2) = make_model(mlflow_url, unique(prefix))
    body = {"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}, **extra}
    answer = call(client, "POST", "/requests", author, json=body)
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["state"] == "open"
    return answer.get_json()["id"]


def listed(client, query: str, user: str | None = None, token: str | None = None) -> list[int]:
    answer = call(client, "GET", f"/requests?{query}", user, token)
    assert answer.status_code == 200, answer.get_json()
    document = client.get("/checkpoint/api/v1/openapi.json").get_json()
    check_answer(document, "/requests", "get", "200", answer.get_json())
    return [r["id"] for r in answer.get_json()["requests"]]


def test_awaiting_me_and_author_me(inbox_app, mlflow_server):
    client = inbox_app.test_client()
    url = mlflow_server.url
    anyone = ask(client, url, "inbox-d")  # default rule: anyone but alice
    bobs = ask(client, url, "inbox-r")  # rule lists bob only
    named = ask(client, url, "inbox-p", reviewers=["dave"])  # dave named, and anyone but alice may approve
    blocked = ask(client, url, "inbox-b")  # ci/eval has not reported: blocked
    pair = ask(client, url, "inbox-p")  # two approvals
    own = ask(client, url, "inbox-d", author="bob")

    assert call(client, "POST", f"/requests/{pair}/reviews", "bob", json={"verdict": "approve"}).status_code == 200

    assert listed(client, "awaiting=me", "bob") == [named, bobs, anyone]  # pair: decided; own: his own
    assert listed(client, "awaiting=me", "dave") == [own, pair, named, anyone]
    assert listed(client, "awaiting=me", "alice") == [own]  # never her own requests
    assert blocked not in listed(client, "awaiting=me", "erin")
    assert listed(client, "awaiting=me&limit=1", "dave") == [own]
    page = call(client, "GET", "/requests?awaiting=me&limit=2", "dave").get_json()
    assert [r["id"] for r in page["requests"]] == [own, pair]
    rest = listed(client, f"awaiting=me&limit=2&cursor={page['next_cursor']}", "dave")
    assert rest == [named, anyone]
    assert listed(client, "awaiting=me&model=nothing-like-it", "dave") == []

    assert listed(client, "author=me", "alice") == [pair, blocked, named, bobs, anyone]
    assert listed(client, "author=me", "bob") == [own]
    assert listed(client, "author=me&awaiting=me", "dave") == []

    # Once dave approves the pair it applies: nobody waits on it any more.
    assert call(client, "POST", f"/requests/{pair}/reviews", "dave", json={"verdict": "approve"}).get_json()["state"] == "applied"
    assert pair not in listed(client, "awaiting=me", "erin")

    # A token caller's "me" is the token's owner.
    made = call(client, "POST", "/tokens", "dave", json={"name": "inbox", "scopes": ["read"], "expires_in_days": 1})
    assert made.status_code == 201, made.get_json()
    assert listed(client, "awaiting=me", token=made.get_json()["token"]) == [own, named, anyone]


def test_bad_and_anonymous_filters(inbox_app):
    client = inbox_app.test_client()
    wrong = call(client, "GET", "/requests?awaiting=bob", "bob")
    assert wrong.status_code == 400
    assert "awaiting must be 'me'" in wrong.get_json()["message"]
    closed = call(client, "GET", "/requests?awaiting=me&state=applied", "bob")
    assert closed.status_code == 400
    nobody = client.get("/checkpoint/api/v1/requests?awaiting=me")
    assert nobody.status_code == 401
    assert client.get("/checkpoint/api/v1/requests?author=me").status_code == 401


def test_awaiting_me_lists_only_readable_models(auth_mlflow, sqlite_url, tmp_path, monkeypatch):
    """dave is named on a model MLflow does not let him read: it is not his to see."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    app = create_app(mlflow_mode(auth_mlflow, sqlite_url, tmp_path, background=False))
    with live(app, sqlite_url) as served:
        ids = {}
        for label in ("seen", "secret"):
            name, (_v1, v2) = make_model(auth_mlflow.url)
            for user, permission in (("alice", "EDIT"), ("bob", "MANAGE"), ("carol", "READ"), ("dave", "MANAGE")):
                grant(auth_mlflow.url, user, name, permission)
            change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
            answer = requests.post(
                f"{served.url}/checkpoint/api/v1/requests",
                auth=as_user("alice"),
                json={"change": change, "reviewers": ["dave"]},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            ids[label] = (answer.json()["id"], name)
        # MLflow takes the secret model away from dave after he was named on it.
        revoked = requests.post(
            f"{auth_mlflow.url}/api/3.0/mlflow/users/permissions/revoke",
            auth=ADMIN,
            json={"username": "dave", "resource_type": "registered_model", "resource_id": ids["secret"][1]},
            timeout=30,
        )
        assert revoked.status_code == 200, revoked.text
        grant(auth_mlflow.url, "dave", ids["secret"][1], "DENY")

        def awaiting(user: str) -> list[int]:
            got = requests.get(f"{served.url}/checkpoint/api/v1/requests?awaiting=me", auth=as_user(user), timeout=30)
            assert got.status_code == 200, got.text
            return [r["id"] for r in got.json()["requests"]]

        assert awaiting("bob") == [ids["secret"][0], ids["seen"][0]]  # MANAGE on both
        assert awaiting("carol") == []  # READ: may not approve, and nobody named her
        assert awaiting("dave") == [ids["seen"][0]]  # named on both, may now read one
        hidden = requests.get(f"{served.url}/checkpoint/api/v1/requests/{ids['secret'][0]}", auth=as_user("dave"), timeout=30)
        assert hidden.status_code == 404  # the same answer as the request page gives him


def test_awaiting_me_follows_each_workspaces_rule(mlflow_workspaces_server, sqlite_url, tmp_path):
    """The same model in two MLflow workspaces, each under its own rule's reviewer."""
    url = mlflow_workspaces_server.url
    a, b = make_workspace(url, "inbox-a"), make_workspace(url, "inbox-b")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"rules:\n  - name: a\n    workspaces: [{a}]\n    reviewers: [frank]\n"
        f"  - name: b\n    workspaces: [{b}]\n    reviewers: [erin]\n"
    )
    app = create_app({"registry_url": url, "database_url": sqlite_url, "data_dir": tmp_path, "policy_file": policy})
    with live(app, sqlite_url) as served:
        name = unique("inbox-ws")
        opened = {}
        for workspace in (a, b):
            Direct(url, workspace).seed(name, False, workspace)
            moved = requests.post(
                f"{served.url}/api/2.0/mlflow/registered-models/alias",
                json={"name": name, "alias": "champion", "version": "2"},
                headers={HEADER: workspace},
                auth=("alice", "x"),
                timeout=30,
            )
            assert moved.status_code == 403, moved.text
            opened[workspace] = moved.json()["checkpoint"]["request_id"]

        def awaiting(user: str, query: str = "") -> list[int]:
            got = requests.get(f"{served.url}/checkpoint/api/v1/requests?awaiting=me{query}", auth=(user, "x"), timeout=30)
            assert got.status_code == 200, got.text
            return [r["id"] for r in got.json()["requests"]]

        assert awaiting("frank") == [opened[a]]
        assert awaiting("erin") == [opened[b]]
        assert awaiting("frank", f"&workspace={b}") == []
        assert awaiting("erin", f"&workspace={b}") == [opened[b]]
