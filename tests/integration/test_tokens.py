"""API tokens (issue #16 §1) against a real MLflow and SQLite/PostgreSQL: created by a real login,
shown once and stored hashed, scopes enforced per route class, revoked and expired refused (the
clock is moved, never slept), last use recorded at most once per five minutes, never forwarded
to MLflow, and refused where a route takes none. Modes: ``none`` and ``header`` here; ``mlflow``
in test_tokens_mlflow.py."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa

from checkpoint import create_app
from checkpoint.web.scopes import ATTR
from tests.support.apps import close_app, live
from tests.support.clock import MovableClock
from tests.support.governed import make_model

API = "/checkpoint/api/v1"


@pytest.fixture
def checkpoint_clock():
    return MovableClock()


@pytest.fixture
def checkpoint_config(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("protected_aliases: [champion]\n")
    return {"policy_file": policy, "token_elevated_users": "bob", "background": False}


def call(base: str, method: str, path: str, token: str | None = None, user: str | None = None, **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    auth = (user, "x") if user else None
    return requests.request(method, f"{base}{API}{path}", headers=headers, auth=auth, timeout=30, **kwargs)


def make_token(base: str, user: str, scopes: list[str], days: int = 30, name: str = "ci") -> dict:
    answer = call(base, "POST", "/tokens", user=user, json={"name": name, "scopes": scopes, "expires_in_days": days})
    assert answer.status_code == 201, answer.text
    return answer.json()


def rows(database_url: str) -> list[dict]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM api_tokens ORDER BY id"))]
    finally:
        engine.dispose()


def promote_body(name: str, version: str) -> dict:
    return {"change": {"kind": "set_alias", "name": name, "version": version, "alias": "champion"}, "title": "t"}


def test_created_once_stored_hashed_and_scopes_enforced(live_checkpoint, mlflow_server):
    base = live_checkpoint.url
    made = make_token(base, "alice", ["read", "request"])
    secret = made["token"]
    assert secret.startswith("cpt_") and len(secret) == 47
    assert made["owner"] == "alice" and made["scopes"] == ["read", "request"] and made["last_used_at"] is None
    # Only the hash at rest: no column of any row holds the secret or any long part of it.
    (row,) = rows(live_checkpoint.database_url)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret[4:20] not in str(value) for value in row.values())
    assert row["hint"] == secret[:8]
    listed = call(base, "GET", "/tokens", user="alice").json()["tokens"]
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]

    name, (v1, v2) = make_model(mlflow_server.url)
    opened = call(base, "POST", "/requests", token=secret, json=promote_body(name, v2))
    assert opened.status_code == 201, opened.text
    request_id = opened.json()["id"]
    assert opened.json()["author"] == "alice"  # the token acts as its owner
    assert call(base, "GET", f"/requests/{request_id}", token=secret).status_code == 200
    assert call(base, "POST", f"/requests/{request_id}/comments", token=secret, json={"body": "from CI"}).status_code == 201

    reader = make_token(base, "alice", ["read"], name="dashboard")["token"]
    assert call(base, "GET", "/requests", token=reader).status_code == 200
    for method, path, body in (
        ("POST", "/requests", promote_body(name, v1)),
        ("POST", f"/requests/{request_id}/comments", {"body": "x"}),
        ("POST", f"/requests/{request_id}/withdraw", {}),
    ):
        refused = call(base, method, path, token=reader, json=body)
        assert refused.status_code == 403, (path, refused.text)
        assert "lacks the 'request' scope" in refused.json()["message"]
    # review and break-glass: never through an ordinary token, whatever the owner's own rights.
    review = call(base, "POST", f"/requests/{request_id}/reviews", token=secret, json={"verdict": "approve"})
    assert review.status_code == 403 and "'review' scope" in review.json()["message"]
    glass = call(base, "POST", f"/requests/{request_id}/break-glass", token=secret, json={"reason": "now"})
    assert glass.status_code == 403 and "'break-glass' scope" in glass.json()["message"]
    assert call(base, "GET", f"/requests/{request_id}", user="bob").json()["state"] == "open"


def test_revoked_and_expired_tokens_are_refused_with_a_clear_401(live_checkpoint, checkpoint_clock):
    base = live_checkpoint.url
    made = make_token(base, "alice", ["read"], days=2)
    assert call(base, "GET", "/requests", token=made["token"]).status_code == 200
    checkpoint_clock.advance(timedelta(days=2, seconds=1))
    expired = call(base, "GET", "/requests", token=made["token"])
    assert expired.status_code == 401
    assert expired.json()["error_code"] == "UNAUTHENTICATED"
    assert "expired at" in expired.json()["message"]
    assert expired.headers["WWW-Authenticate"].startswith("Bearer")

    other = make_token(base, "alice", ["read"], days=30)
    assert call(base, "GET", "/requests", token=other["token"]).status_code == 200
    revoked = call(base, "DELETE", f"/tokens/{other['id']}", user="alice")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = call(base, "GET", "/requests", token=other["token"])
    assert after.status_code == 401 and "was revoked" in after.json()["message"]

    unknown = call(base, "GET", "/requests", token="cpt_" + "A" * 43)
    assert unknown.status_code == 401 and "unknown token" in unknown.json()["message"]
    malformed = call(base, "GET", "/requests", token="cpt_short")
    assert malformed.status_code == 401 and "not a Checkpoint token" in malformed.json()["message"]


def test_last_use_is_recorded_at_most_every_five_minutes(live_checkpoint, checkpoint_clock):
    base = live_checkpoint.url
    made = make_token(base, "alice", ["read"])
    first = checkpoint_clock.now()
    for _ in range(3):
        assert call(base, "GET", "/requests", token=made["token"]).status_code == 200
    checkpoint_clock.advance(timedelta(minutes=4))
    assert call(base, "GET", "/requests", token=made["token"]).status_code == 200
    (row,) = rows(live_checkpoint.database_url)
    assert _utc(row["last_used_at"]) == first  # four calls, one write
    later = checkpoint_clock.advance(timedelta(minutes=2))
    assert call(base, "GET", "/requests", token=made["token"]).status_code == 200
    (row,) = rows(live_checkpoint.database_url)
    assert _utc(row["last_used_at"]) == later


def _utc(value) -> datetime:
    """A stamp as read straight from the table (SQLite hands back naive UTC text)."""
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "x", "scopes": ["read"], "expires_in_days": 0}, 400, "expires_in_days"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": 366}, 400, "from 1 to 365"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": "7"}, 400, "expires_in_days"),
        ({"name": "x", "scopes": ["admin"], "expires_in_days": 7}, 400, "unknown scope"),
        ({"name": "x", "scopes": [], "expires_in_days": 7}, 400, "non-empty list"),
        ({"name": "", "scopes": ["read"], "expires_in_days": 7}, 400, "name"),
        ({"name": "a\nb", "scopes": ["read"], "expires_in_days": 7}, 400, "name"),
        ({"name": "x" * 101, "scopes": ["read"], "expires_in_days": 7}, 400, "name"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": 7, "owner": "bob"}, 400, "unknown field(s): owner"),
        ({"name": "x", "scopes": ["review"], "expires_in_days": 7}, 403, "CHECKPOINT_TOKEN_ELEVATED_USERS"),
        ({"name": "x", "scopes": ["read", "break-glass"], "expires_in_days": 7}, 403, "CHECKPOINT_TOKEN_ELEVATED_USERS"),
    ],
)
def test_bad_token_requests_are_refused_and_store_nothing(live_checkpoint, body, status, message):
    answer = call(live_checkpoint.url, "POST", "/tokens", user="alice", json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["message"]
    assert rows(live_checkpoint.database_url) == []


def test_a_token_cannot_mint_list_or_revoke_tokens(live_checkpoint):
    base = live_checkpoint.url
    made = make_token(base, "alice", ["read", "request", "status"])
    for method, path, body in (
        ("POST", "/tokens", {"name": "longer", "scopes": ["read"], "expires_in_days": 365}),
        ("GET", "/tokens", None),
        ("DELETE", f"/tokens/{made['id']}", None),
    ):
        refused = call(base, method, path, token=made["token"], json=body)
        assert refused.status_code == 403, refused.text
        assert "does not take tokens" in refused.json()["message"]
    assert len(rows(live_checkpoint.database_url)) == 1 and rows(live_checkpoint.database_url)[0]["revoked_at"] is None


def test_another_users_token_is_not_yours_to_revoke(live_checkpoint):
    base = live_checkpoint.url
    made = make_token(base, "alice", ["read"])
    refused = call(base, "DELETE", f"/tokens/{made['id']}", user="mallory")
    assert refused.status_code == 404
    assert call(base, "GET", "/tokens", user="mallory").json()["tokens"] == []
    assert call(base, "GET", "/requests", token=made["token"]).status_code == 200


def test_elevated_users_tokens_review_and_lose_it_when_delisted(mlflow_server, database_url, tmp_path, checkpoint_config):
    """bob, listed in CHECKPOINT_TOKEN_ELEVATED_USERS, approves with a review token; an app
    started without him on the list (same database) refuses that same token's review."""
    clock = MovableClock()
    settings = {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path, **checkpoint_config}
    name, (v1, v2) = make_model(mlflow_server.url)
    first = create_app(settings, clock=clock)
    with live(first, database_url) as served:
        review = make_token(served.url, "bob", ["read", "review"])
        opened = call(served.url, "POST", "/requests", user="alice", json=promote_body(name, v2)).json()
        again = call(served.url, "POST", "/requests", user="carol", json=promote_body(name, v1)).json()
        done = call(served.url, "POST", f"/requests/{opened['id']}/reviews", token=review["token"], json={"verdict": "approve"})
        assert done.status_code == 200, done.text
        assert done.json()["state"] == "applied"
        assert done.json()["reviews"][0]["reviewer"] == "bob"
    second = create_app({**settings, "token_elevated_users": ""}, clock=clock)
    with live(second, database_url) as served:
        refused = call(served.url, "POST", f"/requests/{again['id']}/reviews", token=review["token"], json={"verdict": "approve"})
        assert refused.status_code == 403 and "'review' scope" in refused.json()["message"]


