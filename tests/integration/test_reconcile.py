"""Applies a crash interrupted are settled against MLflow: applied or failed, never stuck in
``applying``, never applied twice.

The first tests drive the reconciler in this process; the last ones ``kill -9`` a served
Checkpoint while its apply waits on MLflow (a relay holds the call) and restart it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException
from sqlalchemy.orm import sessionmaker

from checkpoint import create_app
from checkpoint.demo.mlflow_server import free_port
from checkpoint.registry import Registry
from checkpoint.review.changes import SetAlias, Transition
from checkpoint.review.reconcile import ACTOR, NOT_APPLIED, Reconciler
from checkpoint.services import services
from checkpoint.storage import db
from checkpoint.storage.entities import APPLIED, APPLYING, APPROVED, FAILED, OPEN, now
from checkpoint.storage.store import Store
from tests.support.apps import close_app
from tests.support.governed import api, make_model
from tests.support.proxy import checkpoint_process
from tests.support.race import race
from tests.support.relay import Relay
from tests.support.waiting import wait_until

LEASE = 3.0  # seconds, for the served Checkpoint: short, so the test does not wait long


@pytest.fixture
def app(mlflow_server, database_url, tmp_path):
    """Checkpoint in this process, its background thread off (the tests run the reconciler)."""
    application = create_app(
        {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path, "background": False}
    )
    yield application
    close_app(application)


def claimed(app, change, author: str = "alice") -> int:
    """A request for ``change`` left in ``applying``, as a worker that died after its claim leaves it."""
    workflow = services(app).workflow
    request, _ = workflow.open(change, author)
    assert workflow.store.transition(request.id, (OPEN,), APPLYING, actor="bob", event="applying")
    return request.id


def settled_events(store: Store, request_id: int) -> list:
    return [e for e in store.get(request_id).events if e.kind in ("applied", "apply_failed")]


def test_settles_against_mlflow_and_respects_the_lease(app, mlflow_server):
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (v1, v2) = make_model(mlflow_server.url)
    store = services(app).store
    registry = services(app).registry
    got_through = claimed(app, SetAlias(name, alias="champion", version_=v1))
    direct.set_registered_model_alias(name, "champion", v1)  # the write reached MLflow, its answer was lost
    lost = claimed(app, Transition(name, version_=v2, stage="Production"))

    # Within the lease an apply may still be running on another worker or replica: hands off.
    outcome = Reconciler(store, registry, lease=3600).run()
    assert (outcome.applied, outcome.failed, outcome.left) == ([], [], [])
    assert store.get(got_through).state == store.get(lost).state == APPLYING

    outcome = Reconciler(store, registry, lease=0.001).run()
    assert (outcome.applied, outcome.failed) == ([got_through], [lost])

    applied = store.get(got_through)
    assert applied.state == APPLIED and applied.applied_at is not None
    assert applied.apply_result.startswith("found applied in MLflow after an interrupted apply")
    [event] = settled_events(store, got_through)
    assert (event.kind, event.actor, event.data["reconciled"]) == ("applied", ACTOR, True)

    failed = store.get(lost)
    assert failed.state == FAILED
    assert failed.state_reason == failed.apply_result == NOT_APPLIED
    [event] = settled_events(store, lost)
    assert (event.kind, event.actor, event.data["reconciled"]) == ("apply_failed", ACTOR, True)
    assert direct.get_model_version(name, v2).current_stage == "None"  # the reconciler never applies

    # A person retries; the change is applied once.
    retried = services(app).workflow.retry(lost, "bob")
    assert retried.state == APPLIED, retried.state_reason
    assert direct.get_model_version(name, v2).current_stage == "Production"
    assert [e.kind for e in settled_events(store, lost)] == ["apply_failed", "applied"]


def test_two_reconcilers_settle_each_request_once(app, mlflow_server):
    name, (v1, v2) = make_model(mlflow_server.url)
    store = services(app).store
    registry = services(app).registry
    ids = [claimed(app, SetAlias(name, alias=f"a{i}", version_=v1 if i % 2 else v2), author=f"u{i}") for i in range(8)]
    reconcilers = [Reconciler(store, registry, lease=0.001) for _ in range(2)]
    outcomes = race(*[r.run for r in reconcilers], timeout=60)
    assert len(outcomes) == 2
    settled = sorted(i for o in outcomes for i in (*o.applied, *o.failed))
    assert settled == ids  # each request settled by exactly one of the two
    for request_id in ids:
        assert store.get(request_id).state == FAILED  # no alias was ever set in MLflow
        assert len(settled_events(store, request_id)) == 1


def test_an_outcome_recorded_first_wins(app, mlflow_server):
    """The apply itself finished, or a new claim (a retry) began, after the reconciler looked."""
    name, (v1, _v2) = make_model(mlflow_server.url)
    workflow = services(app).workflow
    store = workflow.store
    reconciler = Reconciler(store, workflow.registry, lease=0.001)

    finished = claimed(app, SetAlias(name, alias="finished", version_=v1))
    cutoff = now() + timedelta(seconds=1)
    seen = store.applying_before(cutoff)
    assert [r.id for r in seen] == [finished]
    assert store.transition(finished, (APPLYING,), APPLIED, actor="bob", event="applied", data={"result": "done"})
    assert reconciler._settle(seen[0], cutoff) is None
    assert store.get(finished).state == APPLIED and len(settled_events(store, finished)) == 1

    reclaimed = claimed(app, SetAlias(name, alias="reclaimed", version_=v1))
    cutoff = now()
    [stale] = store.applying_before(cutoff)
    assert store.transition(reclaimed, (APPLYING,), FAILED, actor=ACTOR, event="apply_failed")
    assert store.transition(reclaimed, (FAILED,), APPROVED, actor="bob", event="retried")
    assert store.transition(reclaimed, (APPROVED,), APPLYING, actor="bob", event="applying")  # a live apply again
    assert reconciler._settle(stale, cutoff) is None
    assert store.get(reclaimed).state == APPLYING


def test_mlflow_unreachable_leaves_the_request_for_the_next_round(app, mlflow_server):
    name, (v1, _v2) = make_model(mlflow_server.url)
    store = services(app).store
    stuck = claimed(app, SetAlias(name, alias="champion", version_=v1))
    nowhere = Registry(f"http://127.0.0.1:{free_port()}", timeout=2)
    outcome = Reconciler(store, nowhere, lease=0.001).run()
    assert (outcome.applied, outcome.failed, outcome.left) == ([], [], [stuck])
    assert store.get(stuck).state == APPLYING and settled_events(store, stuck) == []


# -- kill -9 of `checkpoint serve` in the middle of an apply ---------------------------------------


@pytest.fixture
def store(database_url):
    """The database as the served Checkpoint shares it, read from the test."""
    engine = db.make_engine(database_url)
    yield Store(sessionmaker(engine, expire_on_commit=False))
    engine.dispose()


@pytest.fixture
def relay(mlflow_server):
    relay = Relay(mlflow_server.url)
    yield relay
    relay.stop()


@pytest.fixture
def pipeline(monkeypatch):
    """The MLflow client's settings for a pipeline run by alice, without retries."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-checked-in-none-mode")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def open_through(url: str, call) -> int:
    """Make the governed call with the MLflow client through Checkpoint; the request's id."""
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    with pytest.raises(RestException, match="needs review") as refused:
        call(client)
    return int(str(refused.value).split("promote request #", 1)[1].split(":", 1)[0])


