"""Freeze windows and scheduled apply against a real MLflow, through Checkpoint, on a clock the
test moves (never a sleep).

Two app instances share one PostgreSQL database, one clock and one relay in front of MLflow
(which counts the writes that reach it): a request approved during a freeze waits with MLflow
unchanged; once the clock passes the freeze's end (or the request's apply_at), the release task
run in both instances at the same moment applies it exactly once. Cancelling, break-glass
during a freeze, the MLflow client's refusal text, bad apply_at values and a bad freeze at
start are here too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException

from checkpoint import create_app
from checkpoint.client import CheckpointClient
from checkpoint.errors import ConfigError
from tests.support.apps import background_task, migrated_database
from tests.support.clock import MovableClock
from tests.support.governed import make_model, unique
from tests.support.hostile import form_session
from tests.support.race import race
from tests.support.relay import Relay
from tests.support.serving import close_app, served

SATURDAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # inside the weekend freeze (Fri 16:00 - Mon 08:00 Berlin)
FREEZE_ENDS = datetime(2026, 1, 12, 7, 0, tzinfo=UTC)  # Mon 08:00 CET
TUESDAY = datetime(2026, 1, 13, 10, 0, tzinfo=UTC)
ALIAS_WRITE = ("POST", "/registered-models/alias")
POLICY = """\
rules:
  - name: frozen models
    models: ["frz-*"]
    reviewers: [bob]
freezes:
  - name: weekend
    models: ["frz-*"]
    targets: ["alias:champion"]
    every: "Fri 16:00 - Mon 08:00"
    timezone: Europe/Berlin
    reason: "No production changes over the weekend"