def test_tokens_never_reach_mlflow_and_forms_refuse_them(live_checkpoint, mlflow_server):
    base = live_checkpoint.url
    made = make_token(base, "alice", ["read", "request", "status"])
    name, _ = make_model(mlflow_server.url)
    for method, path in (
        ("GET", f"/api/2.0/mlflow/registered-models/get?name={name}"),
        ("POST", "/api/2.0/mlflow/registered-models/set-tag"),
        ("GET", "/"),
    ):
        answer = requests.request(method, base + path, headers={"Authorization": f"Bearer {made['token']}"}, json={}, timeout=30)
        assert answer.status_code == 401, (path, answer.text)
        assert "works only for Checkpoint's API" in answer.json()["message"]
    page_post = requests.post(
        f"{base}/checkpoint/tokens",
        headers={"Authorization": f"Bearer {made['token']}"},
        data={"name": "x", "scopes": "read", "days": "5"},
        timeout=30,
    )
    assert page_post.status_code in (400, 403)  # the form's CSRF check, or the token check: refused either way
    assert len(rows(live_checkpoint.database_url)) == 1
    page = requests.get(f"{base}/checkpoint/requests", headers={"Authorization": f"Bearer {made['token']}"}, timeout=30)
    assert page.status_code == 200  # a GET page needs read, which this token has


