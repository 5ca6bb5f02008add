"""The demo: `seed()` against a real MLflow server, and `checkpoint demo` run as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.models import Model
from sklearn.metrics import roc_auc_score

from checkpoint.demo.data import DEMO_MODEL_NAMES, FREEZE_MINUTES, FREEZE_MODEL, FREEZE_NAME, HOLDOUT_URI, ON_CALL, PROD_COPY
from checkpoint.demo.seed import seed
from tests.support.demo import distinct_free_ports, listening, start_demo, stop_demo, wait_for_output
from tests.support.waiting import poll


def _input_names(client: MlflowClient, tracking_uri: str, name: str, version: str, into: Path) -> list[str]:
    """The input columns of a registered version's signature, read from its logged MLmodel file."""
    source = client.get_model_version_download_uri(name, version)
    local = download_artifacts(artifact_uri=f"{source}/MLmodel", tracking_uri=tracking_uri, dst_path=str(into))
    signature = Model.load(local).signature
    assert signature is not None, f"{name} v{version} was logged without a signature"
    return signature.inputs.input_names()


def test_seed_builds_the_example_registry_once(mlflow_server, tmp_path, monkeypatch):
    url = mlflow_server.url
    summary = seed(url)
    client = MlflowClient(url, registry_uri=url)

    assert summary["created"] is True
    assert set(DEMO_MODEL_NAMES) <= {m.name for m in client.search_registered_models(max_results=1000)}
    counts = {name: len(client.search_model_versions(f"name = '{name}'")) for name in DEMO_MODEL_NAMES}
    assert counts == {"fraud-detector": 4, "churn-model": 3, "demand-forecast": 3, PROD_COPY: 1}

    fraud = {v.version: v for v in client.search_model_versions("name = 'fraud-detector'")}
    assert client.get_registered_model("fraud-detector").aliases == {"champion": "1", "challenger": "2"}
    assert {v: fraud[v].current_stage for v in fraud} == {v: "None" for v in "1234"}  # aliases only, as the UI shows
    assert fraud["1"].tags.get("validation_status") == "passed"
    assert "validation_status" not in fraud["4"].tags
    assert client.get_registered_model("demand-forecast").aliases == {"champion": "2", "challenger": "3"}
    assert client.get_model_version("churn-model", "1").current_stage == "Archived"

    runs = {v: client.get_run(fraud[v].run_id) for v in fraud}
    assert len({run.info.run_id for run in runs.values()}) == 4, "every version comes from its own run"
    for run in runs.values():
        assert re.fullmatch(r"[0-9a-f]{40}", run.data.tags["mlflow.source.git.commit"])
        history = client.get_metric_history(run.info.run_id, "val_auc")
        assert len(history) >= 4, "metrics have a history over training steps"
        assert [m.step for m in history] == sorted({m.step for m in history})
        assert {"val_auc", "val_loss", "precision", "latency_ms"} <= set(run.data.metrics)
    assert runs["1"].data.params["model_type"] != runs["2"].data.params["model_type"]
    champion_auc = runs["1"].data.metrics["val_auc"]
    assert runs["2"].data.metrics["val_auc"] > champion_auc, "the challenger is the better model"
    assert runs["4"].data.metrics["val_auc"] < champion_auc - 0.03, "one version is clearly worse"

    # The holdout the demo's policy names: v2 passes holdout-auc against v1, v4 fails it.
    holdout = pd.read_parquet(download_artifacts(artifact_uri=HOLDOUT_URI, dst_path=str(tmp_path), tracking_uri=url))
    assert len(holdout) == 1000 and "is_fraud" in holdout.columns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    auc = {}
    for version in ("1", "2", "4"):
        model = mlflow.pyfunc.load_model(f"models:/fraud-detector/{version}")
        inputs = model.metadata.get_input_schema().input_names()
        auc[version] = roc_auc_score(holdout["is_fraud"], model.get_raw_model().predict_proba(holdout[inputs])[:, 1])
    assert auc["2"] >= auc["1"] - 0.005 > auc["4"], auc

    champion_inputs = _input_names(client, url, "fraud-detector", "1", tmp_path / "v1")
    assert "distance_km" in champion_inputs
    assert _input_names(client, url, "fraud-detector", "3", tmp_path / "v3") == [
        c for c in champion_inputs if c != "distance_km"
    ], "version 3 drops exactly one input column"

    copy = client.get_model_version(PROD_COPY, "1")
    assert copy.source == "models:/fraud-detector/1"
    assert copy.run_id == fraud["1"].run_id
    assert client.get_registered_model(PROD_COPY).aliases == {"champion": "1"}

    again = seed(url)
    assert again["created"] is False
    assert again["models"] == summary["models"]
    assert len(client.search_model_versions("name = 'fraud-detector'")) == 4