"""

pytestmark = pytest.mark.postgres


@dataclass
class Pair:
    """Two app instances (A and B) on one database, clock and relay."""

    a: str
    b: str
    apps: tuple
    clock: MovableClock
    relay: Relay
    mlflow_url: str
    config: dict

    def release(self, app) -> list[int]:
        return background_task(app, "release")()

    def release_in_both(self) -> list[list[int]]:
        """The release task of both instances at the same moment (as two replicas' threads)."""
        return race(lambda: self.release(self.apps[0]), lambda: self.release(self.apps[1]))


@pytest.fixture
def pair(mlflow_server, request, tmp_path) -> Iterator[Pair]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    database = migrated_database("postgresql", request, tmp_path / "db", prefix="cp_freezes")
    url = next(database)
    relay = Relay(mlflow_server.url)
    clock = MovableClock(SATURDAY)
    config = {"registry_url": relay.url, "database_url": url, "policy_file": policy, "admins": "root"}
    apps = tuple(create_app({**config, "data_dir": tmp_path / name}, clock=clock) for name in ("a", "b"))
    try:
        with served(apps[0], close=False) as a, served(apps[1], close=False) as b:
            yield Pair(a, b, apps, clock, relay, mlflow_server.url, config)
    finally:
        for app in apps:
            close_app(app)
        relay.stop()
        next(database, None)


def api(base: str, method: str, path: str, user: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{base}/checkpoint/api/v1{path}", auth=(user, "x"), timeout=60, **kwargs)


def champion(mlflow_url: str, name: str) -> str | None:
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    try:
        return client.get_model_version_by_alias(name, "champion").version
    except RestException:
        return None


def open_request(base: str, name: str, version: str, **extra) -> dict:
    body = {"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": version}, **extra}
    answer = api(base, "POST", "/requests", "alice", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def kinds(base: str, request_id: int) -> list[str]:
    return [e["kind"] for e in api(base, "GET", f"/requests/{request_id}", "bob").json()["events"]]


def test_a_request_approved_during_a_freeze_waits_and_applies_once_when_it_ends(pair):
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-weekend"))
    opened = open_request(pair.a, name, v1)
    approved = api(pair.b, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"}).json()
    assert approved["state"] == "approved"
    assert approved["waiting_for"] == {"kind": "freeze", "until": FREEZE_ENDS.isoformat(), "name": "weekend"}
    assert champion(pair.mlflow_url, name) is None and pair.relay.count(*ALIAS_WRITE) == 0

    page = requests.get(f"{pair.a}/checkpoint/requests/{opened['id']}", auth=("bob", "x"), timeout=30).text
    assert "approved — waiting for freeze &#39;weekend&#39; to end at Mon 08:00 CET" in page
    assert "weekend: Fri 16:00 - Mon 08:00 (Europe/Berlin) — No production changes over the weekend" in page
    listed = api(pair.a, "GET", "/requests?state=waiting", "bob").json()["requests"]
    assert [r["id"] for r in listed] == [opened["id"]]
    assert api(pair.a, "GET", "/requests?state=approved", "bob").json()["requests"][0]["waiting_for"]["name"] == "weekend"

    pair.clock.set(FREEZE_ENDS - timedelta(seconds=1))
    assert pair.release_in_both() == [[], []]  # a second early: still frozen
    assert champion(pair.mlflow_url, name) is None

    pair.clock.set(FREEZE_ENDS)
    results = pair.release_in_both()
    assert sorted(results, key=len) == [[], [opened["id"]]]  # one instance claimed it, the other found it gone
    after = api(pair.a, "GET", f"/requests/{opened['id']}", "bob").json()
    assert (after["state"], after["waiting_for"]) == ("applied", None)
    events = kinds(pair.a, opened["id"])
    assert events.count("waiting") == 1 and events.count("released") == 1 and events.count("applied") == 1
    assert champion(pair.mlflow_url, name) == v1
    assert pair.relay.count(*ALIAS_WRITE) == 1  # MLflow changed once
    assert pair.release_in_both() == [[], []]
    assert api(pair.a, "GET", "/requests?state=waiting", "bob").json()["requests"] == []


def test_the_mlflow_client_is_told_when_a_frozen_change_would_apply(pair, monkeypatch):
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-client"))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=pair.a, registry_uri=pair.a)
    with pytest.raises(RestException) as refused:
        client.set_registered_model_alias(name, "champion", v1)
    message = str(refused.value)
    assert "needs review" in message
    assert "freeze 'weekend' (No production changes over the weekend) holds alias:champion" in message
    assert "once approved it applies at 2026-01-12T07:00:00Z" in message


def test_a_scheduled_apply_applies_once_at_its_time(pair):
    pair.clock.set(TUESDAY)
    name, (v1, v2) = make_model(pair.mlflow_url, unique("frz-scheduled"))
    at = TUESDAY + timedelta(hours=2)
    opened = open_request(pair.a, name, v1, apply_at=at.isoformat())
    assert opened["apply_at"] == at.isoformat() and opened["waiting_for"] is None  # open: waits for reviews first
    assert "scheduled" in kinds(pair.a, opened["id"])
    approved = api(pair.b, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"}).json()
    assert approved["waiting_for"] == {"kind": "schedule", "until": at.isoformat(), "name": None}
    assert champion(pair.mlflow_url, name) is None

    pair.clock.advance(timedelta(hours=2))
    assert sorted(pair.release_in_both(), key=len) == [[], [opened["id"]]]
    assert champion(pair.mlflow_url, name) == v1 and pair.relay.count(*ALIAS_WRITE) == 1
    assert kinds(pair.a, opened["id"]).count("applied") == 1

    # A reviewer may set the time when approving; the later of it and a freeze wins.
    second = open_request(pair.a, name, v2)
    friday = datetime(2026, 1, 16, 18, 0, tzinfo=UTC)  # inside the next weekend freeze
    review = {"verdict": "approve", "apply_at": friday.isoformat()}
    approved = api(pair.b, "POST", f"/requests/{second['id']}/reviews", "bob", json=review).json()
    assert approved["apply_at"] == friday.isoformat()
    next_end = datetime(2026, 1, 19, 7, 0, tzinfo=UTC)
    assert approved["waiting_for"] == {"kind": "freeze", "until": next_end.isoformat(), "name": "weekend"}
    pair.clock.set(friday)
    assert pair.release_in_both() == [[], []]
    pair.clock.set(next_end)
    assert sorted(pair.release_in_both(), key=len) == [[], [second["id"]]]
    assert champion(pair.mlflow_url, name) == v2 and pair.relay.count(*ALIAS_WRITE) == 2


def test_the_wait_survives_a_restart(pair, tmp_path):
    """Nothing lives in memory: an app built afresh on the database releases what others held."""
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-restart"))
    opened = open_request(pair.a, name, v1)
    api(pair.b, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"})
    for app in pair.apps:
        close_app(app)  # both instances stop
    fresh = create_app({**pair.config, "data_dir": tmp_path / "fresh"}, clock=pair.clock)
    try:
        assert pair.release(fresh) == []
        pair.clock.set(FREEZE_ENDS)
        assert pair.release(fresh) == [opened["id"]]
    finally:
        close_app(fresh)
    assert champion(pair.mlflow_url, name) == v1 and pair.relay.count(*ALIAS_WRITE) == 1


def test_the_pipeline_client_schedules_and_the_pages_show_it(pair):
    pair.clock.set(TUESDAY)
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-pages"))
    at = (TUESDAY + timedelta(hours=3)).isoformat()
    made = CheckpointClient(pair.a, username="alice", password="x").promote(name, v1, alias="champion", apply_at=at)
    assert made["apply_at"] == at
    page = requests.get(f"{pair.a}/checkpoint/requests/{made['id']}", auth=("alice", "x"), timeout=30).text
    assert "Apply at" in page and "Cancel the scheduled apply" in page  # the author may cancel
    api(pair.b, "POST", f"/requests/{made['id']}/reviews", "bob", json={"verdict": "approve"})
    waiting = requests.get(f"{pair.a}/checkpoint/requests?state=waiting", auth=("bob", "x"), timeout=30).text
    assert f"/checkpoint/requests/{made['id']}" in waiting
    page = requests.get(f"{pair.a}/checkpoint/requests/{made['id']}", auth=("carol", "x"), timeout=30).text
    assert "approved — scheduled to apply at 2026-01-13 13:00 UTC" in page
    assert "Cancel the waiting apply" not in page  # carol is neither author nor reviewer
    page = requests.get(f"{pair.a}/checkpoint/requests/{made['id']}", auth=("bob", "x"), timeout=30).text
    assert "Cancel the waiting apply" in page


def test_the_new_request_form_says_a_freeze_holds_and_takes_apply_at(pair):
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-form"))
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v1}
    token = base64.urlsafe_b64encode(json.dumps(change).encode()).decode().rstrip("=")
    forms = form_session(pair.a, user="alice")
    page = requests.get(
        f"{pair.a}/checkpoint/requests/new", params={"change": token}, headers={"Cookie": forms.cookie}, timeout=30
    )
    assert "freeze &#39;weekend&#39; holds this target until Mon 08:00 CET" in page.text

    def post(apply_at: str) -> requests.Response:
        data = {"change": token, "title": "go", "apply_at": apply_at, "csrf_token": forms.token}
        url = f"{pair.a}/checkpoint/requests/new"
        return requests.post(url, headers={"Cookie": forms.cookie}, data=data, timeout=30, allow_redirects=False)

    refused = post("2026-01-01T00:00:00Z")
    assert refused.status_code == 400 and "apply_at: " in refused.text and "in the past" in refused.text
    at = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
    opened = post(at.isoformat())
    assert opened.status_code == 303, opened.text[:500]
    request_id = int(opened.headers["Location"].rsplit("/", 1)[1])
    assert api(pair.a, "GET", f"/requests/{request_id}", "bob").json()["apply_at"] == at.isoformat()


def test_asking_again_for_another_apply_at_is_a_409_not_silence(pair):
    pair.clock.set(TUESDAY)
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-again"))
    at = TUESDAY + timedelta(hours=1)
    opened = open_request(pair.a, name, v1, apply_at=at.isoformat())
    body = {"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v1}}
    retried = api(pair.b, "POST", "/requests", "alice", json={**body, "apply_at": at.isoformat()})
    assert retried.status_code == 200, retried.text  # the same call again answers with the same request
    assert (retried.json()["id"], retried.json()["apply_at"]) == (opened["id"], at.isoformat())
    answer = api(pair.a, "POST", "/requests", "alice", json={**body, "apply_at": (at + timedelta(hours=1)).isoformat()})
    assert answer.status_code == 409, answer.text
    assert f"request #{opened['id']}" in answer.json()["message"] and at.isoformat() in answer.json()["message"]
    assert api(pair.a, "GET", f"/requests/{opened['id']}", "bob").json()["apply_at"] == at.isoformat()
    assert kinds(pair.a, opened["id"]).count("scheduled") == 1


def test_a_scheduled_apply_can_be_cancelled_until_then(pair):
    pair.clock.set(TUESDAY)
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-cancel"))
    at = TUESDAY + timedelta(hours=1)
    opened = open_request(pair.a, name, v1, apply_at=at.isoformat())
    api(pair.b, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"})
    refused = api(pair.a, "POST", f"/requests/{opened['id']}/cancel", "carol")  # neither author nor reviewer
    assert refused.status_code == 403 and "may cancel" in refused.json()["message"]
    cancelled = api(pair.a, "POST", f"/requests/{opened['id']}/cancel", "alice")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["state"], cancelled.json()["waiting_for"]) == ("withdrawn", None)
    assert "cancelled" in kinds(pair.a, opened["id"])

    pair.clock.advance(timedelta(hours=2))
    assert pair.release_in_both() == [[], []]
    assert champion(pair.mlflow_url, name) is None and pair.relay.count(*ALIAS_WRITE) == 0
    again = api(pair.a, "POST", f"/requests/{opened['id']}/cancel", "alice")
    assert again.status_code == 409


def test_nothing_but_break_glass_applies_during_a_freeze(pair, monkeypatch):
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-bypass"))
    opened = open_request(pair.a, name, v1)
    api(pair.b, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"})
    for user in ("alice", "bob", "carol"):  # not admins: break-glass is refused
        glass = api(pair.a, "POST", f"/requests/{opened['id']}/break-glass", user, json={"reason": "now"})
        assert glass.status_code == 403
    again = api(pair.b, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"})
    assert again.status_code == 409  # approved and waiting: no second approval path
    assert api(pair.a, "POST", f"/requests/{opened['id']}/retry", "alice").status_code == 409
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(RestException):  # the MLflow client's own call is governed as ever
        MlflowClient(tracking_uri=pair.b, registry_uri=pair.b).set_registered_model_alias(name, "champion", v1)
    assert pair.release_in_both() == [[], []]
    assert champion(pair.mlflow_url, name) is None and pair.relay.count(*ALIAS_WRITE) == 0
    assert api(pair.a, "GET", f"/requests/{opened['id']}", "bob").json()["waiting_for"]["name"] == "weekend"


def test_break_glass_during_a_freeze_applies_at_once_and_records_the_override(pair):
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-glass"))
    opened = open_request(pair.a, name, v1)
    api(pair.b, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"})
    assert champion(pair.mlflow_url, name) is None
    body = {"reason": "fraud spike, rollback now"}
    applied = api(pair.a, "POST", f"/requests/{opened['id']}/break-glass", "root", json=body).json()
    assert (applied["state"], applied["waiting_for"]) == ("applied", None)
    assert champion(pair.mlflow_url, name) == v1
    (glass,) = [e for e in applied["events"] if e["kind"] == "break_glass"]
    assert glass["data"]["freeze_override"] == {
        "name": "weekend",
        "until": FREEZE_ENDS.isoformat(),
        "reason": "No production changes over the weekend",
    }
    pair.clock.set(FREEZE_ENDS)
    assert pair.release_in_both() == [[], []]
    assert pair.relay.count(*ALIAS_WRITE) == 1


@pytest.mark.parametrize(
    ("apply_at", "message"),
    [
        ("2026-01-10T11:00:00Z", "is in the past"),
        ("next monday", "is not an ISO timestamp"),
        ("2026-01-13T08:00:00", "has no offset"),
    ],
)
def test_a_bad_apply_at_is_a_400_naming_the_field(pair, apply_at, message):
    name, (v1, _) = make_model(pair.mlflow_url, unique("frz-bad"))
    body = {"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v1}, "apply_at": apply_at}
    answer = api(pair.a, "POST", "/requests", "alice", json=body)
    assert answer.status_code == 400 and answer.json()["message"].startswith("apply_at: ") and message in answer.text
    opened = open_request(pair.a, name, v1)
    review = api(pair.a, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve", "apply_at": apply_at})
    assert review.status_code == 400 and review.json()["message"].startswith("apply_at: ")
    assert api(pair.a, "GET", f"/requests/{opened['id']}", "bob").json()["state"] == "open"  # nothing recorded


@pytest.mark.parametrize(
    ("freeze", "key"),
    [
        ("{name: w, targets: ['*'], every: 'Fri 16:00 - Mon'}", r"freezes\[0\] \(w\)\.every"),
        ("{name: w, targets: ['*'], every: 'Fri 16:00 - Mon 08:00', timezone: Europe/Atlantis}", r"\(w\)\.timezone"),
        ("{name: w, targets: ['*'], from: '2026-01-02', until: '2026-01-01'}", r"\(w\)\.until"),
        ("{targets: ['*'], every: 'Fri 16:00 - Mon 08:00'}", r"freezes\[0\]\.name"),
    ],
)
def test_a_malformed_freeze_stops_start_up(mlflow_server, sqlite_url, tmp_path: Path, freeze, key):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"freezes:\n  - {freeze}\n")
    with pytest.raises(ConfigError, match=key):
        create_app({"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path, "policy_file": policy})
