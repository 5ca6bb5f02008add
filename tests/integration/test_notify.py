"""Webhooks: signed deliveries from the outbox, sent by the background thread to a real local
receiver, retried with backoff, in order per request, across a restart, and re-sent by an admin."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException
from sqlalchemy.orm import sessionmaker

from checkpoint import create_app
from checkpoint.demo.mlflow_server import free_port
from checkpoint.events import webhooks as notify
from checkpoint.storage import db
from checkpoint.storage.store import Store
from tests.support.apps import ROOT, LiveCheckpoint, background_task, live
from tests.support.clock import MovableClock
from tests.support.databases import migrated_sqlite
from tests.support.governed import api, make_model, unique
from tests.support.proxy import checkpoint_process
from tests.support.race import race
from tests.support.receiver import SECRET, SECRET_ENV, Arrival, Receiver, hook, receiver_script, write_policy
from tests.support.waiting import wait_until


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


@pytest.fixture
def hooked(mlflow_server, tmp_path) -> Iterator[Callable[..., LiveCheckpoint]]:
    """Start Checkpoint (served in a thread, background thread on) with these webhooks."""
    started = ExitStack()

    def start(webhooks: list[dict], database_url: str | None = None, admins: str = "root") -> LiveCheckpoint:
        if database_url is None:
            database_url = migrated_sqlite(tmp_path)
        application = create_app(
            {
                "registry_url": mlflow_server.url,
                "database_url": database_url,
                "data_dir": tmp_path,
                "policy_file": write_policy(tmp_path, webhooks),
                "admins": admins,
                "environ": {SECRET_ENV: SECRET},
            }
        )  # the variable a secret_env names; fmt: skip
        return started.enter_context(live(application, database_url))

    with started:
        yield start


def deliveries(base: str, **query) -> list[dict]:
    answer = api(base, "GET", "/deliveries", params={"limit": 200, **query})
    assert answer.status_code == 200, answer.text
    return answer.json()["deliveries"]


def all_delivered(base: str, **query) -> list[dict]:
    """The deliveries when every one of them is delivered, else an empty list (for polling)."""
    found = deliveries(base, **query)
    return found if found and all(d["status"] == "delivered" for d in found) else []


def open_request(base: str, model: str | None = None, title: str = "retire the alias") -> int:
    """A request opened through the API (no model needs to exist to delete an alias)."""
    change = {"kind": "delete_alias", "name": model or unique("hooked"), "alias": "champion"}
    answer = api(base, "POST", "/requests", user="alice", json={"change": change, "title": title})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


# -- events from real workflow actions arrive signed -------------------------------------


def test_workflow_events_arrive_signed_and_in_order(hooked, receiver, mlflow_server, database_url, monkeypatch):
    receiver.start()
    live = hooked(
        [hook(receiver), hook(receiver, "chat", "/chat", format="slack", events=["opened", "applied"])], database_url=database_url
    )
    name, (v1, v2) = make_model(mlflow_server.url)
    MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    pipeline = MlflowClient(tracking_uri=live.url, registry_uri=live.url)
    with pytest.raises(RestException, match="needs review") as refused:
        pipeline.set_registered_model_alias(name, "champion", v2)
    request_id = int(str(refused.value).split("promote request #", 1)[1].split(":", 1)[0])
    assert api(live.url, "POST", f"/requests/{request_id}/comments", json={"body": "metrics look right"}).status_code == 201
    approved = api(live.url, "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"})
    assert approved.json()["state"] == "applied", approved.text

    expected = ["opened", "commented", "review_approved", "approved", "applied"]

    def about_request(path: str) -> list[Arrival]:  # (the log may also hold an outside change seen on the way)
        return [
            a
            for a in receiver.accepted(path)
            if a.message.get("data", {}).get("request_id") == request_id
            and a.message["action"] != "behaviour_finished"  # whenever the background diff finishes: test_behaviour_refresh.py
        ]

    team = wait_until(lambda: len(about_request("/hook")) >= 5 and about_request("/hook"), "five deliveries")
    assert [a.message["action"] for a in team] == expected
    for arrival in receiver.all():
        assert arrival.refusal is None, arrival.refusal  # every signature verified by the receiver script
        assert arrival.headers["Content-Type"] == "application/json"
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", arrival.headers["X-MLflow-Signature"])
        assert abs(int(arrival.headers["X-MLflow-Timestamp"]) - time.time()) < 60
    first = team[0].message
    print("opened delivery:", json.dumps(first)[:400])
    assert first["entity"] == "promote_request" and first["timestamp"].endswith("+00:00")
    data = first["data"]
    assert (data["request_id"], data["model"], data["version"], data["target"]) == (request_id, name, v2, "alias:champion")
    assert (data["author"], data["actor"], data["state"]) == ("alice", "alice", "open")
    assert data["url"] == f"/checkpoint/requests/{request_id}"  # relative: no CHECKPOINT_PUBLIC_URL here
    assert team[1].message["data"]["comment"] == "metrics look right"
    assert [a.message["data"]["state"] for a in team] == ["open", "open", "open", "approved", "applied"]
    assert [a.headers["X-Checkpoint-Event"] for a in team] == expected

    chat = wait_until(lambda: len(receiver.accepted("/chat")) >= 2 and receiver.accepted("/chat"), "two chat messages")
    assert len(receiver.accepted("/chat")) == 2
    texts = [a.message["text"] for a in chat]
    print("slack lines:", texts)
    assert texts[0].startswith(f"Checkpoint: alice opened #{request_id}") and f"{name} v{v2} → alias:champion" in texts[0]
    assert "bob applied" in texts[1]

    listed = wait_until(lambda: all_delivered(live.url, request_id=request_id), "all delivered in the API")
    assert len(listed) == 7
    assert {d["id"] for d in listed} == {a.delivery_id for a in [*team, *chat]}
    assert all(d["attempts"] == 1 and d["last_status"] == 200 for d in listed)
    assert [d["event"] for d in listed if d["webhook"] == "team"] == list(reversed(expected))  # newest first


def test_an_expired_approval_is_delivered_once_under_a_moved_clock(receiver, mlflow_server, tmp_path):
    """The background work records the expiry (``approval_expired``) and the sender delivers it,
    both run here by hand at a time the test chose; the signature's timestamp stays the machine's."""
    receiver.start()
    clock = MovableClock(datetime.now(UTC))
    policy = tmp_path / "policy.yaml"
    rules = [{"name": "daily", "models": ["daily-*"], "required_approvals": 2, "approvals_expire_after": "1d"}]
    policy.write_text(json.dumps({"webhooks": [hook(receiver, events=["approval_expired"])], "rules": rules}))  # JSON is YAML
    database_url = migrated_sqlite(tmp_path)
    config = {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path, "policy_file": policy}
    application = create_app({**config, "background": False, "environ": {SECRET_ENV: SECRET}}, clock=clock)
    with live(application, database_url) as served:
        name, (_, v2) = make_model(mlflow_server.url, unique("daily"))
        change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
        opened = api(served.url, "POST", "/requests", user="alice", json={"change": change})
        assert opened.status_code == 201, opened.text
        request_id = opened.json()["id"]
        assert api(served.url, "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"}).status_code == 200
        clock.advance(timedelta(days=1))
        assert len(background_task(application, "approval-expiry")()) == 1
        sent = background_task(application, "webhooks")()
        assert len(sent.delivered) == 1 and background_task(application, "webhooks")().delivered == []
    (arrival,) = receiver.accepted("/hook")
    assert arrival.refusal is None and abs(int(arrival.headers["X-MLflow-Timestamp"]) - time.time()) < 60
    message = arrival.message
    assert message["action"] == "approval_expired" and message["data"]["request_id"] == request_id
    assert datetime.fromisoformat(message["timestamp"]) == clock.now()  # the event's time: the moved clock's
    assert (message["data"]["state"], message["data"]["actor"]) == ("open", "checkpoint")
    assert {k: message["data"]["event"][k] for k in ("reviewer", "rule", "expire_after")} == {
        "reviewer": "bob",
        "rule": "daily",
        "expire_after": "1d",
    }


# -- retries, backoff, ordering ----------------------------------------------------------


def test_failing_receiver_is_retried_with_backoff_then_delivered(hooked, receiver):
    receiver.script = [503, 503, 500, 502]
    receiver.start()
    live = hooked([hook(receiver, backoff=0.2, max_backoff=5)])
    request_id = open_request(live.url)
    arrivals = wait_until(lambda: receiver.accepted() and receiver.all(), "delivered after four failures", timeout=40)
    assert [a.answered for a in arrivals] == [503, 503, 500, 502, 200]
    assert len({a.delivery_id for a in arrivals}) == 1  # one delivery, one id, however often tried
    assert len({a.body for a in arrivals}) == 1  # and the same bytes each time
    gaps = [later.at - earlier.at for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    print("gaps between attempts (s):", [round(g, 2) for g in gaps])
    for gap, least in zip(gaps, [0.2, 0.4, 0.8, 1.6], strict=True):
        assert gap >= least - 0.05, gaps  # exponential backoff: never sooner than the delay
    # The receiver counts the fifth attempt when it answers; Checkpoint records it once the answer
    # has reached it, so the listing is read once it says so (or shows what it holds instead).
    wait_until(lambda: deliveries(live.url, request_id=request_id)[0]["status"] == "delivered", "recorded as delivered")
    (listed,) = deliveries(live.url, request_id=request_id)
    assert (listed["status"], listed["attempts"], listed["last_status"], listed["last_error"]) == ("delivered", 5, 200, "")


def test_order_per_request_holds_when_the_first_delivery_needs_retries(hooked, receiver):
    model = unique("ordered")
    receiver.refuse = {model: 2}
    receiver.start()
    live = hooked([hook(receiver, backoff=0.3)])
    request_id = open_request(live.url, model)
    other = open_request(live.url, title="another request")
    for i in range(3):
        assert api(live.url, "POST", f"/requests/{request_id}/comments", json={"body": f"note {i}"}).status_code == 201
    assert api(live.url, "PATCH", f"/requests/{request_id}", user="alice", json={"title": "edited"}).status_code == 200
    wait_until(lambda: len(receiver.accepted()) >= 6, "six deliveries", timeout=40)
    arrivals = receiver.all()
    mine = [
        (a.message["action"], a.answered, a.message["data"].get("comment"))
        for a in arrivals
        if a.message["data"]["model"] == model
    ]
    print("arrivals for the request:", mine)
    # Whatever failed, nothing of this request arrived before its 'opened' got through, and the rest kept their order.
    assert mine == [
        ("opened", 500, None),
        ("opened", 500, None),
        ("opened", 200, None),
        ("commented", 200, "note 0"),
        ("commented", 200, "note 1"),
        ("commented", 200, "note 2"),
        ("edited", 200, None),
    ]
    # The other request did not wait for this one's retries.
    theirs = [i for i, a in enumerate(arrivals) if a.message["data"]["request_id"] == other]
    first_through = next(i for i, a in enumerate(arrivals) if a.message["data"]["model"] == model and a.answered == 200)
    assert len(theirs) == 1 and arrivals[theirs[0]].answered == 200 and theirs[0] < first_through, theirs


def test_max_attempts_then_failed_and_an_admin_resends(hooked, receiver):
    receiver.script = [500, 500]
    receiver.start()
    live = hooked([hook(receiver, max_attempts=2)])
    request_id = open_request(live.url)
    failed = wait_until(lambda: [d for d in deliveries(live.url, status="failed")], "the delivery failed for good")
    (delivery,) = failed
    assert delivery["attempts"] == 2 and delivery["max_attempts"] == 2 and delivery["last_status"] == 500
    assert delivery["last_error"].startswith("gave up after 2 attempts: HTTP 500")
    assert len(receiver.all()) == 2

    refused = api(live.url, "POST", f"/deliveries/{delivery['id']}/resend", user="bob")
    assert refused.status_code == 403 and "admin" in refused.json()["message"]
    assert deliveries(live.url, request_id=request_id)[0]["status"] == "failed"  # unchanged
    assert api(live.url, "POST", f"/deliveries/{uuid.uuid4()}/resend", user="root").status_code == 404
    assert api(live.url, "POST", "/deliveries/not-a-uuid/resend", user="root").status_code == 404

    resent = api(live.url, "POST", f"/deliveries/{delivery['id']}/resend", user="root")
    assert resent.status_code == 200, resent.text
    assert resent.json()["id"] == delivery["id"] and resent.json()["attempts"] == 0
    wait_until(lambda: receiver.accepted(), "delivered after the re-send")
    assert receiver.accepted()[0].delivery_id == delivery["id"]  # the same id, so receivers dedupe
    done = wait_until(lambda: [d for d in deliveries(live.url, status="delivered")], "marked delivered")
    assert done[0]["id"] == delivery["id"] and done[0]["attempts"] == 1


def test_deliveries_page_lists_and_resends_with_csrf(hooked, receiver):
    receiver.script = [500]
    receiver.start()
    live = hooked([hook(receiver, max_attempts=1)])
    open_request(live.url)
    (delivery,) = wait_until(lambda: deliveries(live.url, status="failed"), "failed after one attempt")

    as_bob = requests.get(f"{live.url}/checkpoint/deliveries", auth=("bob", "x"), timeout=30)
    assert as_bob.status_code == 200
    assert delivery["id"] in as_bob.text and "HTTP 500" in as_bob.text and "cp-state-failed" in as_bob.text
    assert "/resend" not in as_bob.text  # no button for a non-admin
    assert 'href="/checkpoint/deliveries"' in as_bob.text  # the nav link

    admin = requests.Session()
    admin.auth = ("root", "x")
    page = admin.get(f"{live.url}/checkpoint/deliveries?status=failed", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    action = f"{live.url}/checkpoint/deliveries/{delivery['id']}/resend"
    headers = {"Origin": live.url}
    assert admin.post(action, data={}, headers=headers, allow_redirects=False, timeout=30).status_code == 400  # no token
    assert deliveries(live.url, status="failed")
    posted = admin.post(
        action,
        data={"csrf_token": token, "next": "/checkpoint/deliveries?status=delivered"},
        headers=headers,
        allow_redirects=False,
        timeout=30,
    )
    assert posted.status_code == 303 and posted.headers["Location"].endswith("/checkpoint/deliveries?status=delivered")
    wait_until(lambda: deliveries(live.url, status="delivered"), "delivered after the page's re-send")
    assert requests.get(f"{live.url}/checkpoint/deliveries?status=bogus", auth=("bob", "x"), timeout=30).status_code == 400


def test_slow_receiver_never_slows_the_api(hooked, receiver):
    receiver.delay = 5.0
    receiver.start()
    live = hooked([hook(receiver, timeout=4, backoff=0.1)])
    took = []
    started = time.monotonic()
    request_id = open_request(live.url)
    took.append(time.monotonic() - started)
    for i in range(3):
        started = time.monotonic()
        assert api(live.url, "POST", f"/requests/{request_id}/comments", json={"body": f"c{i}"}).status_code == 201
        took.append(time.monotonic() - started)
    print("API call times with a receiver that answers after 5 s (s):", [round(t, 3) for t in took])
    assert max(took) < 2.0 and sum(took) < 4.0, took  # any one call waiting on the receiver would take 4 s
    first = wait_until(lambda: [d for d in deliveries(live.url) if d["last_error"]], "the first attempt timed out", timeout=20)
    assert first[0]["last_error"] == "no answer within 4 s" and first[0]["status"] in ("pending", "sending")


# -- survives a restart ------------------------------------------------------------------


def test_receiver_down_across_a_restart_still_delivers(mlflow_server, tmp_path, receiver):
    """Queued while the receiver is down, Checkpoint (`checkpoint serve`) stopped and started
    again, then the receiver comes up: delivered, once."""
    env = {
        "CHECKPOINT_POLICY_FILE": str(write_policy(tmp_path, [hook(receiver, backoff=0.2, max_backoff=1)])),
        SECRET_ENV: SECRET,
    }
    with checkpoint_process(mlflow_server.url, tmp_path / "cp", **env) as served:
        request_id = open_request(served.url)
        comment = api(served.url, "POST", f"/requests/{request_id}/comments", json={"body": "before the restart"})
        assert comment.status_code == 201
        tried = wait_until(lambda: [d for d in deliveries(served.url) if d["attempts"] >= 2], "two failed attempts")
        assert tried[0]["last_error"].startswith(f"could not connect to 127.0.0.1:{receiver.port}"), tried[0]
        assert all(d["status"] in ("pending", "sending") for d in deliveries(served.url))
    receiver.start()
    with checkpoint_process(mlflow_server.url, tmp_path / "cp", **env) as served:
        done = wait_until(lambda: all_delivered(served.url), "both delivered")
    assert [a.message["action"] for a in receiver.all()] == ["opened", "commented"]
    assert sorted(a.delivery_id for a in receiver.all()) == sorted(d["id"] for d in done)  # once each


# -- the outbox under concurrent senders -------------------------------------------------


def test_claims_are_exclusive_and_ordered_per_request(database_url):
    """Four threads claiming at once never hold the same delivery, and never a later event of a
    request while an earlier one is unsent."""
    engine = db.make_engine(database_url)
    store = Store(sessionmaker(engine, expire_on_commit=False), subscribers=lambda kind: ("a", "b"))
    requests_made = []
    for i in range(6):
        item, _ = store.open_request(
            author="alice",
            dedupe_key=f"k{i}",
            event_data={},
            kind="delete_alias",
            model_name="m",
            version=None,
            target="alias:champion",
            change={},
            title=f"r{i}",
            description="",
            challenger={},
            champion=None,
        )
        store.add_comment(item.id, "bob", "second event")
        requests_made.append(item.id)
    leases = {"a": 60.0, "b": 60.0}
    for round_number in (1, 2):
        claimed: list = []

        def claim(claimed=claimed) -> None:
            for _ in range(10):
                claimed.extend(store.claim_deliveries(leases, limit=3))

        race(*[claim] * 4, timeout=60)
        ids = [o.delivery.id for o in claimed]
        assert len(ids) == len(set(ids)) == 12, (round_number, len(ids))  # one per (webhook, request) at a time
        assert {o.event.kind for o in claimed} == {"opened" if round_number == 1 else "commented"}
        for outgoing in claimed:
            assert store.delivery_done(outgoing.delivery.id, 200)
    assert store.claim_deliveries(leases) == [] and store.delivery_backlog() == 0
    engine.dispose()


# -- the receiver script -------------------------------------------------------------------


def _signed(body: bytes, secret: str = SECRET, stamp: int | None = None) -> dict[str, str]:
    webhook = notify.Webhook(name="t", url="http://127.0.0.1/", events=frozenset(), secret=secret)
    return notify.headers(webhook, str(uuid.uuid4()), "opened", body, timestamp=stamp)


def test_receiver_script_verification_accepts_good_and_refuses_tampered():
    body = json.dumps({"entity": "promote_request", "action": "opened", "data": {"request_id": 3}}).encode()
    good = _signed(body)
    assert receiver_script.verify(SECRET, good, body) is None
    assert receiver_script.verify(SECRET, good, body.replace(b"3", b"4"))[0] == 401
    assert receiver_script.verify("another-secret", good, body)[0] == 401
    assert receiver_script.verify(SECRET, {**good, "X-MLflow-Delivery-Id": str(uuid.uuid4())}, body)[0] == 401
    stale = _signed(body, stamp=int(time.time()) - 600)
    assert receiver_script.verify(SECRET, stale, body) == (400, receiver_script.verify(SECRET, stale, body)[1])
    assert "stale" in receiver_script.verify(SECRET, stale, body)[1]
    assert receiver_script.verify(SECRET, {k: v for k, v in good.items() if k != "X-MLflow-Signature"}, body)[0] == 401
    # The signature is MLflow 3's: HMAC-SHA256 over "<id>.<timestamp>.<body>", base64, "v1," in front.
    import hashlib
    import hmac

    raw = hmac.new(
        SECRET.encode(), f"{good['X-MLflow-Delivery-Id']}.{good['X-MLflow-Timestamp']}.".encode() + body, hashlib.sha256
    ).digest()
    assert good["X-MLflow-Signature"] == "v1," + base64.b64encode(raw).decode()


def test_receiver_script_prints_verified_deliveries_and_refuses_others(tmp_path):
    port = free_port()
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "webhook_receiver.py"), "--port", str(port)],
            env={"CHECKPOINT_WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: b"listening" in log.read_bytes(), "the receiver listens", timeout=20)
        body = json.dumps(
            {
                "entity": "promote_request",
                "action": "applied",
                "timestamp": "2026-01-01T00:00:00+00:00",
                "data": {"request_id": 9, "title": "ship v7", "actor": "bob", "model": "fraud"},
            }
        ).encode()
        headers = _signed(body)
        assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200
        assert requests.post(url, data=body + b" ", headers=headers, timeout=10).status_code == 401
        assert requests.post(url, data=body, headers=_signed(body, stamp=int(time.time()) - 3600), timeout=10).status_code == 400
        assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200  # a re-send: same id
        lines = wait_until(lambda: len(log.read_text().splitlines()) >= 5 and log.read_text().splitlines(), "four lines")
        print("\n".join(lines))
        delivery_id = headers["X-MLflow-Delivery-Id"]
        assert lines[1] == f"verified {delivery_id} promote_request.applied request #9 'ship v7' by bob"
        assert lines[2].startswith(f"REFUSED {delivery_id}: signature does not match")
        assert "stale or replayed" in lines[3]
        assert lines[4].startswith(f"verified (duplicate) {delivery_id}")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_nothing_is_queued_without_webhooks(hooked):
    live = hooked([])
    open_request(live.url)
    assert deliveries(live.url) == []
    page = requests.get(f"{live.url}/checkpoint/deliveries", auth=("bob", "x"), timeout=30)
    assert "No webhooks are configured" in page.text
    assert api(live.url, "GET", "/deliveries", params={"status": "lost"}).status_code == 400
    assert api(live.url, "GET", "/deliveries", params={"request_id": "x"}).status_code == 400
    assert api(live.url, "GET", "/deliveries", params={"cursor": "bm9wZQ"}).status_code == 400