def _assert_the_seeded_history(url: str, policy_file: Path) -> None:
    """What the demo wrote through Checkpoint before serving: fraud-detector's champion history
    (v1 first seen, v2 through reviewed request #1, v1 back by break-glass #2), the rollback to v2
    under the rule's fast path, and request #3 approved during the freeze, waiting for its end."""
    api = f"{url}/checkpoint/api/v1"
    policy = yaml.safe_load(policy_file.read_text())
    [rule] = [r for r in policy["rules"] if r["models"] == ["fraud-detector"]]
    assert rule["rollback"] == {"required_approvals": 1, "allow_self_approval": True}
    [freeze] = policy["freezes"]
    assert (freeze["name"], freeze["models"], freeze["targets"]) == (FREEZE_NAME, [FREEZE_MODEL], ["alias:champion"])
    start, until = (datetime.fromisoformat(freeze[key]).replace(tzinfo=UTC) for key in ("from", "until"))
    now = datetime.now(UTC)
    assert start <= now < until <= now + timedelta(minutes=FREEZE_MINUTES), "a one-off window from the demo's start"

    timeline = requests.get(f"{api}/models/fraud-detector/timeline", auth=("visitor", "x"), timeout=30).json()
    [champion] = [t for t in timeline["targets"] if t["target"] == "alias:champion"]
    periods = [(p["version"], p["how"], p["request_id"], p["actor"]) for p in champion["periods"]]
    assert periods[-3:] == [
        ("1", "outside_change", None, None),
        ("2", "request", 1, "sam.okafor"),
        ("1", "break_glass", 2, ON_CALL),
    ], periods
    assert champion["periods"][-1]["until"] is None
    held = datetime.fromisoformat(champion["periods"][-2]["from"])
    assert now - held > timedelta(days=3), "the history is spread over days, so its bars have a width"

    frozen = requests.get(f"{api}/requests/3", auth=("visitor", "x"), timeout=30).json()
    assert (frozen["model"], frozen["state"]) == (FREEZE_MODEL, "approved")
    assert frozen["waiting_for"] == {"kind": "freeze", "name": FREEZE_NAME, "until": until.isoformat()}

    # Two clicks on the page are this one call; the fast path lets its author approve it.
    opened = requests.post(
        f"{api}/models/fraud-detector/rollback", auth=("carol", "x"), json={"target": "alias:champion"}, timeout=60
    )
    assert opened.status_code == 201, opened.text
    assert (opened.json()["rollback"]["version"], opened.json()["rollback"]["verified"]) == ("2", True)
    review = {"verdict": "approve", "comment": "on-call"}
    approved = requests.post(f"{api}/requests/{opened.json()['id']}/reviews", auth=("carol", "x"), json=review, timeout=60)
    assert approved.json()["state"] == "applied", approved.text
    # v1 back, by the demo's admin, for the checks the caller runs against the seeded champion.
    back = requests.post(
        f"{api}/requests",
        auth=("carol", "x"),
        json={"change": {"kind": "set_alias", "name": "fraud-detector", "alias": "champion", "version": "1"}},
        timeout=60,
    ).json()
    glass = requests.post(f"{api}/requests/{back['id']}/break-glass", auth=(ON_CALL, "x"), json={"reason": "test"}, timeout=60)
    assert glass.json()["state"] == "applied", glass.text