def test_header_mode_accepts_a_token_from_outside_the_trusted_proxy(mlflow_server, sqlite_url, tmp_path):
    app = create_app(
        {
            "registry_url": mlflow_server.url,
            "database_url": sqlite_url,
            "data_dir": tmp_path,
            "auth": "header",
            "trusted_proxies": "10.0.0.1/32",
            "background": False,
        }
    )
    try:
        client = app.test_client()
        proxy = {"REMOTE_ADDR": "10.0.0.1"}
        sso = {"X-Forwarded-User": "alice"}
        page = client.get("/checkpoint/tokens", headers=sso, environ_base=proxy).get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        no_csrf = client.post(
            f"{API}/tokens", json={"name": "ci", "scopes": ["read"], "expires_in_days": 5}, headers=sso, environ_base=proxy
        )
        assert no_csrf.status_code == 400  # an SSO session is ambient: the API wants the CSRF token from it
        made = client.post(
            "/checkpoint/tokens",
            data={"name": "ci", "scopes": ["read"], "days": "5", "csrf_token": csrf},
            headers=sso,
            environ_base=proxy,
        )
        assert made.status_code == 200
        token = re.search(r'id="token-secret">(cpt_[A-Za-z0-9_-]{43})<', made.get_data(as_text=True)).group(1)
        outside = {"REMOTE_ADDR": "192.0.2.7"}
        spoofed = client.get(f"{API}/requests", headers=sso, environ_base=outside)
        assert spoofed.status_code == 401  # headers from outside the proxy prove nothing
        ok = client.get(f"{API}/tokens", headers=sso, environ_base=proxy).get_json()
        assert ok["tokens"][0]["owner"] == "alice"
        read = client.get(f"{API}/requests", headers={"Authorization": f"Bearer {token}"}, environ_base=outside)
        assert read.status_code == 200
        # A token with SSO headers beside it is still only the token: it cannot mint tokens.
        both = client.get(
            f"{API}/tokens", headers={"Authorization": f"Bearer {token}", "X-Forwarded-User": "bob"}, environ_base=proxy
        )
        assert both.status_code == 403
    finally:
        close_app(app)


