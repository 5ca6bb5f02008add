"""Soak (a rule's ``soak:``), against a real MLflow through Checkpoint, on SQLite and PostgreSQL,
under one clock the tests move (they never sleep).

A request to make v2 ``champion`` under ``soak: {held: alias:challenger, for: 24h}`` is held open
by its required ``soak`` check, which says how long is left; once the clock passes the time, the
background task — run by two app instances on one database at the same moment — approves and
applies it exactly once, without anyone clicking. A challenger that never held the alias stays
blocked; one that stops holding it fails the soak; only break-glass skips it; a malformed key
stops start-up naming the rule and the key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient

from checkpoint import create_app
from checkpoint.errors import ConfigError
from checkpoint.services import services
from checkpoint.storage.models import EventRow
from tests.support.apps import background_task, close_app
from tests.support.clock import MovableClock
from tests.support.governed import api, make_model, unique
from tests.support.processes import serve_refusal
from tests.support.race import race

TASK = "soak"
POLICY = """\
rules:
  - name: soaked champion
    models: ["soak-*"]
    targets: ["alias:champion"]
    soak: {held: "alias:challenger", for: 24h}
  - name: promotion train
    models: ["prod.train-*"]
    targets: ["model:prod.*"]
    soak: {held: "model:staging.*", for: 24h}
