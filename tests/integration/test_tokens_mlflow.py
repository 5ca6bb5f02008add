"""API tokens in ``mlflow`` identity mode, against a real MLflow running ``--app-name basic-auth``
(tests/support/auth.py): a token acts as its owner with the owner's MLflow rights, asked with
Checkpoint's own account since Checkpoint never holds the owner's password; MLflow calls with a
token are refused (pipelines use their MLflow credentials there); and the escalations an
attacker with an ordinary account and a second one would try all fail."""

from __future__ import annotations

import pytest
import requests
from mlflow import MlflowClient

from checkpoint import create_app
from tests.support.apps import live
from tests.support.auth import ADMIN, as_user, dump, grant, mlflow_mode
from tests.support.governed import make_model

API = "/checkpoint/api/v1"


@pytest.fixture
def checkpoint(auth_mlflow, database_url, tmp_path):
    """alice and bob may give tokens the review scope; carol and dave may not."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("protected_aliases: [champion]\n")
    app = create_app(
        mlflow_mode(auth_mlflow, database_url, tmp_path, policy_file=policy, token_elevated_users="alice,bob", background=False)
    )
    with live(app, database_url) as served:
        yield served


def call(base: str, method: str, path: str, *, user: str | None = None, token: str | None = None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{base}{API}{path}", auth=as_user(user) if user else None, headers=headers, timeout=30, **kw)


def token_of(base: str, user: str, scopes: list[str]) -> str:
    made = call(base, "POST", "/tokens", user=user, json={"name": f"{user}-ci", "scopes": scopes, "expires_in_days": 7})
    assert made.status_code == 201, made.text
    assert made.json()["owner"] == user
    return made.json()["token"]


def model(auth_mlflow, monkeypatch) -> tuple[str, list[str]]:
    """Made by the admin: alice EDIT, bob MANAGE, carol DENY (the default is READ)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    name, versions = make_model(auth_mlflow.url)
    for user, permission in (("alice", "EDIT"), ("bob", "MANAGE"), ("carol", "DENY")):
        grant(auth_mlflow.url, user, name, permission)
    return name, versions


def promote(name: str, version: str) -> dict:
    return {"change": {"kind": "set_alias", "name": name, "version": version, "alias": "champion"}, "title": "ci"}


@pytest.mark.mlflow3(reason="a token's read rights are asked with users/permissions/get, which MLflow 2.x lacks")
def test_a_token_acts_as_its_owner_with_the_owners_mlflow_rights(checkpoint, auth_mlflow, monkeypatch):
    base = checkpoint.url
    name, (v1, v2) = model(auth_mlflow, monkeypatch)
    alice = token_of(base, "alice", ["read", "request"])
    opened = call(base, "POST", "/requests", token=alice, json=promote(name, v2))
    assert opened.status_code == 201, opened.text
    request_id = opened.json()["id"]
    assert opened.json()["author"] == "alice"
    assert call(base, "GET", f"/requests/{request_id}", token=alice).status_code == 200

    # carol may not read the model in MLflow: her token sees no request of it, and cannot open one.
    carol = token_of(base, "carol", ["read", "request"])
    assert call(base, "GET", f"/requests/{request_id}", token=carol).status_code == 404
    assert request_id not in [r["id"] for r in call(base, "GET", "/requests", token=carol).json()["requests"]]
    before = dump(checkpoint.database_url)
    refused = call(base, "POST", "/requests", token=carol, json=promote(name, v1))
    assert refused.status_code == 403
    assert dump(checkpoint.database_url) == before

    # bob (MANAGE, listed for review tokens) approves with his token: the apply goes out with
    # Checkpoint's account, exactly once.
    bob = token_of(base, "bob", ["read", "review"])
    done = call(base, "POST", f"/requests/{request_id}/reviews", token=bob, json={"verdict": "approve"})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "applied"
    assert MlflowClient(tracking_uri=auth_mlflow.url).get_model_version_by_alias(name, "champion").version == v2


def test_mlflow_calls_with_a_token_are_refused_not_forwarded(checkpoint, auth_mlflow, monkeypatch):
    base = checkpoint.url
    name, (v1, _) = model(auth_mlflow, monkeypatch)
    alice = token_of(base, "alice", ["read", "request"])
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", alice)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    answer = requests.get(
        f"{base}/api/2.0/mlflow/registered-models/get",
        params={"name": name},
        headers={"Authorization": f"Bearer {alice}"},
        timeout=30,
    )
    assert answer.status_code == 401
    assert "MLFLOW_TRACKING_USERNAME/PASSWORD" in answer.json()["message"]
    before = dump(checkpoint.database_url)
    with pytest.raises(Exception, match="works only for Checkpoint's API"):
        MlflowClient(tracking_uri=base).set_registered_model_alias(name, "champion", v1)
    assert dump(checkpoint.database_url) == before


def test_escalations_with_a_token_fail(checkpoint, auth_mlflow, monkeypatch):
    """An attacker holds alice (EDIT) and a second account, dave (no grant on the model, not
    listed for review tokens)."""
    base = checkpoint.url
    name, (v1, v2) = model(auth_mlflow, monkeypatch)
    alice = token_of(base, "alice", ["read", "request", "review"])  # alice is listed: she may hold review
    request_id = call(base, "POST", "/requests", token=alice, json=promote(name, v2)).json()["id"]
    before = dump(checkpoint.database_url)

    # 1. review her own request with her review token: the workflow's self-approval rule holds.
    own = call(base, "POST", f"/requests/{request_id}/reviews", token=alice, json={"verdict": "approve"})
    assert own.status_code == 403 and "your own request" in own.json()["message"]
    # 2. the second account gets a review token: not listed, refused at creation.
    dave = call(base, "POST", "/tokens", user="dave", json={"name": "x", "scopes": ["review"], "expires_in_days": 7})
    assert dave.status_code == 403
    # 3. a token minted for another user: there is no field for it, and a token cannot mint.
    for_bob = call(
        base, "POST", "/tokens", user="dave", json={"name": "x", "scopes": ["read"], "expires_in_days": 7, "owner": "bob"}
    )
    assert for_bob.status_code == 400
    minted = call(base, "POST", "/tokens", token=alice, json={"name": "y", "scopes": ["read"], "expires_in_days": 7})
    assert minted.status_code == 403
    # 4. a wrong MLflow password cannot mint either: token creation is a verified login.
    wrong = requests.post(
        f"{base}{API}/tokens",
        auth=("alice", "not-her-password"),
        json={"name": "z", "scopes": ["read"], "expires_in_days": 1},
        timeout=30,
    )
    assert wrong.status_code == 401
    # 5. a token outliving its revocation: refused on the very next call (no cache in between).
    listed = call(base, "GET", "/tokens", user="alice").json()["tokens"]
    assert call(base, "DELETE", f"/tokens/{listed[0]['id']}", user="alice").status_code == 200
    gone = call(base, "GET", f"/requests/{request_id}", token=alice)
    assert gone.status_code == 401 and "revoked" in gone.json()["message"]
    assert dump(checkpoint.database_url) == before
