"""Checks on a promote request: every kind against a real MLflow with
real logged models, HTTP checks against a real local receiver, and how checks hold a request
back from approval and apply (on SQLite and PostgreSQL where the store's claims matter). The grammar and
the policy file's checks entries are in tests/unit/review/test_checks.py."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.models import infer_signature

from checkpoint import create_app
from checkpoint.demo.mlflow_server import free_port
from checkpoint.registry import Registry
from checkpoint.review import checks
from checkpoint.services import services
from checkpoint.storage.models import CheckRow, EventRow
from tests.support.apps import close_app
from tests.support.governed import unique
from tests.support.race import race
from tests.support.waiting import poll

# The models logged here are tiny on purpose: no input example, and MLflow says so.
pytestmark = pytest.mark.filterwarnings("ignore:.*input example was not provided:UserWarning")

# -- real logged models ------------------------------------------------------------------------


class Echo(mlflow.pyfunc.PythonModel):
    """The smallest real pyfunc model: what matters here is its logged signature."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        return model_input.iloc[:, 0]


@dataclass
class Registered:
    name: str
    versions: dict[str, str] = field(default_factory=dict)  # label -> version


def log_version(
    client: MlflowClient,
    name: str,
    experiment_id: str,
    columns: dict[str, list],
    metrics: dict[str, float],
    tags: dict[str, str] | None = None,
) -> str:
    """Log a real pyfunc model with a signature over ``columns`` and register it."""
    frame = pd.DataFrame(columns)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        if metrics:
            mlflow.log_metrics(metrics)
        # Explicit requirements: inferring them imports and probes the model (slow).
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Echo(), pip_requirements=["mlflow"], signature=infer_signature(frame, frame.iloc[:, 0])
        )
    version = client.create_model_version(name, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id, tags=tags)
    return version.version


@pytest.fixture(scope="module")
def fraud(mlflow_server) -> Registered:
    """champion v1; better v2; v3 drops column c; v4 worse; v5 retypes b; v6 logs no val_auc."""
    url = mlflow_server.url
    client = MlflowClient(url, registry_uri=url)
    name = unique("checks")
    client.create_registered_model(name)
    full = {"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]}
    registered = Registered(name)
    with mlflow_tracking(url):
        experiment_id = mlflow.set_experiment("checks-tests").experiment_id
        specs = {
            "champion": (full, {"val_auc": 0.905, "latency_ms": 10.0}),
            "better": (full, {"val_auc": 0.912, "latency_ms": 10.5}),
            "no_c": ({"a": [1.0, 2.0], "b": [3.0, 4.0]}, {"val_auc": 0.913, "latency_ms": 9.0}),
            "worse": (full, {"val_auc": 0.85, "latency_ms": 10.0}),
            "retyped": ({"a": [1.0, 2.0], "b": ["x", "y"], "c": [5.0, 6.0]}, {"val_auc": 0.92, "latency_ms": 10.0}),
            "no_auc": (full, {"latency_ms": 10.0}),
        }
        for label, (columns, metrics) in specs.items():
            registered.versions[label] = log_version(client, name, experiment_id, columns, metrics)
    client.set_registered_model_alias(name, "champion", registered.versions["champion"])
    return registered


class mlflow_tracking:
    """Point the fluent MLflow API at ``url`` for a block, and back.

    Through the environment, not ``mlflow.set_tracking_uri``: once set, that URI outlives the
    block and wins over the ``MLFLOW_TRACKING_URI`` other tests set, sending their runs to a
    local store.
    """

    KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self):
        self.saved = {key: os.environ.get(key) for key in self.KEYS}
        os.environ.update(dict.fromkeys(self.KEYS, self.url))

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


POLICY = """
rules:
  - name: gated
    models: ["{model}"]
    targets: ["alias:champion"]
    required_approvals: {approvals}
    checks:
{checks}
"""
GATES = """      - {name: auc-gate, kind: metric, expression: "val_auc >= champion - 0.005"}
      - {name: latency, kind: metric, expression: "latency_ms <= champion * 1.1", required: false}
      - {name: floor, kind: metric, expression: "val_auc > 0.5"}
      - {name: signature, kind: signature}
"""


