"""A behavioural diff read again, against a real MLflow with real logged scikit-learn models: a
dataset file replaced at the same URI is scored again on a re-run (new digest, new numbers),
the same file is a cache hit (no model run: counted), a MetricThreshold check is judged with
MLflow's rule on the numbers, and a real webhook receiver gets ``behaviour_finished`` with the
summary, which later events on the request carry too."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient
from mlflow.models import MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException, _validate
from sklearn import metrics

from checkpoint import create_app
from checkpoint.runtime import sandbox
from tests.support.apps import background_task, live
from tests.support.behaviour import ask_alias, behaviour_of, frame, log_dataset, log_sklearn
from tests.support.governed import api, unique
from tests.support.receiver import SECRET, SECRET_ENV, Receiver, hook


@pytest.fixture(autouse=True)
def _isolated_here() -> None:
    if not sandbox.detect().isolated:
        pytest.fail(f"these tests need namespaces (root or user namespaces): {sandbox.detect().note}")


@pytest.fixture
def receiver():
    running = Receiver().start()
    yield running
    running.stop()


def holdout(seed: int, rows: int = 400) -> pd.DataFrame:
    data = frame(["a", "b"], rows=rows, seed=seed)
    data["label"] = ((data["a"] + 0.5 * data["b"] + np.random.default_rng(seed).normal(scale=0.7, size=rows)) > 0).astype(int)
    return data


def served(stack: ExitStack, mlflow_server, sqlite_url, tmp_path, name: str, uri: str, receiver: Receiver):
    rule = {
        "name": "gated",
        "models": [name],
        "targets": ["alias:champion"],
        "evaluation": [{"name": "holdout", "uri": uri, "target": "label"}],
        "checks": [
            {
                "name": "auc-threshold",
                "kind": "behaviour",
                "metric": "roc_auc",
                "threshold": 0.6,
                "min_relative_change": 0.01,
                "greater_is_better": True,
                "on": "holdout",
            }
        ],
    }
    policy = tmp_path / "policy.yaml"
    webhooks = [hook(receiver, events=["*", "behaviour_finished"])]  # the summary's event is asked for by name
    policy.write_text(yaml.safe_dump({"rules": [rule], "webhooks": webhooks}))
    settings = {"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path}
    settings |= {"policy_file": policy, "background": False, "environ": {SECRET_ENV: SECRET}}
    return stack.enter_context(live(create_app(settings), sqlite_url))


def mlflow_passes(value: float, baseline: float) -> bool:
    rule = MetricThreshold(threshold=0.6, min_relative_change=0.01, greater_is_better=True)
    try:
        _validate({"roc_auc": rule}, {"roc_auc": value}, {"roc_auc": baseline})
    except ModelValidationFailedException:
        return False
    return True


def test_a_replaced_dataset_is_scored_again_the_same_one_is_not(mlflow_server, sqlite_url, tmp_path, receiver, model_runs):
    name = unique("refresh")
    v1, champion, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.0, seed=0)
    v2, challenger, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=0.05, seed=3, shift=0.6)
    client = MlflowClient(mlflow_server.url)
    client.set_registered_model_alias(name, "champion", v1)
    first = holdout(seed=11)
    uri = log_dataset(mlflow_server.url, first, tmp_path)
    with ExitStack() as stack:
        app = served(stack, mlflow_server, sqlite_url, tmp_path, name, uri, receiver)
        request_id = ask_alias(app.url, name, v2)
        behaviour_of(app.url, request_id)
        assert background_task(app.app, "behaviour")() == 1
        assert len(model_runs) == 2  # champion and challenger, each in its own run
        [scored] = behaviour_of(app.url, request_id)["datasets"]
        X, y = first[["a", "b"]], first["label"]
        old_auc = metrics.roc_auc_score(y, champion.predict_proba(X)[:, 1])
        new_auc = metrics.roc_auc_score(y, challenger.predict_proba(X)[:, 1])
        assert scored["metrics"]["roc_auc"]["challenger"] == pytest.approx(new_auc)
        assert scored["read_at"] and len(scored["digest"]) == 64

        # The MetricThreshold check: MLflow's own validator on the same numbers says the same.
        checks = {c["name"]: c for c in api(app.url, "GET", f"/requests/{request_id}", user="carol").json()["checks"]}
        expected = "pass" if mlflow_passes(new_auc, old_auc) else "fail"
        assert checks["auc-threshold"]["status"] == expected, checks["auc-threshold"]

        # The webhook receiver got the summary, as the event and on the request's later events.
        background_task(app.app, "webhooks")()
        [finished] = [a.message for a in receiver.accepted() if a.message["action"] == "behaviour_finished"]
        summary = finished["data"]["event"]
        assert finished["data"]["behaviour"] == summary and summary["state"] == "done"
        [entry] = summary["datasets"]
        assert entry["name"] == "holdout" and entry["rows"] == len(first) and entry["digest"] == scored["digest"][:12]
        assert entry["agreement"] == pytest.approx(scored["agreement"])
        assert entry["metrics"]["roc_auc"]["delta"] == pytest.approx(new_auc - old_auc)
        assert set(entry["p95_latency_ms"]) == {"champion", "challenger"} and entry["p95_latency_ms"]["challenger"] > 0
        assert summary["examples"] == {"inputs": 2, "errors": 0, "breaking": []}
        opened = [a.message for a in receiver.accepted() if a.message["action"] == "opened"]
        assert opened and opened[0]["data"]["behaviour"] is None  # none had finished when it opened

        # Re-run with the same file: read and hashed again, a cache hit, no model run.
        rerun = api(app.url, "POST", f"/requests/{request_id}/behaviour", user="alice")
        assert rerun.status_code == 202 and rerun.json()["state"] == "pending", rerun.text
        assert background_task(app.app, "behaviour")() == 1
        assert len(model_runs) == 2
        [same] = behaviour_of(app.url, request_id)["datasets"]
        assert same["digest"] == scored["digest"] and same["metrics"] == scored["metrics"]
        assert same["read_at"] >= scored["read_at"]

        # The file replaced at the same run path: a re-run scores it again, with new numbers.
        second = holdout(seed=29, rows=300)
        replaced = tmp_path / "replaced" / "holdout.parquet"
        replaced.parent.mkdir()
        second.to_parquet(replaced)
        run_id = uri.split("/")[1]
        client.log_artifact(run_id, str(replaced), artifact_path="eval")
        assert api(app.url, "POST", f"/requests/{request_id}/behaviour", user="alice").status_code == 202
        assert background_task(app.app, "behaviour")() == 1
        assert len(model_runs) == 4
        [again] = behaviour_of(app.url, request_id)["datasets"]
        X2, y2 = second[["a", "b"]], second["label"]
        assert again["digest"] != scored["digest"] and again["rows"] == len(second)
        assert again["metrics"]["roc_auc"]["challenger"] == pytest.approx(
            metrics.roc_auc_score(y2, challenger.predict_proba(X2)[:, 1])
        )
        checks = {c["name"]: c for c in api(app.url, "GET", f"/requests/{request_id}", user="carol").json()["checks"]}
        old_auc = metrics.roc_auc_score(y2, champion.predict_proba(X2)[:, 1])
        expected = "pass" if mlflow_passes(again["metrics"]["roc_auc"]["challenger"], old_auc) else "fail"
        assert checks["auc-threshold"]["status"] == expected, checks["auc-threshold"]  # judged again on the new numbers
        html = requests.get(f"{app.url}/checkpoint/requests/{request_id}", auth=("carol", "x"), timeout=30).text
        assert f"digest {again['digest'][:12]}, read " in html