def test_demo_command_serves_the_seeded_registry_and_stops_on_ctrl_c(tmp_path):
    port, mlflow_port = distinct_free_ports(2)
    log = tmp_path / "demo.out"
    data = ["--data-dir", str(tmp_path / "data")]
    process = start_demo(["--port", str(port), "--mlflow-port", str(mlflow_port), *data], log, as_background_job=True)
    url = f"http://127.0.0.1:{port}"
    try:
        banner = wait_for_output(process, log, "Press Ctrl-C", timeout=240)
        assert f"{url}/" in banner
        assert f"http://127.0.0.1:{mlflow_port}" in banner and "behind Checkpoint" in banner
        links = sorted(set(re.findall(rf"{re.escape(url)}/checkpoint/[\w/-]*", banner)))
        assert links, "the banner points at Checkpoint's own pages"
        for link in links:
            assert requests.get(link, timeout=30).status_code == 200, f"the banner's {link} is dead"

        index = requests.get(f"{url}/", timeout=30)
        assert index.status_code == 200
        assert "<title>MLflow</title>" in index.text

        search = requests.get(f"{url}/api/2.0/mlflow/registered-models/search", timeout=30)
        assert search.status_code == 200
        assert set(DEMO_MODEL_NAMES) <= {m["name"] for m in search.json()["registered_models"]}
        alias = requests.get(
            f"{url}/api/2.0/mlflow/registered-models/alias", params={"name": "fraud-detector", "alias": "champion"}, timeout=30
        )
        assert alias.status_code == 200
        assert alias.json()["model_version"]["version"] == "1"

        _assert_the_seeded_history(url, tmp_path / "data" / "checkpoint" / "policy.yaml")

        # The demo's policy gates fraud-detector: v2 passes its checks, v3 (drops a column) and v4 (worse) do not.
        statuses, ids = {}, {}
        for version in ("2", "3", "4"):
            opened = requests.post(
                f"{url}/checkpoint/api/v1/requests",
                auth=("visitor", "x"),
                timeout=60,
                json={
                    "change": {"kind": "set_alias", "name": "fraud-detector", "alias": "champion", "version": version},
                    "description": "for @bob" if version == "2" else "",
                },
            )
            assert opened.status_code == 201, opened.text
            statuses[version] = {c["name"]: c["status"] for c in opened.json()["checks"]}
            ids[version] = opened.json()["id"]
        assert statuses["2"] == {"auc-gate": "pass", "signature": "pass", "validated": "pass", "holdout-auc": "pending"}
        assert statuses["3"]["signature"] == "fail"
        assert (statuses["4"]["auc-gate"], statuses["4"]["signature"]) == ("fail", "pass")
        # The behavioural diff scores v2 on the holdout in the background; holdout-auc follows it. (v4
        # failing it is test_seed_builds_the_example_registry_once's: the diffs of the seeded history
        # queue before these, and each takes a minute or more on a busy machine.)
        judged = poll(lambda: _check(url, ids["2"], "holdout-auc"), timeout=480, step=1, until="pending".__ne__)
        assert judged == "pass", _behaviour(url, ids["2"])
        # Its email goes to the demo's own mailbox, printed on the console with the link.
        mail = wait_for_output(process, log, "email to bob@example.com: [Checkpoint] visitor mentioned you on", timeout=60)
        assert re.search(rf"  {re.escape(url)}/checkpoint/requests/\d+  \(saved as .*/mail/0001\.eml\)", mail)

        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert process.wait(timeout=90) == 0
    finally:
        stop_demo(process)
    output = log.read_text(errors="replace")
    assert "checkpoint demo: stopped" in output
    assert "still listening" not in output
    assert "ignored Ctrl-C" not in output, "a server had to be killed"
    assert not listening(mlflow_port), "the demo's MLflow server is still up after Ctrl-C"
    assert not listening(port), "Checkpoint is still up after Ctrl-C"


def _behaviour(url: str, request_id: int) -> dict:
    answer = requests.get(f"{url}/checkpoint/api/v1/requests/{request_id}", auth=("visitor", "x"), timeout=30)
    return answer.json()["behaviour"]


def _check(url: str, request_id: int, name: str) -> str:
    answer = requests.get(f"{url}/checkpoint/api/v1/requests/{request_id}", auth=("visitor", "x"), timeout=30)
    return next(c["status"] for c in answer.json()["checks"] if c["name"] == name)


@pytest.mark.parametrize("option", ["--port", "--mlflow-port"])
def test_demo_refuses_a_busy_port_naming_the_option(tmp_path, option):
    port, mlflow_port = distinct_free_ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port if option == "--port" else mlflow_port))
        holder.listen()
        log = tmp_path / "demo.out"
        process = start_demo(["--port", str(port), "--mlflow-port", str(mlflow_port), "--data-dir", str(tmp_path / "d")], log)
        try:
            assert process.wait(timeout=60) == 2
        finally:
            stop_demo(process)
    output = log.read_text()
    assert f"{option} <port>" in output and "already in use" in output
    assert not (tmp_path / "d" / "mlflow").exists(), "nothing is started when a port is taken"