@pytest.fixture
def make_app(mlflow_server, tmp_path):
    """A Checkpoint app (no background thread: tests run its tasks) with a policy for ``model``."""
    made = []

    def build(model: str, checks_yaml: str, database_url: str, approvals: int = 1, registry_url: str | None = None):
        policy = tmp_path / f"policy-{len(made)}.yaml"
        policy.write_text(POLICY.format(model=model, approvals=approvals, checks=checks_yaml))
        app = create_app(
            {
                "registry_url": registry_url or mlflow_server.url,
                "database_url": database_url,
                "data_dir": tmp_path,
                "policy_file": policy,
                "background": False,
                "admins": "root",
            }
        )
        made.append(app)
        return app

    yield build
    for app in made:
        close_app(app)


def call(client, method: str, path: str, user: str = "alice", **kwargs):
    import base64

    token = base64.b64encode(f"{user}:x".encode()).decode()
    return client.open(f"/checkpoint/api/v1{path}", method=method, headers={"Authorization": f"Basic {token}"}, **kwargs)


def open_request(client, model: str, version: str, user: str = "alice", **extra) -> dict:
    body = {"change": {"kind": "set_alias", "name": model, "alias": "champion", "version": version}, **extra}
    answer = call(client, "POST", "/requests", user, json=body)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def by_name(request_json: dict) -> dict[str, dict]:
    return {c["name"]: c for c in request_json["checks"]}


def test_metric_and_signature_checks_on_real_models(fraud, make_app, sqlite_url):
    client = make_app(fraud.name, GATES, sqlite_url).test_client()

    better = by_name(open_request(client, fraud.name, fraud.versions["better"]))
    assert {n: c["status"] for n, c in better.items()} == {
        "auc-gate": "pass",
        "latency": "pass",
        "floor": "pass",
        "signature": "pass",
    }
    assert better["auc-gate"]["reason"] == "val_auc 0.912 ≥ champion 0.905 − 0.005 = 0.9"
    assert better["latency"]["reason"] == "latency_ms 10.5 ≤ champion 10 × 1.1 = 11"
    assert better["signature"]["reason"] == f"v{fraud.versions['better']} vs champion v1: unchanged"
    assert better["auc-gate"]["trigger"] == "open" and better["auc-gate"]["evaluated_at"]

    worse = open_request(client, fraud.name, fraud.versions["worse"])
    assert by_name(worse)["auc-gate"]["status"] == "fail"
    assert by_name(worse)["auc-gate"]["reason"] == "val_auc 0.85 is not ≥ champion 0.905 − 0.005 = 0.9"
    assert by_name(worse)["floor"]["status"] == "pass"
    assert worse["blocked_by_checks"] == ["auc-gate"]

    dropped_json = open_request(client, fraud.name, fraud.versions["no_c"])
    dropped = by_name(dropped_json)
    assert dropped["auc-gate"]["status"] == "pass"
    assert dropped["signature"]["status"] == "fail"
    assert "input c (double) was removed" in dropped["signature"]["reason"]

    retyped_json = open_request(client, fraud.name, fraud.versions["retyped"])
    retyped = by_name(retyped_json)["signature"]
    assert retyped["status"] == "fail" and "input b: type double → string" in retyped["reason"]

    missing_json = open_request(client, fraud.name, fraud.versions["no_auc"])
    missing = by_name(missing_json)
    assert (missing["auc-gate"]["status"], missing["auc-gate"]["reason"]) == (
        "fail",
        f"val_auc is missing: the challenger v{fraud.versions['no_auc']}'s run did not log it",
    )
    assert missing["floor"]["status"] == "fail" and "val_auc is missing" in missing["floor"]["reason"]

    # Every check that became fail wrote a check_failed event, with the check's name and reason.
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        failed = conn.execute(sa.select(EventRow.request_id, EventRow.data).where(EventRow.kind == "check_failed")).all()
    engine.dispose()
    assert sorted((rid, d["check"], d["status"]) for rid, d in failed) == [
        (worse["id"], "auc-gate", "fail"),
        (dropped_json["id"], "signature", "fail"),
        (retyped_json["id"], "signature", "fail"),
        (missing_json["id"], "auc-gate", "fail"),
        (missing_json["id"], "floor", "fail"),
    ]


