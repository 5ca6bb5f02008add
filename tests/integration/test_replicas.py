"""Two Checkpoint replicas (`checkpoint serve` twice) share one PostgreSQL and one MLflow:
approvals that arrive at both at the same moment apply the change exactly once, every time.

A relay in front of MLflow counts the writes that reach it, so "once" is measured where it
matters, not only in Checkpoint's own records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException

from tests.support.apps import migrated_database
from tests.support.governed import unique
from tests.support.proxy import checkpoint_process
from tests.support.race import race
from tests.support.relay import Relay

TRIALS = 50  # simultaneous final approvals under a two-approval rule
RACES = 20  # two reviewers racing the single approval a one-approval rule needs
DEADLINE = 240  # seconds for one test's trials, however loaded the machine (about 0.5 s a trial when quiet)
WRITES = {"stage": ("POST", "/model-versions/transition-stage"), "alias": ("POST", "/registered-models/alias")}
POLICY = """\
rules:
  - name: two people
    models: ["pair-*"]
    required_approvals: 2
  - name: one person
    models: ["solo-*"]
    required_approvals: 1
"""

pytestmark = pytest.mark.postgres


@dataclass
class Replicas:
    a: str
    b: str
    relay: Relay


@pytest.fixture(scope="module")
def replicas(mlflow_server, request, tmp_path_factory) -> Iterator[Replicas]:
    """Replicas A and B: separate processes and data directories, one PostgreSQL database."""
    base = tmp_path_factory.mktemp("replicas")
    policy = base / "policy.yaml"
    policy.write_text(POLICY)
    database = migrated_database("postgresql", request, base, prefix="cp_replicas")
    env = {"CHECKPOINT_DATABASE_URL": next(database), "CHECKPOINT_POLICY_FILE": str(policy)}
    relay = Relay(mlflow_server.url)
    # One worker each: the race under test is between the two replicas' processes.
    env["CHECKPOINT_WORKERS"] = "1"
    try:
        with checkpoint_process(relay.url, base / "a", **env) as a, checkpoint_process(relay.url, base / "b", **env) as b:
            yield Replicas(a.url, b.url, relay)
    finally:
        relay.stop()
        next(database, None)  # drops the database


@pytest.fixture
def pipeline(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-checked-in-none-mode")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def api(base: str, method: str, path: str, user: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{base}/checkpoint/api/v1{path}", auth=(user, "x"), timeout=60, **kwargs)


def model_with_versions(mlflow_url: str, prefix: str, count: int) -> tuple[str, list[str]]:
    """A model with ``count`` versions of one run, made straight on MLflow (one call a version)."""
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    name = unique(prefix)
    client.create_registered_model(name)
    run = client.create_run("0")
    body = {"name": name, "source": f"{run.info.artifact_uri}/model", "run_id": run.info.run_id}
    with requests.Session() as session:
        versions = []
        for _ in range(count):
            made = session.post(f"{mlflow_url}/api/2.0/mlflow/model-versions/create", json=body, timeout=30)
            made.raise_for_status()
            versions.append(made.json()["model_version"]["version"])
    return name, versions


def open_request(replicas: Replicas, name: str, version: str, target: str) -> int:
    """The governed call, made with the real MLflow client through replica A."""
    client = MlflowClient(tracking_uri=replicas.a, registry_uri=replicas.a)
    if target == "stage":
        call = lambda: client.transition_model_version_stage(name, version, "Production")  # noqa: E731
    else:
        call = lambda: client.set_registered_model_alias(name, "champion", version)  # noqa: E731
    with pytest.raises(RestException, match="needs review") as refused:
        call()
    return int(str(refused.value).split("promote request #", 1)[1].split(":", 1)[0])


def approve_at_once(replicas: Replicas, request_id: int, reviewers: tuple[str, str]) -> list[requests.Response]:
    """One approval through each replica, released together."""

    def approve(base: str, reviewer: str) -> requests.Response:
        return api(base, "POST", f"/requests/{request_id}/reviews", reviewer, json={"verdict": "approve"})

    calls = [lambda b=base, r=reviewer: approve(b, r) for base, reviewer in zip((replicas.a, replicas.b), reviewers, strict=True)]
    answers = race(*calls, timeout=90, capture=True)
    for answer in answers:
        assert isinstance(answer, requests.Response), f"an approval got no answer: {answer!r}"
    return answers  # type: ignore[return-value]


def check_applied_once(
    replicas: Replicas, direct: MlflowClient, request_id: int, name: str, version: str, target: str, writes_before: int
) -> None:
    # Read through the other replica: what one wrote, both see.
    item = api(replicas.b, "GET", f"/requests/{request_id}", "carol").json()
    kinds = [e["kind"] for e in item["events"]]
    assert item["state"] == "applied", (item["state"], item["state_reason"])
    assert (kinds.count("approved"), kinds.count("applying"), kinds.count("applied")) == (1, 1, 1), kinds
    assert replicas.relay.count(*WRITES[target]) == writes_before + 1, "not exactly one write reached MLflow"
    if target == "stage":
        assert direct.get_model_version(name, version).current_stage == "Production"
    else:
        assert direct.get_model_version_by_alias(name, "champion").version == version


def run_trials(replicas: Replicas, mlflow_url: str, prefix: str, trials: int, reviewers: tuple[str, str]) -> dict:
    direct = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    name, versions = model_with_versions(mlflow_url, prefix, trials)
    statuses: dict[int, int] = {}
    phases = [0.0, 0.0, 0.0]  # opening, approving, checking: where a trial's time goes
    started = time.monotonic()
    for trial, version in enumerate(versions):
        assert time.monotonic() - started < DEADLINE, f"only {trial} of {trials} trials within {DEADLINE} s"
        target = "stage" if trial % 2 else "alias"
        t0 = time.monotonic()
        request_id = open_request(replicas, name, version, target)
        before = replicas.relay.count(*WRITES[target])
        t1 = time.monotonic()
        for answer in approve_at_once(replicas, request_id, reviewers):
            assert answer.status_code < 500, f"trial {trial}: {answer.status_code} {answer.text}"
            assert answer.headers["Content-Type"].startswith("application/json")
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        t2 = time.monotonic()
        check_applied_once(replicas, direct, request_id, name, version, target, before)
        phases = [a + b for a, b in zip(phases, (t1 - t0, t2 - t1, time.monotonic() - t2), strict=True)]
    listed = api(replicas.a, "GET", f"/requests?model={name}&limit=200", "carol").json()["requests"]
    assert len(listed) == trials and {r["state"] for r in listed} == {"applied"}
    seconds = time.monotonic() - started
    open_ms, approve_ms, check_ms = (1000 * p / trials for p in phases)
    print(
        f"{prefix}: {trials} trials in {seconds:.1f} s ({seconds / trials * 1000:.0f} ms each: open {open_ms:.0f}, "
        f"approve {approve_ms:.0f}, check {check_ms:.0f}); answers {statuses}"
    )
    return statuses


def test_simultaneous_final_approvals_apply_once(replicas, mlflow_server, pipeline):
    """Two approvals needed; the two arrive together, one at each replica."""
    statuses = run_trials(replicas, mlflow_server.url, "pair", TRIALS, ("bob", "dave"))
    assert statuses == {200: 2 * TRIALS}  # both approvals are recorded: the request is open until the second


def test_racing_the_single_approval_apply_once(replicas, mlflow_server, pipeline):
    """One approval needed; two reviewers give it at once: one applies, the other gets a clean answer."""
    statuses = run_trials(replicas, mlflow_server.url, "solo", RACES, ("bob", "dave"))
    assert set(statuses) <= {200, 409}
