"""Who is who: MLflow basic-auth identities, SSO headers, demo mode, reviewer policy, break-glass, CSRF.

The ``mlflow`` mode runs against a real MLflow with its basic-auth app: alice (EDIT) asks,
bob and dave (MANAGE) review, carol (READ) may not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from checkpoint import create_app, identity
from checkpoint.edge.gateway import Gateway
from checkpoint.services import services
from tests.support.apps import live
from tests.support.auth import ADMIN, PASSWORDS, as_user, dump, grant, mlflow_mode
from tests.support.governed import make_model


@pytest.fixture
def auth_checkpoint(auth_mlflow, database_url, tmp_path):
    """Checkpoint in ``mlflow`` identity mode, applying with the admin account."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - name: two-person\n    models: ['twice-*']\n    targets: ['alias:champion']\n"
        "    reviewers: [bob, dave]\n    required_approvals: 2\n"
    )
    app = create_app(mlflow_mode(auth_mlflow, database_url, tmp_path, policy_file=policy))
    with live(app, database_url) as served:
        yield served


def api(base: str, method: str, path: str, user: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{base}/checkpoint/api/v1{path}", auth=as_user(user), timeout=30, **kwargs)


def governed_model(auth_mlflow, monkeypatch, name: str | None = None) -> tuple[str, list[str]]:
    """A model made by the admin, with alice EDIT, bob and dave MANAGE, carol READ."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    name, versions = make_model(auth_mlflow.url, name)
    for user, permission in (("alice", "EDIT"), ("bob", "MANAGE"), ("dave", "MANAGE"), ("carol", "READ")):
        grant(auth_mlflow.url, user, name, permission)
    return name, versions


def alice_asks(base: str, name: str, version: str, monkeypatch) -> int:
    """alice's pipeline moves champion through Checkpoint; returns the request id."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["alice"])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(RestException) as refused:
        MlflowClient(tracking_uri=base).set_registered_model_alias(name, "champion", version)
    assert refused.value.error_code == "PERMISSION_DENIED"
    return int(re.search(r"promote request #(\d+)", str(refused.value)).group(1))


def test_mlflow_mode_manage_right_decides_who_reviews(auth_checkpoint, auth_mlflow, monkeypatch):
    base = auth_checkpoint.url
    name, (v1, v2) = governed_model(auth_mlflow, monkeypatch)
    request_id = alice_asks(base, name, v2, monkeypatch)
    opened = api(base, "GET", f"/requests/{request_id}", "bob").json()
    assert opened["author"] == "alice"

    before = dump(auth_checkpoint.database_url)
    own = api(base, "POST", f"/requests/{request_id}/reviews", "alice", json={"verdict": "approve"})
    assert own.status_code == 403
    assert "your own request" in own.json()["message"]
    carol = api(base, "POST", f"/requests/{request_id}/reviews", "carol", json={"verdict": "approve"})
    assert carol.status_code == 403
    assert "MANAGE" in carol.json()["message"]
    wrong = requests.post(
        f"{base}/checkpoint/api/v1/requests/{request_id}/reviews",
        auth=("bob", "wrong-password-1"),
        json={"verdict": "approve"},
        timeout=30,
    )
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    assert dump(auth_checkpoint.database_url) == before  # refusals change nothing

    done = api(base, "POST", f"/requests/{request_id}/reviews", "bob", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    assert MlflowClient(tracking_uri=auth_mlflow.url).get_model_version_by_alias(name, "champion").version == v2


def test_two_approvals_then_rejection_closes(auth_checkpoint, auth_mlflow, monkeypatch):
    base = auth_checkpoint.url
    name, (v1, v2) = governed_model(auth_mlflow, monkeypatch, name=f"twice-{os.urandom(4).hex()}")
    request_id = alice_asks(base, name, v2, monkeypatch)
    first = api(base, "POST", f"/requests/{request_id}/reviews", "bob", json={"verdict": "approve"}).json()
    assert first["state"] == "open"
    assert first["approvals"]["count"] == 1
    assert first["approvals"]["required"] == 2
    assert first["approvals"]["awaited"] == ["dave"]
    assert first["rule"]["name"] == "two-person"
    second = api(base, "POST", f"/requests/{request_id}/reviews", "dave", json={"verdict": "approve"}).json()
    assert second["state"] == "applied", second

    again = alice_asks(base, name, v1, monkeypatch)
    rejected = api(base, "POST", f"/requests/{again}/reviews", "dave", json={"verdict": "reject", "comment": "no"}).json()
    assert rejected["state"] == "rejected"
    assert MlflowClient(tracking_uri=auth_mlflow.url).get_model_version_by_alias(name, "champion").version == v2


def test_break_glass_by_admin_only(auth_checkpoint, auth_mlflow, monkeypatch):
    base = auth_checkpoint.url
    name, (v1, v2) = governed_model(auth_mlflow, monkeypatch)
    request_id = alice_asks(base, name, v2, monkeypatch)
    before = dump(auth_checkpoint.database_url)
    refused = api(base, "POST", f"/requests/{request_id}/break-glass", "bob", json={"reason": "urgent"})
    assert refused.status_code == 403
    empty = api(base, "POST", f"/requests/{request_id}/break-glass", "admin", json={"reason": "  "})
    assert empty.status_code == 400
    assert dump(auth_checkpoint.database_url) == before

    forced = api(base, "POST", f"/requests/{request_id}/break-glass", "admin", json={"reason": "fraud spike, v1 broken"})
    body = forced.json()
    assert body["state"] == "applied", body
    assert "BREAK-GLASS by admin" in body["state_reason"]
    assert any(e["kind"] == "break_glass" and e["data"]["reason"] == "fraud spike, v1 broken" for e in body["events"])
    page = requests.get(f"{base}/checkpoint/requests/{request_id}", auth=ADMIN, timeout=30)
    assert "BREAK-GLASS" in page.text
    assert MlflowClient(tracking_uri=auth_mlflow.url).get_model_version_by_alias(name, "champion").version == v2


def test_mlflow_answers_pass_through_and_pages_challenge(auth_checkpoint, auth_mlflow, monkeypatch):
    base = auth_checkpoint.url
    name, _ = governed_model(auth_mlflow, monkeypatch)
    denied = requests.post(
        f"{base}/api/2.0/mlflow/registered-models/set-tag",
        auth=as_user("carol"),
        timeout=30,
        json={"name": name, "key": "team", "value": "x"},
    )
    assert denied.status_code == 403
    assert denied.text == "Permission denied"  # MLflow's own plain-text answer
    page = requests.get(f"{base}/checkpoint/requests", timeout=30)
    assert page.status_code == 401
    assert page.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    assert requests.get(f"{base}/checkpoint/requests", auth=as_user("carol"), timeout=30).status_code == 200
    assert requests.get(f"{base}/checkpoint/healthz", timeout=30).status_code == 200


# -- header mode ---------------------------------------------------------------------------


def header_app(mlflow_server, database_url, tmp_path, trusted: str):
    return create_app(
        {
            "registry_url": mlflow_server.url,
            "database_url": database_url,
            "data_dir": tmp_path,
            "auth": "header",
            "trusted_proxies": trusted,
            "admin_groups": "platform",
        }
    )


def test_header_mode_trusts_only_configured_proxies(mlflow_server, database_url, tmp_path):
    app = header_app(mlflow_server, database_url, tmp_path, "127.0.0.1/32")
    client = app.test_client()
    # A program behind the SSO proxy (which adds the identity headers) sends its own bearer token,
    # so no CSRF token is needed; a browser would need one.
    sso = {
        "X-Forwarded-User": "bob",
        "X-Forwarded-Email": "bob@example.com",
        "X-Forwarded-Groups": "ml, platform",
        "Authorization": "Bearer from-the-sso-proxy",
    }
    name, (v1,) = make_model(mlflow_server.url, versions=1)
    made = client.post(
        "/checkpoint/api/v1/requests",
        headers=sso,
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
        json={"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v1}},
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["author"] == "bob"

    before = dump(database_url)
    spoofed = client.post(
        "/checkpoint/api/v1/requests",
        headers=sso,
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
        json={"change": {"kind": "set_alias", "name": name, "alias": "prod", "version": v1}},
    )
    assert spoofed.status_code == 401  # the same headers from an untrusted peer are ignored
    assert dump(database_url) == before


def test_header_mode_strips_identity_headers_before_mlflow(mlflow_server, database_url, tmp_path):
    app = header_app(mlflow_server, database_url, tmp_path, "10.0.0.0/8")
    seen: list[dict] = []

    def recorder(environ, start_response):
        seen.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    gateway = app.wsgi_app
    assert isinstance(gateway, Gateway)
    gateway.proxy = recorder
    answer = app.test_client().get(
        "/api/2.0/mlflow/registered-models/search", headers={"X-Forwarded-User": "admin", "X-Forwarded-Groups": "platform"}
    )
    assert answer.status_code == 200
    assert "HTTP_X_FORWARDED_USER" not in seen[0]
    assert "HTTP_X_FORWARDED_GROUPS" not in seen[0]


# -- none mode -----------------------------------------------------------------------------


def test_none_mode_refuses_a_public_bind(tmp_path):
    env = {**os.environ, "CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:1", "CHECKPOINT_DATA_DIR": str(tmp_path)}
    env.pop("CHECKPOINT_AUTH", None)
    env.pop("CHECKPOINT_ALLOW_UNAUTHENTICATED", None)
    done = subprocess.run(
        [sys.executable, "-m", "checkpoint.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0 with CHECKPOINT_AUTH=none" in done.stderr
    assert "Traceback" not in done.stderr
    identity.check_bind(identity.NoAuth(), "0.0.0.0", allow_unauthenticated=True)
    identity.check_bind(identity.NoAuth(), "127.0.0.1")


def test_csrf_protects_forms(app, sqlite_url):
    client = app.test_client()
    before = dump(sqlite_url)
    refused = client.post("/checkpoint/whoami", data={"name": "mallory"})
    assert refused.status_code == 400
    assert "CSRF" in refused.get_data(as_text=True)
    assert dump(sqlite_url) == before
    form = client.get("/checkpoint/whoami").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    accepted = client.post("/checkpoint/whoami", data={"name": "alice", "csrf_token": token})
    assert accepted.status_code == 303
    assert "You are <strong>alice</strong>" in client.get("/checkpoint/requests").get_data(as_text=True)
    cookie = accepted.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    headers = client.get("/checkpoint/requests").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "SAMEORIGIN"


def test_a_protected_name_is_created_by_checkpoints_account_not_the_callers(auth_checkpoint, auth_mlflow, monkeypatch):
    """Squatting: in ``mlflow`` mode a model's creator holds MANAGE on it, and MANAGE decides
    who may approve where a rule names no reviewers. An ordinary user who created ``prod.x``
    could approve her own copies into it with a second account she grants MANAGE to. Through
    Checkpoint the protected name is created by Checkpoint's account, and the copy still
    becomes one request."""
    base = auth_checkpoint.url
    registry = services(auth_checkpoint.app).registry
    name, (v1, _) = governed_model(auth_mlflow, monkeypatch)
    prod = f"prod.{name}"

    # The premise, straight on MLflow: a user who creates a model holds MANAGE on it.
    squat = f"squat.{name}"
    made = requests.post(
        f"{auth_mlflow.url}/api/2.0/mlflow/registered-models/create", auth=as_user("alice"), json={"name": squat}, timeout=30
    )
    assert made.status_code == 200 and registry.can_manage("alice", squat)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["alice"])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as refused:  # the client wraps the refusal of the copy
        MlflowClient(tracking_uri=base).copy_model_version(f"models:/{name}/{v1}", prod)
    assert re.search(r"promote request #\d+", str(refused.value)), str(refused.value)

    direct = MlflowClient(tracking_uri=auth_mlflow.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    assert direct.get_registered_model(prod).name == prod
    assert direct.search_model_versions(f"name = '{prod}'") == []  # the copy waits for review
    assert not registry.can_manage("alice", prod), "alice must not own the protected model"
    # So she cannot hand a second account the right to approve into it.
    handed = requests.post(
        f"{auth_mlflow.url}/api/3.0/mlflow/users/permissions/grant",
        auth=as_user("alice"),
        timeout=30,
        json={"username": "carol", "resource_type": "registered_model", "resource_id": prod, "permission": "MANAGE"},
    )
    assert handed.status_code in (401, 403), handed.text
    assert not registry.can_manage("carol", prod)

    # Creating it again answers as MLflow does, so a second copy goes on to its own request.
    again = requests.post(
        f"{base}/api/2.0/mlflow/registered-models/create", auth=as_user("alice"), json={"name": prod}, timeout=30
    )
    assert again.status_code == 400 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS", again.text
    # An unprotected name is still the caller's own, as MLflow makes it.
    mine = f"mine.{name}"
    assert (
        requests.post(
            f"{base}/api/2.0/mlflow/registered-models/create", auth=as_user("alice"), json={"name": mine}, timeout=30
        ).status_code
        == 200
    )
    assert registry.can_manage("alice", mine)