def crash_mid_apply(served, store: Store, relay: Relay, hold, request_id: int) -> None:
    """Approve (the apply hangs on the held call), then kill -9 Checkpoint's whole process group."""
    errors: list[BaseException] = []

    def approve() -> None:
        try:
            requests.post(
                f"{served.url}/checkpoint/api/v1/requests/{request_id}/reviews",
                json={"verdict": "approve"},
                auth=("bob", "x"),
                timeout=120,
            )
        except requests.RequestException as exc:
            errors.append(exc)

    approver = threading.Thread(target=approve)
    approver.start()
    wait_until(lambda: store.get(request_id).state == APPLYING, "the request became 'applying'", timeout=30)
    relay.wait_held(hold)
    os.killpg(served.process.pid, signal.SIGKILL)
    served.process.wait(timeout=10)
    approver.join(timeout=30)
    assert len(errors) == 1, "the approval's connection should die with Checkpoint"
    assert store.get(request_id).state == APPLYING  # nothing settles it while no Checkpoint runs


def reconciled(store: Store, request_id: int, since: float):
    """The request once it left ``applying``, and the seconds since ``since`` that took."""
    settled = wait_until(
        lambda: (r := store.get(request_id)).state != APPLYING and r,
        "the interrupted apply reconciled after the restart",
        timeout=60,
    )
    seconds = time.monotonic() - since
    print(f"request #{request_id} reconciled as {settled.state} {seconds:.1f} s after the restart began")
    return settled


