"""Email through the whole app: a real MLflow, Checkpoint built by ``create_app`` with the SMTP
settings, a real SMTP server (aiosmtpd). alice opens a request, the reviewers the rule's group
names (read from the policy's ``groups:``) get the invitation, one of them turns email off on
the preference page, bob approves, and alice hears that it is approved and applied. The
background task ``email`` is run by the test, as the thread would, without waiting."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa

from checkpoint import create_app
from checkpoint.errors import ConfigError
from tests.support.apps import background_task, live
from tests.support.auth import ADMIN, as_user, grant, mlflow_mode
from tests.support.clock import MovableClock
from tests.support.databases import migrated_sqlite
from tests.support.governed import api, make_model, unique
from tests.support.hostile import form_session

PUBLIC = "http://checkpoint.example.com"  # plain http: the test session keeps its cookie (https makes it Secure)
POLICY = {
    "people": {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com"},
    "groups": {"ml-leads": ["bob", "carol"]},
    "rules": [{"name": "mailed", "models": ["mailed-*"], "groups": ["ml-leads"], "required_approvals": 1}],
}


def test_invitation_preference_and_applied_email_through_the_app(mlflow_server, sink, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps(POLICY))  # JSON is YAML
    database_url = migrated_sqlite(tmp_path)
    config = {
        "registry_url": mlflow_server.url,
        "database_url": database_url,
        "data_dir": tmp_path,
        "policy_file": policy,
        "public_url": PUBLIC,
        "background": False,
        **sink.config(),
    }
    application = create_app(config, clock=MovableClock(datetime.now(UTC)))
    send = background_task(application, "email")
    with live(application, database_url) as served:
        name, (_, v2) = make_model(mlflow_server.url, unique("mailed"))
        change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
        opened = api(served.url, "POST", "/requests", user="alice", json={"change": change, "description": "@carol FYI"})
        assert opened.status_code == 201, opened.text
        request_id = opened.json()["id"]
        assert len(send().delivered) == 2
        invited = {r.to[0]: r for r in sink.received}
        assert sorted(invited) == ["bob@example.com", "carol@example.com"]  # carol once, though also mentioned
        line = f"alice asks for your review on #{request_id}: {name} v{v2} → alias:champion"
        assert invited["bob@example.com"].subject == f"[Checkpoint] {line}"
        assert f"{PUBLIC}/checkpoint/requests/{request_id}" in invited["bob@example.com"].part("plain")

        # carol turns email off on her page (a form with the CSRF token, as a browser sends it).
        carol = form_session(served.url, "carol")
        headers = {"Cookie": carol.cookie}
        page = requests.get(f"{served.url}/checkpoint/notifications", headers=headers, timeout=30)
        assert page.status_code == 200 and "carol@example.com" in page.text
        assert re.search(r'value="each"\s+checked', page.text)
        saved = requests.post(
            f"{served.url}/checkpoint/notifications",
            data={"mode": "off", "csrf_token": carol.token},
            headers=headers,
            timeout=30,
            allow_redirects=False,
        )
        assert saved.status_code == 303, saved.text[:300]
        bad = requests.post(
            f"{served.url}/checkpoint/notifications",
            data={"mode": "sometimes", "csrf_token": carol.token},
            headers=headers,
            timeout=30,
        )
        assert bad.status_code == 400
        page = requests.get(f"{served.url}/checkpoint/notifications", headers=headers, timeout=30)
        assert re.search(r'value="off"\s+checked', page.text)

        # An edit mentions only the names its new text adds (carol was mentioned before).
        sink.received.clear()
        edited = api(served.url, "PATCH", f"/requests/{request_id}", user="alice", json={"description": "@carol FYI, @bob"})
        assert edited.status_code == 200, edited.text
        assert [e["data"].get("mentioned") for e in edited.json()["events"] if e["kind"] == "edited"] == [["bob"]]
        send()
        assert [(r.to[0], r.subject) for r in sink.received] == [
            ("bob@example.com", f"[Checkpoint] alice mentioned you on #{request_id}: {name} v{v2} → alias:champion")
        ]

        sink.received.clear()
        comment = api(served.url, "POST", f"/requests/{request_id}/comments", user="bob", json={"body": "@carol have a look"})
        assert comment.status_code == 201, comment.text
        approved = api(served.url, "POST", f"/requests/{request_id}/reviews", user="bob", json={"verdict": "approve"})
        assert approved.json()["state"] == "applied", approved.text
        send()
        assert [r.to[0] for r in sink.received] == ["alice@example.com"] * 3  # carol turned it off
        assert [r.subject for r in sink.received] == [
            f"[Checkpoint] bob commented on your request #{request_id}: {name} v{v2} → alias:champion",
            f"[Checkpoint] Your request #{request_id} was approved by bob: {name} v{v2} → alias:champion",
            f"[Checkpoint] Your request #{request_id} is applied: {name} v{v2} → alias:champion",
        ]
        assert send().delivered == []


def test_no_smtp_host_means_no_email_rows_and_no_email_task(mlflow_server, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps(POLICY))
    database_url = migrated_sqlite(tmp_path)
    application = create_app(
        {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path, "policy_file": policy}
    )
    with live(application, database_url) as served:
        name, (_, v2) = make_model(mlflow_server.url, unique("mailed"))
        change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
        opened = api(served.url, "POST", "/requests", user="alice", json={"change": change})
        assert opened.status_code == 201, opened.text
        listed = api(served.url, "GET", "/deliveries", params={"request_id": opened.json()["id"]})
        assert listed.json()["deliveries"] == []
        page = requests.get(f"{served.url}/checkpoint/notifications", auth=("bob", "x"), timeout=30)
        assert "sends no email" in page.text
    with pytest.raises(AssertionError, match="no background task 'email'"):
        background_task(application, "email")


def test_smtp_settings_are_checked_at_start(mlflow_server, tmp_path):
    base = {"registry_url": mlflow_server.url, "database_url": migrated_sqlite(tmp_path), "data_dir": tmp_path}
    with pytest.raises(ConfigError, match="CHECKPOINT_PUBLIC_URL is not"):
        create_app({**base, "smtp_host": "127.0.0.1", "smtp_from": "cp@example.com"})
    with pytest.raises(ConfigError, match="CHECKPOINT_SMTP_SECURITY='ssl'"):
        create_app({**base, "public_url": PUBLIC, "smtp_host": "smtp.example.com", "smtp_security": "ssl"})


def test_in_mlflow_mode_a_mention_never_mails_a_model_to_someone_who_cannot_read_it(auth_mlflow, sink, tmp_path, monkeypatch):
    """alice may edit the model, bob reads it (the server's default), carol is denied it in
    MLflow: alice's @mentions and her comment reach bob only. The delivery rows, read from the
    database directly, hold none for carol."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"people": POLICY["people"], "rules": [{"name": "mailed", "models": ["mailed-*"]}]}))
    database_url = migrated_sqlite(tmp_path)
    config = mlflow_mode(auth_mlflow, database_url, tmp_path, policy_file=policy, public_url=PUBLIC, background=False)
    application = create_app({**config, **sink.config()}, clock=MovableClock(datetime.now(UTC)))
    send = background_task(application, "email")
    name, (_, v2) = make_model(auth_mlflow.url, unique("mailed"))
    grant(auth_mlflow.url, "alice", name, "EDIT")
    grant(auth_mlflow.url, "carol", name, "DENY")
    with live(application, database_url) as served:
        base = f"{served.url}/checkpoint/api/v1"
        change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
        body = {"change": change, "title": "secret launch", "description": "@carol @bob have a look"}
        opened = requests.post(f"{base}/requests", auth=as_user("alice"), json=body, timeout=30)
        assert opened.status_code == 201, opened.text
        request_id = opened.json()["id"]
        assert requests.get(f"{base}/requests/{request_id}", auth=as_user("carol"), timeout=30).status_code == 404
        said = requests.post(
            f"{base}/requests/{request_id}/comments", auth=as_user("alice"), json={"body": "@carol?"}, timeout=30
        )
        assert said.status_code == 201, said.text
        send()
        assert [r.to[0] for r in sink.received] == ["bob@example.com"]
        assert "secret launch" not in "".join(r.part("plain") for r in sink.received if r.to[0] != "bob@example.com")
        with sa.create_engine(database_url).connect() as conn:
            boxes = conn.execute(sa.text("SELECT webhook FROM deliveries WHERE request_id = :i"), {"i": request_id}).scalars()
            assert sorted(set(boxes)) == ["email:bob"]