def test_relative_gate_without_champion_or_without_its_metric_fails_saying_which(mlflow_server, make_app, sqlite_url):
    url = mlflow_server.url
    client = MlflowClient(url, registry_uri=url)
    name = unique("checks-first")
    client.create_registered_model(name)
    with mlflow_tracking(url):
        experiment_id = mlflow.set_experiment("checks-tests").experiment_id
        columns = {"a": [1.0, 2.0]}
        champion = log_version(client, name, experiment_id, columns, {"latency_ms": 3.0})
        challenger = log_version(client, name, experiment_id, columns, {"val_auc": 0.9, "latency_ms": 3.0})
    app_client = make_app(name, GATES, sqlite_url).test_client()

    first = by_name(open_request(app_client, name, challenger))
    assert first["auc-gate"]["status"] == "fail"
    assert first["auc-gate"]["reason"] == "no champion to compare val_auc with (val_auc >= champion - 0.005)"
    assert first["signature"] == {**first["signature"], "status": "pass", "reason": "no champion to compare with"}

    client.set_registered_model_alias(name, "champion", champion)
    later = by_name(
        call(app_client, "POST", f"/requests/{open_request(app_client, name, challenger, 'erin')['id']}/checks").get_json()
    )
    assert later["auc-gate"]["status"] == "fail"
    assert later["auc-gate"]["reason"] == f"the champion v{champion} lacks val_auc (did not log it): cannot compare"
    assert later["latency"]["status"] == "pass"


def test_tags_description_and_title_checks(fraud, make_app, sqlite_url, mlflow_server):
    checks_yaml = """      - {name: validated, kind: tags, tags: {validation_status: passed}}
      - {name: run-team, kind: tags, on: run, tags: [team]}
      - {name: desc, kind: description, min_length: 10}
      - {name: ticket, kind: title, pattern: '^\\[ML-[0-9]+\\]'}
"""
    client = make_app(fraud.name, checks_yaml, sqlite_url).test_client()
    version = fraud.versions["better"]
    opened = open_request(client, fraud.name, version, title="<b>no ticket</b>", description="short")
    first, rid = by_name(opened), opened["id"]
    assert first["validated"]["reason"] == f"version tags of v{version}: validation_status is not set"
    assert first["run-team"]["reason"] == f"run tags of v{version}: team is not set"
    assert first["desc"]["reason"] == "description has 5 characters; at least 10 required"
    assert first["ticket"]["reason"] == "title '<b>no ticket</b>' does not match ^\\[ML-[0-9]+\\]"
    assert {c["status"] for c in first.values()} == {"fail"}

    direct = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    direct.set_model_version_tag(fraud.name, version, "validation_status", "failed")
    rerun = by_name(call(client, "POST", f"/requests/{rid}/checks").get_json())
    assert rerun["validated"]["reason"] == f"version tags of v{version}: validation_status is 'failed', not 'passed'"
    direct.set_model_version_tag(fraud.name, version, "validation_status", "passed")
    run_id = direct.get_model_version(fraud.name, version).run_id
    direct.set_tag(run_id, "team", "risk")
    edited = call(client, "PATCH", f"/requests/{rid}", json={"title": "[ML-7] better model", "description": "long enough text"})
    assert edited.status_code == 200
    again = by_name(call(client, "POST", f"/requests/{rid}/checks").get_json())
    assert {n: c["status"] for n, c in again.items()} == dict.fromkeys(again, "pass")
    assert {c["trigger"] for c in again.values()} == {"manual"}
    direct.delete_model_version_tag(fraud.name, version, "validation_status")

    # The page shows each check escaped (the title is user input), with a re-run button.
    page = client.get(f"/checkpoint/requests/{rid}", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="checks-h"' in html and "cp-check-pass" in html and "Re-run checks" in html
    assert "<b>" not in html.split('id="checks-h"')[1].split("</section>")[0]


def test_mlflow_unreachable_is_an_error_never_a_pass(fraud, make_app, sqlite_url):
    client = make_app(fraud.name, GATES, sqlite_url).test_client()
    opened = open_request(client, fraud.name, fraud.versions["better"])
    assert {c["status"] for c in opened["checks"]} == {"pass"}
    workflow = services(client.application).workflow
    workflow.registry = Registry(f"http://127.0.0.1:{free_port()}", timeout=2)  # nothing listens there
    rerun = call(client, "POST", f"/requests/{opened['id']}/checks")
    # Reading the challenger itself fails: every check records an error, and the request is blocked.
    assert rerun.status_code == 200, rerun.get_json()
    results = by_name(rerun.get_json())
    assert {c["status"] for c in results.values()} == {"error"}
    assert all("unreachable" in c["reason"] for c in results.values()), results
    assert rerun.get_json()["blocked_by_checks"] == ["auc-gate", "floor", "signature"]


# -- approval, apply and break-glass -------------------------------------------------------------


VALIDATED = "      - {name: validated, kind: tags, tags: {validation_status: passed}}\n"


def champion_of(mlflow_server, name: str) -> str | None:
    aliases = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url).get_registered_model(name).aliases
    return aliases.get("champion")