def test_kill_before_the_write_reaches_mlflow_fails_then_retry_applies(
    mlflow_server, database_url, store, relay, pipeline, tmp_path
):
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (_v1, v2) = make_model(mlflow_server.url)
    env = {"CHECKPOINT_DATABASE_URL": database_url, "CHECKPOINT_APPLY_LEASE_SECONDS": str(LEASE)}
    write = ("POST", "/model-versions/transition-stage")

    with checkpoint_process(relay.url, tmp_path, **env) as served:
        request_id = open_through(served.url, lambda c: c.transition_model_version_stage(name, v2, "Production"))
        hold = relay.hold(*write, forward=False)
        crash_mid_apply(served, store, relay, hold, request_id)
    assert direct.get_model_version(name, v2).current_stage == "None"

    restart = time.monotonic()
    with checkpoint_process(relay.url, tmp_path, **env) as restarted:
        settled = reconciled(store, request_id, restart)
        assert settled.state == FAILED
        assert settled.state_reason == NOT_APPLIED
        assert [e.data.get("reconciled") for e in settled.events if e.kind == "apply_failed"] == [True]
        assert direct.get_model_version(name, v2).current_stage == "None"
        assert relay.count(*write) == 0

        retried = api(restarted.url, "POST", f"/requests/{request_id}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["state"] == APPLIED
    assert direct.get_model_version(name, v2).current_stage == "Production"
    assert relay.count(*write) == 1
    kinds = [e.kind for e in store.get(request_id).events]
    assert kinds[-5:] == ["applying", "apply_failed", "retried", "applying", "applied"]
    assert kinds.count("applied") == 1


def test_kill_after_the_write_reaches_mlflow_is_reconciled_as_applied(
    mlflow_server, database_url, store, relay, pipeline, tmp_path
):
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)
    env = {"CHECKPOINT_DATABASE_URL": database_url, "CHECKPOINT_APPLY_LEASE_SECONDS": str(LEASE)}
    write = ("POST", "/registered-models/alias")

    with checkpoint_process(relay.url, tmp_path, **env) as served:
        request_id = open_through(served.url, lambda c: c.set_registered_model_alias(name, "champion", v2))
        hold = relay.hold(*write, forward=True)
        crash_mid_apply(served, store, relay, hold, request_id)
    assert direct.get_model_version_by_alias(name, "champion").version == v2  # MLflow did it; nobody heard

    restart = time.monotonic()
    with checkpoint_process(relay.url, tmp_path, **env):
        settled = reconciled(store, request_id, restart)
    assert settled.state == APPLIED, settled.state_reason
    assert settled.apply_result.startswith("found applied in MLflow after an interrupted apply")
    applied = [e for e in settled.events if e.kind == "applied"]
    assert len(applied) == 1 and applied[0].data["reconciled"] is True
    assert [e.kind for e in settled.events].count("applying") == 1
    assert direct.get_model_version_by_alias(name, "champion").version == v2
    assert relay.count(*write) == 1  # the one write: never sent again