def test_every_write_route_declares_its_scope_or_refuses_tokens(app):
    """Like MLflow's authorization coverage test: each write under /checkpoint/api/v1 says which
    scope opens it (or none); a route added without one is closed to tokens (web/scopes.py)."""
    expected = {
        "api.create_request": "request",
        "api.open_rollback": "request",
        "api.edit_request": "request",
        "api.withdraw_request": "request",
        "api.comment_request": "request",
        "api.cancel_request": "request",
        "api.rerun_checks": "request",
        "api.review_request": "review",
        "api.retry_request": "review",
        "api.break_glass": "break-glass",
        "tokens_api.create_token": None,
        "tokens_api.list_tokens": None,
        "tokens_api.revoke_token": None,
        "deliveries_api.resend": None,
        "statuses.post_request_status": "status",
        "statuses.post_version_status": "status",
        "plan_api.plan": "read",
        "notifications_api.get_preferences": "read",
        "notifications_api.put_preferences": None,
    }
    for endpoint, scope in expected.items():
        assert getattr(app.view_functions[endpoint], ATTR) == scope, endpoint
    undeclared = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(API)
        and rule.methods - {"GET", "HEAD", "OPTIONS"}
        and not hasattr(app.view_functions[rule.endpoint], ATTR)
    ]
    assert undeclared == [], "give these routes @token_scope(...) (web/scopes.py)"


def _cli(base: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`checkpoint ARGS` in a pipeline's environment: alice's MLflow login plus ``env``."""
    full = {**os.environ, "CHECKPOINT_URL": base, "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "x", **env}
    return subprocess.run([sys.executable, "-m", "checkpoint.cli", *args], env=full, capture_output=True, text=True, timeout=60)


def test_cli_token_create_list_revoke_and_checkpoint_token_as_bearer(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (v1, v2) = make_model(mlflow_server.url)
    made = _cli(base, "token", "create", "--name", "nightly", "--scope", "read", "--scope", "request", "--expires-in-days", "9")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()  # alone on stdout, for export CHECKPOINT_TOKEN=$(...)
    assert re.fullmatch(r"cpt_[A-Za-z0-9_-]{43}", secret)
    assert "shown once" in made.stderr
    # With CHECKPOINT_TOKEN set (and no MLflow login at all), the pipeline's calls go as alice's token.
    opened = _cli(
        base,
        "request",
        "promote",
        "--model",
        name,
        "--version",
        v2,
        "--alias",
        "champion",
        CHECKPOINT_TOKEN=secret,
        MLFLOW_TRACKING_USERNAME="",
        MLFLOW_TRACKING_PASSWORD="",
    )
    assert opened.returncode == 0, opened.stderr
    request_id = int(opened.stdout.split("#", 1)[1].split(" ", 1)[0])
    assert call(base, "GET", f"/requests/{request_id}", user="bob").json()["author"] == "alice"
    # token commands ignore CHECKPOINT_TOKEN (a token cannot manage tokens) and use the login.
    listed = _cli(base, "token", "list", CHECKPOINT_TOKEN=secret)
    assert listed.returncode == 0, listed.stderr
    assert "nightly" in listed.stdout and secret[:8] in listed.stdout and secret not in listed.stdout
    token_id = listed.stdout.split("#", 1)[1].split()[0]
    revoked = _cli(base, "token", "revoke", token_id)
    assert revoked.returncode == 0 and "revoked at" in revoked.stdout
    refused = _cli(base, "request", "show", str(request_id), CHECKPOINT_TOKEN=secret)
    assert refused.returncode != 0 and "revoked" in refused.stderr


def test_posting_a_ci_status_needs_the_status_scope(live_checkpoint, mlflow_server):
    base = live_checkpoint.url
    name, (_, v2) = make_model(mlflow_server.url)
    request_id = call(base, "POST", "/requests", user="alice", json=promote_body(name, v2)).json()["id"]
    body = {"context": "ci/eval", "state": "success"}
    without = make_token(base, "alice", ["read", "request"], name="no-status")["token"]
    refused = call(base, "POST", f"/requests/{request_id}/statuses", token=without, json=body)
    assert refused.status_code == 403 and "'status' scope" in refused.json()["message"]
    refused = call(base, "POST", f"/models/{name}/versions/{v2}/statuses", token=without, json=body)
    assert refused.status_code == 403
    ci = make_token(base, "alice", ["status"], name="ci")["token"]
    posted = call(base, "POST", f"/requests/{request_id}/statuses", token=ci, json=body)
    assert posted.status_code == 201, posted.text
    assert posted.json()["status"]["posted_by"] == "alice"
    on_version = call(base, "POST", f"/models/{name}/versions/{v2}/statuses", token=ci, json={**body, "context": "security/scan"})
    assert on_version.status_code == 201, on_version.text
