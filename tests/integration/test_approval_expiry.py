"""Approvals that expire (a rule's ``approvals_expire_after``), against a real MLflow through
Checkpoint, on SQLite and PostgreSQL, under one clock the tests move (they never sleep).

An approval past its rule's limit stops counting at once (status, open → approved, apply), the
request page and the API say so, and the background task records each expiry exactly once,
even with two app instances on one database running it at the same moment, and after a
restart. A malformed value stops start-up naming the rule and the key.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import RestException

from checkpoint import create_app
from checkpoint.errors import ConfigError
from checkpoint.services import services
from checkpoint.storage.models import EventRow
from tests.support.apps import background_task, close_app
from tests.support.clock import MovableClock
from tests.support.governed import api, make_model, unique
from tests.support.processes import serve_refusal
from tests.support.race import race

TASK = "approval-expiry"
POLICY = """\
rules:
  - name: weekly champion
    models: ["expiry-*"]
    targets: ["alias:champion"]
    required_approvals: 2
    approvals_expire_after: 7d
  - name: racing
    models: ["race-*"]
    required_approvals: 3
    approvals_expire_after: 90m
  - name: renames
    models: ["rename-*"]
    approvals_expire_after: 1d
"""


@pytest.fixture
def checkpoint_clock() -> MovableClock:
    """The apps of this module read this clock (conftest's app fixtures take it)."""
    return MovableClock(datetime.now(UTC))


@pytest.fixture
def checkpoint_config(tmp_path) -> dict:
    """The policy above; no background thread, so each test runs the task itself, when it chooses."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"policy_file": policy, "background": False}


def direct(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def open_request(base: str, change: dict, user: str = "alice") -> dict:
    answer = api(base, "POST", "/requests", user=user, json={"change": change})
    assert answer.status_code == 201, answer.text
    return answer.json()


def review(base: str, request_id: int, user: str) -> dict:
    answer = api(base, "POST", f"/requests/{request_id}/reviews", user=user, json={"verdict": "approve"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def get(base: str, request_id: int) -> dict:
    answer = api(base, "GET", f"/requests/{request_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def expired_events(engine: sa.Engine, request_id: int) -> list[dict]:
    """The ``approval_expired`` events of a request, from the table itself."""
    query = (
        sa.select(EventRow.data)
        .where(EventRow.request_id == request_id, EventRow.kind == "approval_expired")
        .order_by(EventRow.id)
    )
    with engine.connect() as conn:
        return list(conn.scalars(query))


def kinds(engine: sa.Engine, request_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.select(EventRow.kind).where(EventRow.request_id == request_id).order_by(EventRow.id)))


def test_an_expired_approval_stops_counting_and_its_expiry_is_recorded_once(live_checkpoint, mlflow_server, checkpoint_clock):
    client = direct(mlflow_server)
    name, (v1, v2) = make_model(mlflow_server.url, unique("expiry"))
    client.set_registered_model_alias(name, "champion", v1)
    base, app = live_checkpoint.url, live_checkpoint.app
    engine = services(app).engine
    opened = open_request(base, {"kind": "set_alias", "name": name, "alias": "champion", "version": v2})
    approved_at = checkpoint_clock.now()
    first = review(base, opened["id"], "bob")
    assert first["state"] == "open" and first["approvals"]["count"] == 1 and first["approvals"]["expired"] == []
    assert "approvals expire after 1w" in first["rule"]["description"]
    (bob,) = first["reviews"]
    assert bob["expired"] is False
    assert datetime.fromisoformat(bob["expires_at"]) == approved_at + timedelta(days=7)

    checkpoint_clock.advance(timedelta(days=7) - timedelta(minutes=1))
    assert get(base, opened["id"])["approvals"]["count"] == 1  # a minute to go: it still counts
    checkpoint_clock.advance(timedelta(minutes=1))
    now = get(base, opened["id"])
    # It stops counting the moment it is too old, before the background work has looked.
    assert now["approvals"]["count"] == 0 and now["approvals"]["expired"] == ["bob"] and now["approvals"]["awaited"] == []
    assert now["reviews"][0]["expired"] is True and now["state"] == "open"
    assert expired_events(engine, opened["id"]) == []
    page = requests.get(f"{base}/checkpoint/requests/{opened['id']}", auth=("carol", "x"), timeout=30)
    assert page.status_code == 200
    assert re.search(r'class="cp-expired">expired \d{4}-\d\d-\d\d \d\d:\d\d UTC: no longer counts', page.text), page.text
    assert '0 of 2 approvals · <span class="cp-expired">approval expired: bob</span>' in page.text

    run = background_task(app, TASK)
    recorded = run()
    assert recorded == [bob["id"]]
    assert run() == []  # recorded once: the next round finds nothing
    page = requests.get(f"{base}/checkpoint/requests/{opened['id']}", auth=("carol", "x"), timeout=30).text
    assert "<strong>Checkpoint</strong> expired bob&#39;s approval" in page and "— older than 1w" in page
    (event,) = expired_events(engine, opened["id"])
    assert event == {
        "review_id": bob["id"],
        "reviewer": "bob",
        "approved_at": datetime.fromisoformat(bob["created_at"]).isoformat(),
        "rule": "weekly champion",
        "expire_after": "1w",
    }

    # dave's fresh approval is one of two: bob's old one does not make up the second.
    after_dave = review(base, opened["id"], "dave")
    assert after_dave["state"] == "open" and after_dave["approvals"]["count"] == 1, after_dave
    assert client.get_model_version_by_alias(name, "champion").version == v1
    # bob approves again, on what is there now: two counting approvals, applied.
    done = review(base, opened["id"], "bob")
    assert done["state"] == "applied", done
    assert done["approvals"]["approvers"] == ["bob", "dave"] and done["approvals"]["expired"] == []
    assert [(r["reviewer"], r["expired"]) for r in done["reviews"]] == [("bob", True), ("dave", False), ("bob", False)]
    assert client.get_model_version_by_alias(name, "champion").version == v2
    checkpoint_clock.advance(timedelta(days=30))
    assert run() == []  # an applied request's approvals are history: never expired afterwards
    assert len(expired_events(engine, opened["id"])) == 1


def test_two_instances_on_one_database_record_each_expiry_exactly_once(
    live_checkpoint, mlflow_server, checkpoint_clock, checkpoint_config, tmp_path
):
    """Both run the background task at the same moment (the race helper's barrier), three times
    over; then a third instance, started afresh on the same database, finds nothing to record."""
    base, app = live_checkpoint.url, live_checkpoint.app
    engine = services(app).engine
    config = {"registry_url": mlflow_server.url, "database_url": live_checkpoint.database_url, **checkpoint_config}
    other = create_app({**config, "data_dir": tmp_path / "b"}, clock=checkpoint_clock)
    try:
        for trial in range(3):
            name, (_, v2) = make_model(mlflow_server.url, unique("race"))
            opened = [
                open_request(base, {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}, user=author)
                for author in ("alice", "carol")
            ]
            reviews = []
            for item in opened:
                for who in ("bob", "dave"):
                    reviews.append(review(base, item["id"], who)["reviews"][-1]["id"])  # the newest review: this one
            checkpoint_clock.advance(timedelta(minutes=90))
            first, second = race(background_task(app, TASK), background_task(other, TASK))
            assert sorted(first + second) == sorted(reviews), (trial, first, second)  # each once, by one of them
            for item in opened:
                assert Counter(e["reviewer"] for e in expired_events(engine, item["id"])) == {"bob": 1, "dave": 1}
                assert get(base, item["id"])["approvals"]["count"] == 0
            assert race(background_task(app, TASK), background_task(other, TASK)) == [[], []]
    finally:
        close_app(other)
    restarted = create_app({**config, "data_dir": tmp_path / "c"}, clock=checkpoint_clock)
    try:
        assert background_task(restarted, TASK)() == []  # nothing lived only in memory
    finally:
        close_app(restarted)


def test_an_approval_that_expired_before_the_apply_reopens_the_request(live_checkpoint, mlflow_server, checkpoint_clock):
    """A request approved, whose apply failed, retried after its approval expired: the apply
    counts the approvals again, records the expiry, and sends the request back to open."""
    client = direct(mlflow_server)
    name, _ = make_model(mlflow_server.url, unique("rename"), versions=1)
    new_name = unique("renamed")
    base, engine = live_checkpoint.url, services(live_checkpoint.app).engine
    opened = open_request(base, {"kind": "rename", "name": name, "new_name": new_name})
    client.create_registered_model(new_name)  # the name is taken: the apply fails
    failed = review(base, opened["id"], "bob")
    assert failed["state"] == "failed", failed
    client.delete_registered_model(new_name)

    checkpoint_clock.advance(timedelta(days=1))
    retried = api(base, "POST", f"/requests/{opened['id']}/retry", user="bob")
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body["state"] == "open", body
    assert body["state_reason"] == "approvals expired before it applied: 0 of 1 approvals · approval expired: bob"
    assert kinds(engine, opened["id"])[-4:] == ["retried", "applying", "approval_expired", "reopened"]
    assert client.get_registered_model(name).name == name  # nothing renamed
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(new_name)
    assert background_task(live_checkpoint.app, TASK)() == []  # the apply recorded it already

    done = review(base, opened["id"], "bob")
    assert done["state"] == "applied", done
    assert client.get_registered_model(new_name).name == new_name


BAD = [
    ("no-unit", "7", r"rules\[0\] \(weekly\)\.approvals_expire_after: 7 has no unit"),
    ("months", "1M", r"rules\[0\] \(weekly\)\.approvals_expire_after: '1M': unknown unit 'M'"),
    ("zero", "0d", r"rules\[0\] \(weekly\)\.approvals_expire_after: '0d': a duration must be longer than zero"),
    ("words", "a week", r"rules\[0\] \(weekly\)\.approvals_expire_after: expected a duration such as"),
]


def bad_policy(directory: Path, value: str) -> Path:
    path = directory / "bad-policy.yaml"
    path.write_text(f"rules:\n  - name: weekly\n    models: ['*']\n    approvals_expire_after: {value}\n")
    return path


@pytest.mark.parametrize(("value", "pattern"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_malformed_expiry_is_refused_at_start_naming_the_rule_and_key(value, pattern, tmp_path, sqlite_url):
    config = {"registry_url": "http://127.0.0.1:9", "database_url": sqlite_url, "data_dir": tmp_path}
    with pytest.raises(ConfigError, match=pattern):
        create_app({**config, "policy_file": bad_policy(tmp_path, value)})


def test_checkpoint_serve_refuses_a_malformed_expiry_without_a_traceback(tmp_path):
    policy = str(bad_policy(tmp_path, "7"))
    result = serve_refusal(tmp_path, CHECKPOINT_REGISTRY_URL="http://127.0.0.1:9", CHECKPOINT_POLICY_FILE=policy)
    assert result.stderr.startswith("Error: ") and re.search(BAD[0][2], result.stderr), result.stderr