"""


@pytest.fixture
def checkpoint_clock() -> MovableClock:
    """The apps of this module read this clock (conftest's app fixtures take it)."""
    return MovableClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def checkpoint_config(tmp_path) -> dict:
    """The policy above; no background thread, so each test runs the task itself, when it chooses."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {"policy_file": policy, "background": False, "admins": "root"}


def direct(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def through(base: str) -> MlflowClient:
    """The MLflow client pointed at Checkpoint."""
    return MlflowClient(tracking_uri=base, registry_uri=base)


def open_request(base: str, name: str, version: str, user: str = "alice") -> dict:
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": version}
    answer = api(base, "POST", "/requests", user=user, json={"change": change})
    assert answer.status_code == 201, answer.text
    return answer.json()


def approve(base: str, request_id: int, user: str = "bob") -> dict:
    answer = api(base, "POST", f"/requests/{request_id}/reviews", user=user, json={"verdict": "approve"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def get(base: str, request_id: int) -> dict:
    answer = api(base, "GET", f"/requests/{request_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def soak_of(body: dict) -> dict:
    (found,) = [c for c in body["checks"] if c["name"] == "soak"]
    return found


def kinds(engine: sa.Engine, request_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.select(EventRow.kind).where(EventRow.request_id == request_id).order_by(EventRow.id)))


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_soak_holds_the_request_then_applies_it_exactly_once_by_itself(
    live_checkpoint, mlflow_server, checkpoint_clock, checkpoint_config, tmp_path
):
    client = direct(mlflow_server)
    name, (v1, v2, v3) = make_model(mlflow_server.url, unique("soak"), versions=3)
    client.set_registered_model_alias(name, "champion", v1)
    base, app = live_checkpoint.url, live_checkpoint.app
    engine = services(app).engine
    # challenger is no protected alias: the call passes through Checkpoint to MLflow untouched.
    through(base).set_registered_model_alias(name, "challenger", v2)
    assert client.get_model_version_by_alias(name, "challenger").version == v2

    opened_at = checkpoint_clock.now()
    opened = open_request(base, name, v2)
    soak = soak_of(opened)
    # Checkpoint noticed the challenger when the soak first looked: held since then, never before.
    since, ends = stamp(opened_at), stamp(opened_at + timedelta(hours=24))
    assert soak["required"] is True and soak["status"] == "pending", soak
    assert soak["reason"] == f"1 d remaining (held alias:challenger since {since}; the 1d soak ends {ends})"
    waiting = opened["waiting_for"]
    assert (waiting["kind"], waiting["name"]) == ("soak", "alias:challenger"), waiting
    assert datetime.fromisoformat(waiting["until"]) == opened_at + timedelta(hours=24)
    approved = approve(base, opened["id"])
    assert approved["state"] == "open" and approved["blocked_by_checks"] == ["soak"], approved
    assert "the challenger first held alias:challenger for at least 1d" in approved["rule"]["description"]

    never = open_request(base, name, v3, user="carol")  # v3 never held challenger
    assert soak_of(never)["status"] == "fail"
    assert never["waiting_for"] is None  # it waits for nothing that time alone would bring
    assert soak_of(never)["reason"].startswith(f"never held alias:challenger: {name} v{v3} has not held it")
    approve(base, never["id"])

    checkpoint_clock.advance(timedelta(hours=18, minutes=48))
    waiting = get(base, opened["id"])
    assert soak_of(waiting)["reason"].startswith("5 h 12 m remaining (held alias:challenger since"), waiting
    page = requests.get(f"{base}/checkpoint/requests/{opened['id']}", auth=("dave", "x"), timeout=30).text
    assert "5 h 12 m remaining (held alias:challenger since" in page
    run = background_task(app, TASK)
    assert run() == []  # not yet
    assert get(base, opened["id"])["state"] == "open"

    checkpoint_clock.advance(timedelta(hours=5, minutes=12))  # exactly 24 h
    assert soak_of(get(base, opened["id"]))["reason"].startswith("time reached; passes at the background work's next round")
    config = {"registry_url": mlflow_server.url, "database_url": live_checkpoint.database_url, **checkpoint_config}
    other = create_app({**config, "data_dir": tmp_path / "b"}, clock=checkpoint_clock)
    try:
        first, second = race(background_task(app, TASK), background_task(other, TASK))
        assert sorted(first + second) == [opened["id"]], (first, second)  # one of them, once
        assert race(background_task(app, TASK), background_task(other, TASK)) == [[], []]
    finally:
        close_app(other)
    done = get(base, opened["id"])
    assert done["state"] == "applied", done
    assert soak_of(done)["status"] == "pass"
    assert done["waiting_for"] is None
    assert client.get_model_version_by_alias(name, "champion").version == v2
    events = kinds(engine, opened["id"])
    assert events.count("approved") == 1 and events.count("applying") == 1 and events.count("applied") == 1, events
    assert events[-3:] == ["approved", "applying", "applied"]

    # The challenger that never held the alias stays blocked, however long it waits.
    checkpoint_clock.advance(timedelta(days=3))
    assert background_task(app, TASK)() == []
    still = get(base, never["id"])
    assert still["state"] == "open" and still["blocked_by_checks"] == ["soak"]
    assert soak_of(still)["status"] == "fail"
    restarted = create_app({**config, "data_dir": tmp_path / "c"}, clock=checkpoint_clock)
    try:
        assert background_task(restarted, TASK)() == []  # nothing lived only in memory
    finally:
        close_app(restarted)


def test_a_challenger_that_stops_holding_fails_the_soak_and_starts_again(live_checkpoint, mlflow_server, checkpoint_clock):
    client = direct(mlflow_server)
    name, (v1, v2, v3) = make_model(mlflow_server.url, unique("soak"), versions=3)
    client.set_registered_model_alias(name, "champion", v1)
    client.set_registered_model_alias(name, "challenger", v2)
    base, app = live_checkpoint.url, live_checkpoint.app
    opened = open_request(base, name, v2)
    approve(base, opened["id"])
    run = background_task(app, TASK)

    checkpoint_clock.advance(timedelta(hours=20))
    client.set_registered_model_alias(name, "challenger", v3)  # moved before the time was up
    assert run() == []
    moved = soak_of(get(base, opened["id"]))
    assert moved["status"] == "fail" and moved["reason"].startswith("no longer holds alias:challenger (held it "), moved

    checkpoint_clock.advance(timedelta(hours=1))
    client.set_registered_model_alias(name, "challenger", v2)  # back: the soak starts again from now
    back_at = checkpoint_clock.now()
    assert run() == []
    again = soak_of(get(base, opened["id"]))
    assert again["status"] == "pending" and f"since {stamp(back_at)}" in again["reason"], again
    checkpoint_clock.advance(timedelta(hours=4))  # 24 h since the first holding began: not enough
    assert run() == [] and get(base, opened["id"])["state"] == "open"
    checkpoint_clock.advance(timedelta(hours=20))
    assert run() == [opened["id"]]
    assert client.get_model_version_by_alias(name, "champion").version == v2


def ask(base: str, change: dict, user: str = "alice") -> dict:
    answer = api(base, "POST", "/requests", user=user, json={"change": change})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_promotion_train_soaks_in_staging_before_the_copy_into_prod(live_checkpoint, mlflow_server, checkpoint_clock):
    """dev → staging.NAME → prod.NAME copies: the copy into prod waits until the staging version it
    copies (its pinned source) has been staging's latest version for 24 h."""
    client = direct(mlflow_server)
    dev, (d1,) = make_model(mlflow_server.url, unique("train-dev"), versions=1)
    suffix = unique("train")
    staging, prod = f"staging.{suffix}", f"prod.{suffix}"
    client.create_registered_model(staging)
    client.create_registered_model(prod)
    base, app = live_checkpoint.url, live_checkpoint.app
    into_staging = ask(base, {"kind": "create_version", "name": staging, "source": f"models:/{dev}/{d1}"})
    staged_at = checkpoint_clock.now()
    assert approve(base, into_staging["id"])["state"] == "applied"
    (s1,) = [v.version for v in client.search_model_versions(f"name = '{staging}'")]

    copy = ask(base, {"kind": "create_version", "name": prod, "source": f"models:/{staging}/{s1}"})
    soak = soak_of(copy)
    assert soak["status"] == "pending", soak
    assert f"held model:{staging} since {stamp(staged_at)}; the 1d soak ends" in soak["reason"]
    assert copy["waiting_for"]["name"] == "model:staging.*"
    from_dev = ask(base, {"kind": "create_version", "name": prod, "source": f"models:/{dev}/{d1}"}, user="carol")
    assert soak_of(from_dev)["status"] == "fail"
    assert soak_of(from_dev)["reason"] == f"the challenger is {dev} v{d1}, not a version of a model matching staging.*"
    approve(base, copy["id"])
    assert client.search_model_versions(f"name = '{prod}'") == []

    checkpoint_clock.advance(timedelta(hours=24))
    assert background_task(app, TASK)() == [copy["id"]]
    (p1,) = client.search_model_versions(f"name = '{prod}'")
    assert p1.source == f"models:/{staging}/{s1}"
    assert get(base, from_dev["id"])["state"] == "open"


def test_only_break_glass_skips_a_soak(live_checkpoint, mlflow_server, checkpoint_clock):
    """Approvals do not skip it, nor does time short of the soak; an admin's break-glass does, and
    the soak it skipped is on the record."""
    client = direct(mlflow_server)
    name, (v1, v2) = make_model(mlflow_server.url, unique("soak"))
    client.set_registered_model_alias(name, "champion", v1)
    client.set_registered_model_alias(name, "challenger", v2)
    base = live_checkpoint.url
    opened = open_request(base, name, v2)
    approve(base, opened["id"])
    checkpoint_clock.advance(timedelta(hours=23, minutes=59))
    assert background_task(live_checkpoint.app, TASK)() == []
    assert get(base, opened["id"])["state"] == "open"  # approved by people, held by the soak
    refused = api(base, "POST", f"/requests/{opened['id']}/break-glass", user="bob", json={"reason": "x"})
    assert refused.status_code == 403
    broken = api(base, "POST", f"/requests/{opened['id']}/break-glass", user="root", json={"reason": "incident 42"})
    assert broken.status_code == 200, broken.text
    body = broken.json()
    assert body["state"] == "applied"
    event = next(e for e in body["events"] if e["kind"] == "break_glass")
    assert [(c["check"], c["status"]) for c in event["data"]["failing_checks"]] == [("soak", "pending")]
    assert client.get_model_version_by_alias(name, "champion").version == v2


BAD = [
    ("held", '{held: "challenger", for: 24h}', r"rules\[0\] \(soaked\)\.soak\.held: expected alias:NAME"),
    ("for", '{held: "alias:challenger", for: "24"}', r"rules\[0\] \(soaked\)\.soak\.for: expected a duration"),
    ("missing", '{held: "alias:challenger"}', r"rules\[0\] \(soaked\)\.soak\.for: missing"),
]


def bad_policy(directory: Path, value: str) -> Path:
    path = directory / "bad-policy.yaml"
    path.write_text(f'rules:\n  - name: soaked\n    targets: ["alias:champion"]\n    soak: {value}\n')
    return path


@pytest.mark.parametrize(("value", "pattern"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_malformed_soak_is_refused_at_start_naming_the_rule_and_key(value, pattern, tmp_path, sqlite_url):
    config = {"registry_url": "http://127.0.0.1:9", "database_url": sqlite_url, "data_dir": tmp_path}
    with pytest.raises(ConfigError, match=pattern):
        create_app({**config, "policy_file": bad_policy(tmp_path, value)})


def test_checkpoint_serve_refuses_a_malformed_soak_without_a_traceback(tmp_path):
    policy = str(bad_policy(tmp_path, BAD[0][1]))
    result = serve_refusal(tmp_path, CHECKPOINT_REGISTRY_URL="http://127.0.0.1:9", CHECKPOINT_POLICY_FILE=policy)
    assert result.stderr.startswith("Error: ") and re.search(BAD[0][2], result.stderr), result.stderr