def events_of(database_url: str, request_id: int) -> list[str]:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        kinds = conn.execute(sa.select(EventRow.kind).where(EventRow.request_id == request_id).order_by(EventRow.id))
        out = [k for (k,) in kinds]
    engine.dispose()
    return out


def plain_version(client: MlflowClient, name: str, val_auc: float) -> str:
    """A version from a run that logged ``val_auc`` (no model files: these checks read none)."""
    experiment = client.get_experiment_by_name("checks-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("checks-tests")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "val_auc", val_auc)
    client.set_terminated(run.info.run_id)
    return client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version


@pytest.fixture
def fresh_model(mlflow_server) -> Registered:
    """A model of its own (these tests move its champion): champion v1, challenger v2."""
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    registered = Registered(unique("checks-flow"))
    client.create_registered_model(registered.name)
    for label, auc in (("champion", 0.9), ("challenger", 0.91)):
        registered.versions[label] = plain_version(client, registered.name, auc)
    client.set_registered_model_alias(registered.name, "champion", registered.versions["champion"])
    return registered


def test_failing_required_check_blocks_approval_and_a_passing_rerun_applies_once(
    fresh_model, make_app, database_url, mlflow_server
):
    name, challenger = fresh_model.name, fresh_model.versions["challenger"]
    app = make_app(name, VALIDATED, database_url)
    client = app.test_client()
    opened = open_request(client, name, challenger)
    assert opened["blocked_by_checks"] == ["validated"]

    reviewed = call(client, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"}).get_json()
    assert reviewed["state"] == "open", "a required check that fails holds the request back"
    assert reviewed["approvals"]["met"] is True and reviewed["blocked_by_checks"] == ["validated"]
    assert champion_of(mlflow_server, name) == fresh_model.versions["champion"]
    page = client.get(f"/checkpoint/requests/{opened['id']}", headers={"Authorization": "Basic Ym9iOng="}).get_data(True)
    assert '1 of 1 approvals · <span class="cp-blocked">blocked by check validated</span>' in page

    MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url).set_model_version_tag(
        name, challenger, "validation_status", "passed"
    )
    workflow = services(app).workflow
    results = race(*[lambda: workflow.rerun_checks(opened["id"], "carol")] * 4)
    assert {r.state for r in results} <= {"applied", "open", "approved", "applying"}
    final = call(client, "GET", f"/requests/{opened['id']}").get_json()
    assert final["state"] == "applied", final["state_reason"]
    assert champion_of(mlflow_server, name) == challenger
    kinds = events_of(database_url, opened["id"])
    assert kinds.count("approved") == 1 and kinds.count("applying") == 1 and kinds.count("applied") == 1
    assert kinds.count("check_failed") == 1  # failing once; the later re-runs changed nothing until the pass


def test_required_checks_are_evaluated_again_right_before_apply(fresh_model, make_app, sqlite_url, mlflow_server):
    name, challenger = fresh_model.name, fresh_model.versions["challenger"]
    direct = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    direct.set_model_version_tag(name, challenger, "validation_status", "passed")
    client = make_app(name, VALIDATED, sqlite_url, approvals=2).test_client()
    opened = open_request(client, name, challenger)
    assert opened["checks"][0]["status"] == "pass"
    call(client, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"})
    direct.delete_model_version_tag(name, challenger, "validation_status")  # the stored result still says pass

    answer = call(client, "POST", f"/requests/{opened['id']}/reviews", "dave", json={"verdict": "approve"}).get_json()
    assert answer["state"] == "open"
    assert answer["state_reason"] == (
        f"not applied: required check validated is fail: version tags of v{challenger}: validation_status is not set"
    )
    assert by_name(answer)["validated"]["trigger"] == "apply"
    assert answer["approvals"]["count"] == 2, "approvals stand: the checked thing did not change, its check did"
    assert champion_of(mlflow_server, name) == fresh_model.versions["champion"]
    assert events_of(sqlite_url, opened["id"])[-3:] == ["applying", "check_failed", "reopened"]

    direct.set_model_version_tag(name, challenger, "validation_status", "passed")
    assert call(client, "POST", f"/requests/{opened['id']}/checks", "bob").get_json()["state"] == "applied"
    assert champion_of(mlflow_server, name) == challenger


def test_stale_champion_refreshes_checks_and_break_glass_records_failing_ones(fresh_model, make_app, sqlite_url, mlflow_server):
    name, challenger = fresh_model.name, fresh_model.versions["challenger"]
    direct = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    gates = "".join(line + "\n" for line in GATES.splitlines() if "signature" not in line)  # no model files here
    client = make_app(name, gates + VALIDATED, sqlite_url).test_client()
    direct.set_model_version_tag(name, challenger, "validation_status", "passed")
    opened = open_request(client, name, challenger)
    assert by_name(opened)["auc-gate"]["status"] == "pass"
    # The champion moves outside Checkpoint to a version far better than the challenger.
    strong = plain_version(direct, name, 0.99)
    direct.set_registered_model_alias(name, "champion", strong)
    reviewed = call(client, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"}).get_json()
    assert reviewed["state"] == "open" and "champion moved" in reviewed["state_reason"]
    gate = by_name(reviewed)["auc-gate"]
    assert (gate["status"], gate["trigger"]) == ("fail", "refresh")
    assert gate["reason"] == "val_auc 0.91 is not ≥ champion 0.99 − 0.005 = 0.985"

    refused = call(client, "POST", f"/requests/{opened['id']}/break-glass", "bob", json={"reason": "x"})
    assert refused.status_code == 403
    forced = call(client, "POST", f"/requests/{opened['id']}/break-glass", "root", json={"reason": "incident 42"})
    assert forced.get_json()["state"] == "applied"
    assert champion_of(mlflow_server, name) == challenger
    event = next(e for e in forced.get_json()["events"] if e["kind"] == "break_glass")
    # Every check not passing is on the record, the optional one too (these runs log no latency_ms).
    assert [(c["check"], c["required"], c["status"]) for c in event["data"]["failing_checks"]] == [
        ("auc-gate", True, "fail"),
        ("latency", False, "fail"),
    ]


AUC_GATE = '      - {name: auc-gate, kind: metric, expression: "val_auc >= champion - 0.005"}\n'


def test_a_new_champion_re_runs_the_checks_of_the_other_open_requests(fresh_model, make_app, sqlite_url, mlflow_server):
    """Applied here or moved behind Checkpoint's back: every open request on the target is checked again."""
    name = fresh_model.name
    direct = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    strong, weak = plain_version(direct, name, 0.93), fresh_model.versions["challenger"]  # 0.93 and 0.91 vs 0.9
    client = make_app(name, AUC_GATE, sqlite_url).test_client()
    first = open_request(client, name, strong)
    second = open_request(client, name, weak, user="erin")
    assert by_name(second)["auc-gate"]["status"] == "pass"

    applied = call(client, "POST", f"/requests/{first['id']}/reviews", "bob", json={"verdict": "approve"}).get_json()
    assert applied["state"] == "applied"
    gate = by_name(call(client, "GET", f"/requests/{second['id']}").get_json())["auc-gate"]
    assert (gate["status"], gate["trigger"]) == ("fail", "refresh")
    assert gate["reason"] == "val_auc 0.91 is not ≥ champion 0.93 − 0.005 = 0.925"

    direct.set_registered_model_alias(name, "champion", fresh_model.versions["champion"])  # back to 0.9, directly
    open_request(client, name, strong, user="frank")  # Checkpoint reads the champion: an outside change
    gate = by_name(call(client, "GET", f"/requests/{second['id']}").get_json())["auc-gate"]
    assert (gate["status"], gate["trigger"]) == ("pass", "refresh")
    assert events_of(sqlite_url, second["id"]).count("check_failed") == 1


def test_rerun_is_refused_on_decided_requests_and_for_unknown_ids(fresh_model, make_app, sqlite_url):
    client = make_app(fresh_model.name, VALIDATED, sqlite_url).test_client()
    opened = open_request(client, fresh_model.name, fresh_model.versions["challenger"])
    assert call(client, "POST", f"/requests/{opened['id']}/withdraw").status_code == 200
    refused = call(client, "POST", f"/requests/{opened['id']}/checks")
    assert refused.status_code == 409 and "checks run on open or failed requests" in refused.get_json()["message"]
    assert call(client, "POST", "/requests/999999/checks").status_code == 404


# -- HTTP checks ------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A real HTTP receiver on loopback; ``answers`` maps a path to what it does."""

    url: str
    received: list[dict] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.received.append({"path": self.path, "json": json.loads(body), "check": self.headers["X-Checkpoint-Check"]})
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            if self.path == "/slow":
                state.release.wait(timeout=30)  # answers only once the test is over
            if self.path == "/flaky" and state.hits[self.path] < 3:
                return self._send(503, b"busy")
            answers = {
                "/pass": json.dumps({"status": "pass", "reason": "model card\nreviewed"}).encode(),
                "/fail": json.dumps({"status": "fail", "reason": "bias audit failed"}).encode(),
                "/flaky": json.dumps({"status": "pass"}).encode(),
                "/garbage": b"<html>oops</html>",
                "/wrong": json.dumps({"status": "ok"}).encode(),
                "/slow": json.dumps({"status": "pass"}).encode(),
            }
            self._send(200 if self.path in answers else 404, answers.get(self.path, b"{}"))

        def _send(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def http_check(url: str, **params) -> checks.HttpCheck:
    return checks.HttpCheck("ci", True, url, params.get("timeout", 5.0), params.get("retries", 2))


def test_http_check_pass_fail_timeout_garbage_and_retries(receiver):
    payload = {"request": {"id": 7}}
    assert checks.call_http(http_check(f"{receiver.url}/pass"), payload) == checks.Result("pass", "model card reviewed")
    assert receiver.received[-1] == {"path": "/pass", "json": payload, "check": "ci"}
    assert checks.call_http(http_check(f"{receiver.url}/fail"), payload) == checks.Result("fail", "bias audit failed")

    started = time.monotonic()
    slow = checks.call_http(http_check(f"{receiver.url}/slow", timeout=0.5), payload)
    assert slow == checks.Result("error", f"{receiver.url}/slow did not answer within 0.5 s")
    assert time.monotonic() - started < 3, "a timeout is not retried"

    garbage = checks.call_http(http_check(f"{receiver.url}/garbage"), payload)
    assert garbage.status == "error" and "not JSON" in garbage.reason and "<html>" in garbage.reason
    wrong = checks.call_http(http_check(f"{receiver.url}/wrong"), payload)
    assert wrong == checks.Result("error", f"{receiver.url}/wrong answered without a status of 'pass' or 'fail' (got 'ok')")
    assert checks.call_http(http_check(f"{receiver.url}/nowhere"), payload).reason == f"{receiver.url}/nowhere answered HTTP 404"

    assert checks.call_http(http_check(f"{receiver.url}/flaky", retries=2), payload).status == "pass"
    assert receiver.hits["/flaky"] == 3, "two 503s retried, the third try answered"
    down = f"http://127.0.0.1:{free_port()}/check"
    refused = checks.call_http(http_check(down, retries=1), payload)
    assert refused.status == "error" and refused.reason.startswith(f"{down} could not be reached")
    assert "tried 2 times" in refused.reason


def test_http_checks_are_queued_then_evaluated_in_the_background(fresh_model, make_app, database_url, receiver, mlflow_server):
    name, challenger = fresh_model.name, fresh_model.versions["challenger"]
    checks_yaml = f"      - {{name: ci, kind: http, url: '{receiver.url}/fail', timeout: 2}}\n"
    app = make_app(name, checks_yaml, database_url)
    client = app.test_client()
    opened = open_request(client, name, challenger)
    assert by_name(opened)["ci"] == {**by_name(opened)["ci"], "status": "pending", "reason": "queued", "trigger": "open"}
    assert receiver.received == [], "opening never waits for the receiver"
    reviewed = call(client, "POST", f"/requests/{opened['id']}/reviews", "bob", json={"verdict": "approve"}).get_json()
    assert reviewed["state"] == "open" and reviewed["blocked_by_checks"] == ["ci"], "a pending required check blocks"

    workflow = services(app).workflow
    assert workflow.run_pending_checks() == 1
    assert workflow.run_pending_checks() == 0, "each queued check is evaluated once"
    sent = receiver.received[-1]["json"]
    assert sent["request"]["id"] == opened["id"] and sent["request"]["model"] == name
    assert sent["check"] == {"name": "ci", "kind": "http", "required": True}
    assert sent["diff"]["metrics"]["val_auc"] == {"challenger": 0.91, "champion": 0.9}
    failed = by_name(call(client, "GET", f"/requests/{opened['id']}").get_json())["ci"]
    assert (failed["status"], failed["reason"]) == ("fail", "bias audit failed")
    assert events_of(database_url, opened["id"]).count("check_failed") == 1

    # The receiver changes its mind; a re-run queues the check again and the worker applies the request, once.
    switched = tmp_policy_switch(app, receiver.url + "/pass")
    assert switched
    call(client, "POST", f"/requests/{opened['id']}/checks", "bob")
    assert race(workflow.run_pending_checks, workflow.run_pending_checks) in ([1, 0], [0, 1])
    final = call(client, "GET", f"/requests/{opened['id']}").get_json()
    assert final["state"] == "applied" and by_name(final)["ci"]["reason"] == "model card reviewed"
    assert champion_of(mlflow_server, name) == challenger
    assert events_of(database_url, opened["id"]).count("applied") == 1


def tmp_policy_switch(app, url: str) -> bool:
    """Point the loaded policy's HTTP check at another URL (the policy is read once at start)."""
    from dataclasses import replace

    workflow = services(app).workflow
    rules = []
    for rule in workflow.policy.rules:
        rules.append(replace(rule, checks=tuple(replace(c, url=url) if c.kind == "http" else c for c in rule.checks)))
    workflow.policy = replace(workflow.policy, rules=tuple(rules))
    return True


def test_background_thread_runs_queued_http_checks(fresh_model, mlflow_server, sqlite_url, tmp_path, receiver):
    name, challenger = fresh_model.name, fresh_model.versions["challenger"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY.format(model=name, approvals=1, checks=f"      - {{name: ci, kind: http, url: '{receiver.url}/pass'}}\n")
    )
    app = create_app({"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path, "policy_file": policy})
    try:
        client = app.test_client()
        opened = open_request(client, name, challenger)
        ci = poll(
            lambda: by_name(call(client, "GET", f"/requests/{opened['id']}").get_json())["ci"],
            until=lambda ci: ci["status"] != "pending",
            timeout=20,
            step=0.1,
        )
        assert ci["status"] == "pass", ci
    finally:
        close_app(app)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CheckRow)).scalar() == 1
    engine.dispose()
