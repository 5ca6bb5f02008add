"""``GET``/``PUT /checkpoint/api/v1/notifications``: the preference page's choice as JSON, on
SQLite and PostgreSQL with a real MLflow and a real SMTP server. Always the caller's own (no
parameter names anyone else; a ``user`` field is refused); a token with ``read`` reads its
owner's and never changes it; a browser's cookie call needs the CSRF token; the page and the
API show one choice; answers fit openapi.yaml."""

from __future__ import annotations

import json
import re

import pytest
import requests
import yaml

from checkpoint.app import create_app
from tests.support.hostile import form_session
from tests.support.openapi import check_answer

API = "/checkpoint/api/v1"
PATH = "/notifications"


@pytest.fixture
def checkpoint_config(tmp_path, sink):
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"people": {"alice": "alice@example.com", "bob": "bob@example.com"}}))
    return {"policy_file": policy, "public_url": "http://checkpoint.example.com", **sink.config()}


@pytest.fixture(scope="module")
def document() -> dict:
    from importlib import resources

    return yaml.safe_load(resources.files("checkpoint").joinpath("openapi.yaml").read_text())


def call(base: str, method: str, user: str | None = None, token: str | None = None, **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    auth = (user, "x") if user else None
    return requests.request(method, f"{base}{API}{kwargs.pop('path', PATH)}", headers=headers, auth=auth, timeout=30, **kwargs)


def mode_of(base: str, user: str) -> str:
    answer = call(base, "GET", user)
    assert answer.status_code == 200, answer.text
    return answer.json()["mode"]


def test_the_callers_own_choice_read_and_changed(live_checkpoint, document):
    base = live_checkpoint.url
    first = call(base, "GET", "alice")
    assert first.status_code == 200, first.text
    check_answer(document, PATH, "get", "200", first.json())
    assert first.json() == {
        "user": "alice",
        "mode": "each",
        "email": True,
        "digest": None,
        "address": "alice@example.com",
        "email_configured": True,
    }

    saved = call(base, "PUT", "alice", json={"mode": "daily"})
    assert saved.status_code == 200, saved.text
    check_answer(document, PATH, "put", "200", saved.json())
    assert (saved.json()["mode"], saved.json()["email"], saved.json()["digest"]) == ("daily", True, "daily")
    assert mode_of(base, "alice") == "daily"
    assert mode_of(base, "bob") == "each", "alice's choice is hers alone"

    off = call(base, "PUT", "alice", json={"mode": "off"}).json()
    assert (off["email"], off["digest"]) == (False, None)

    # The page shows the same choice the API made.
    carol = form_session(base, "alice")
    page = requests.get(f"{base}/checkpoint/notifications", headers={"Cookie": carol.cookie}, timeout=30)
    assert re.search(r'value="off"\s+checked', page.text), page.text[:2000]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"mode": "sometimes"}, "mode must be one of each, hourly, daily, off"),
        ({"mode": ["off"]}, "mode must be one of"),
        ({}, "mode must be one of"),
        ({"mode": "off", "user": "bob"}, "unknown field(s): user"),
        ("off", "must be a JSON object"),
    ],
)
def test_bad_input_is_a_clear_400_and_changes_nothing(live_checkpoint, document, body, why):
    base = live_checkpoint.url
    assert call(base, "PUT", "bob", json={"mode": "hourly"}).status_code == 200
    answer = call(base, "PUT", "alice" if isinstance(body, dict) and "user" in body else "bob", json=body)
    assert answer.status_code == 400, answer.text
    check_answer(document, PATH, "put", "400", answer.json())
    assert why in answer.json()["message"]
    assert mode_of(base, "bob") == "hourly"
    assert mode_of(base, "alice") == "each"


def test_nobody_elses_preferences_are_readable(live_checkpoint):
    base = live_checkpoint.url
    assert call(base, "PUT", "bob", json={"mode": "off"}).status_code == 200
    for params in ({"user": "bob"}, {"name": "bob"}, {"person": "bob"}):
        answer = call(base, "GET", "alice", params=params)
        assert answer.status_code == 400, answer.text
        assert "bob" not in answer.text.replace("'bob'", "")
        assert "off" not in answer.json()["message"]
    anonymous = call(base, "GET")
    assert anonymous.status_code == 401, anonymous.text
    # With neither credentials nor a session, the CSRF check refuses the write before anything else.
    assert call(base, "PUT", json={"mode": "each"}).status_code in (400, 401)
    assert mode_of(base, "bob") == "off"


def test_a_token_reads_its_owners_choice_and_never_changes_it(live_checkpoint, document):
    base = live_checkpoint.url
    assert call(base, "PUT", "alice", json={"mode": "hourly"}).status_code == 200
    made = call(base, "POST", "alice", path="/tokens", json={"name": "ci", "scopes": ["read", "request"], "expires_in_days": 7})
    assert made.status_code == 201, made.text
    token = made.json()["token"]

    read = call(base, "GET", token=token)
    assert read.status_code == 200, read.text
    assert (read.json()["user"], read.json()["mode"]) == ("alice", "hourly")
    for body in ({"mode": "off"}, {"mode": "each"}):
        refused = call(base, "PUT", token=token, json=body)
        assert refused.status_code == 403, refused.text
        check_answer(document, PATH, "put", "403", refused.json())
    assert mode_of(base, "alice") == "hourly"

    narrow = call(base, "POST", "alice", path="/tokens", json={"name": "st", "scopes": ["request"], "expires_in_days": 7})
    answer = call(base, "GET", token=narrow.json()["token"])
    assert answer.status_code == 403 and "'read' scope" in answer.json()["message"], answer.text


def test_a_cookie_caller_needs_the_csrf_token(live_checkpoint):
    base = live_checkpoint.url
    browser = form_session(base, "alice")
    headers = {"Cookie": browser.cookie}
    forged = requests.put(f"{base}{API}{PATH}", json={"mode": "off"}, headers=headers, timeout=30)
    assert forged.status_code in (400, 403), forged.text
    assert mode_of(base, "alice") == "each"
    sent = requests.put(f"{base}{API}{PATH}", json={"mode": "off"}, headers={**headers, "X-CSRFToken": browser.token}, timeout=30)
    assert sent.status_code == 200, sent.text
    assert sent.json()["user"] == "alice" and mode_of(base, "alice") == "off"


def test_without_smtp_the_choice_is_kept_for_later(mlflow_server, sqlite_url, tmp_path):
    from tests.support.apps import close_app

    application = create_app({"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path})
    try:
        client = application.test_client()
        auth = {"Authorization": "Basic YWxpY2U6eA=="}  # alice:x
        assert client.put(f"{API}{PATH}", json={"mode": "daily"}, headers=auth).status_code == 200
        answer = client.get(f"{API}{PATH}", headers=auth).get_json()
        assert (answer["mode"], answer["email_configured"], answer["address"]) == ("daily", False, None)
    finally:
        close_app(application)
