"""The behavioural diff on a rule's evaluation datasets, against a real MLflow with real logged
scikit-learn models: the numbers are right (computed again here from the models themselves), a
required behaviour check stays pending (and blocks approval) until the diff is finished, then is
judged once by the background work; a missing or malformed dataset gives a clear error; the same
pair on the same dataset is never scored twice."""

from __future__ import annotations

import re
from contextlib import ExitStack

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from sklearn import metrics

from checkpoint import create_app
from checkpoint.runtime import sandbox
from checkpoint.services import services
from tests.support.apps import background_task, live
from tests.support.behaviour import ask_alias, behaviour_of, frame, log_dataset, log_hostile, log_sklearn
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, unique

TASK = "behaviour"
POLICY = """
rules:
  - name: gated
    models: ["{model}"]
    targets: ["alias:champion"]
    evaluation:
      - {{name: holdout, uri: "{uri}", target: label, slices: [country], max_rows: {max_rows}}}
    checks:
      - {{name: holdout-auc, kind: behaviour, expression: "roc_auc >= champion - 0.005"}}
      - {{name: agreement, kind: behaviour, expression: "holdout.agreement >= 0.5", required: false}}
      - {{name: examples, kind: behaviour, examples: no errors}}
"""


@pytest.fixture(autouse=True)
def _isolated_here() -> None:
    if not sandbox.detect().isolated:
        pytest.fail(f"these tests need namespaces (root or user namespaces): {sandbox.detect().note}")


@pytest.fixture
def gated(mlflow_server, sqlite_url, tmp_path):
    """A served Checkpoint (no background thread: the test runs its tasks) whose policy scores
    ``model`` on the dataset at ``uri``."""
    with ExitStack() as stack:

        def build(model: str, uri: str, max_rows: int = 100_000):
            policy = tmp_path / "policy.yaml"
            policy.write_text(POLICY.format(model=model, uri=uri, max_rows=max_rows))
            settings = {"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path}
            return stack.enter_context(live(create_app(settings | {"policy_file": policy, "background": False}), sqlite_url))

        yield build


def holdout(rows: int = 600, seed: int = 11) -> pd.DataFrame:
    data = frame(["a", "b"], rows=rows, seed=seed)
    data["country"] = np.where(data["a"] > 0.3, "fr", "de")
    data["label"] = ((data["a"] + 0.5 * data["b"] + np.random.default_rng(seed).normal(scale=0.7, size=rows)) > 0).astype(int)
    return data


def checks_of(base: str, request_id: int) -> dict[str, dict]:
    answer = api(base, "GET", f"/requests/{request_id}", user="carol").json()
    return {c["name"]: c for c in answer["checks"]}


def test_the_numbers_are_right_and_the_check_waits_for_them(gated, mlflow_server, tmp_path):
    name = unique("holdout")
    v1, champion, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.0, seed=0)
    v2, challenger, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=0.05, seed=3, shift=0.6)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    data = holdout()
    served = gated(name, log_dataset(mlflow_server.url, data, tmp_path), max_rows=500)
    base = served.url
    request_id = ask_alias(base, name, v2)

    shown = behaviour_of(base, request_id)
    assert shown["state"] == "pending" and shown["datasets"] == [
        {"name": "holdout", "uri": shown["datasets"][0]["uri"], "state": "pending", "reason": ""}
    ]
    pending = checks_of(base, request_id)
    assert {n: c["status"] for n, c in pending.items()} == {
        "holdout-auc": "pending",
        "agreement": "pending",
        "examples": "pending",
    }
    approve = api(base, "POST", f"/requests/{request_id}/reviews", user="carol", json={"verdict": "approve"})
    assert approve.status_code in (200, 201), approve.text
    assert api(base, "GET", f"/requests/{request_id}").json()["state"] == "open"  # the pending check holds it
    # The checks task alone judges nothing while the diff is pending: they stay queued.
    assert background_task(served.app, "checks")() == 0

    assert background_task(served.app, TASK)() == 1
    shown = behaviour_of(base, request_id)
    assert shown["state"] == "done", shown
    [scored] = shown["datasets"]
    rows = data.iloc[:500]
    X, y = rows[["a", "b"]], rows["label"]
    old, new = champion.predict(X), challenger.predict(X)
    old_p, new_p = champion.predict_proba(X)[:, 1], challenger.predict_proba(X)[:, 1]
    assert scored["state"] == "done" and scored["rows"] == 500 and scored["kind"] == "classes", scored
    assert len(scored["digest"]) == 64
    assert scored["agreement"] == pytest.approx(float(np.mean(old == new)))
    assert scored["metrics"]["roc_auc"]["champion"] == pytest.approx(metrics.roc_auc_score(y, old_p))
    assert scored["metrics"]["roc_auc"]["challenger"] == pytest.approx(metrics.roc_auc_score(y, new_p))
    assert scored["metrics"]["accuracy"]["challenger"] == pytest.approx(metrics.accuracy_score(y, new))
    assert scored["metrics"]["f1"]["champion"] == pytest.approx(metrics.f1_score(y, old))
    flips = pd.crosstab(old, new)
    assert scored["flips"] == {
        str(a): {str(b): int(flips.loc[a, b]) for b in flips.columns if flips.loc[a, b]} for a in flips.index
    }
    fr = (rows["country"] == "fr").to_numpy()
    by_slice = {s["value"]: s for s in scored["slices"]}
    assert by_slice["fr"]["rows"] == int(fr.sum()) and by_slice["fr"]["agreement"] == pytest.approx(
        float(np.mean(old[fr] == new[fr]))
    )
    assert sum(scored["histogram"]["counts"]) == 500
    assert 0 < len(scored["disagreements"]) <= 20 and set(scored["disagreements"][0]["features"]) >= {"a", "b", "country"}
    assert "label" not in scored["disagreements"][0]["features"]  # the models never saw the target
    for side in ("champion", "challenger"):
        latency = scored["latency_ms"][side]
        assert 0 < latency["p50"] <= latency["p95"] and latency["samples"] == 100

    # Judged once, by the background work, as the diff finished.
    judged = checks_of(base, request_id)
    auc_ok = metrics.roc_auc_score(y, new_p) >= metrics.roc_auc_score(y, old_p) - 0.005
    assert judged["holdout-auc"]["status"] == ("pass" if auc_ok else "fail"), judged
    assert judged["examples"]["status"] == "pass"
    assert judged["agreement"]["status"] == ("pass" if np.mean(old == new) >= 0.5 else "fail"), judged
    assert background_task(served.app, "checks")() == 0  # nothing left to judge
    page = requests.get(f"{base}/checkpoint/requests/{request_id}", auth=("carol", "x"), timeout=30).text
    assert "holdout" in page and f"{100 * scored['agreement']:.1f}%" in page and "<svg" in page


def test_the_same_pair_on_the_same_dataset_is_scored_once(gated, mlflow_server, tmp_path):
    name = unique("holdout")
    v1, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], kind="regressor", seed=0)
    v2, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.3, kind="regressor", seed=5)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    data = holdout().assign(label=lambda d: d["a"] * 2.0)
    served = gated(name, log_dataset(mlflow_server.url, data, tmp_path))
    request_id = ask_alias(served.url, name, v2)
    behaviour_of(served.url, request_id)
    assert background_task(served.app, TASK)() == 1
    [scored] = behaviour_of(served.url, request_id)["datasets"]
    assert scored["kind"] == "numbers" and set(scored["metrics"]) == {"rmse", "mae"} and scored["correlation"] > 0.9
    store = services(served.app).store
    cached = [k for k in _keys(store) if store.behaviour(k).dataset_digest == scored["digest"]]
    assert len(cached) == 1 and store.behaviour(cached[0]).result["mean_abs_diff"] == scored["mean_abs_diff"]


def _keys(store) -> list[str]:
    import sqlalchemy as sa

    from checkpoint.storage.db import session_scope
    from checkpoint.storage.models import BehaviourRow

    with session_scope(store.sessions) as session:
        return list(session.scalars(sa.select(BehaviourRow.key)))


@pytest.mark.parametrize(
    ("dataset", "reason"),
    [
        (None, r"does not exist \(no file nothing\.parquet"),
        (b"this is not parquet", r"the dataset is unreadable as parquet"),
        (holdout().drop(columns=["label"]), r"the dataset has no column label"),
    ],
)
def test_a_missing_or_malformed_dataset_is_a_clear_error(dataset, reason, gated, mlflow_server, tmp_path):
    name = unique("holdout")
    v1, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], seed=0)
    v2, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], seed=3)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    uri = log_dataset(mlflow_server.url, dataset if dataset is not None else holdout(), tmp_path)
    if dataset is None:
        uri = uri.rsplit("/", 1)[0] + "/nothing.parquet"
    served = gated(name, uri)
    request_id = ask_alias(served.url, name, v2)
    behaviour_of(served.url, request_id)
    assert background_task(served.app, TASK)() == 1
    shown = behaviour_of(served.url, request_id)
    [entry] = shown["datasets"]
    assert shown["state"] == "done" and entry["state"] == "error"
    assert re.search(reason, entry["error"]), entry["error"]
    judged = checks_of(served.url, request_id)
    assert judged["holdout-auc"]["status"] == "error" and "holdout:" in judged["holdout-auc"]["reason"]
    assert judged["examples"]["status"] == "pass"


def test_a_diff_run_again_queues_its_behaviour_checks_again(gated, mlflow_server, tmp_path):
    """A model that fails to load: the diff is an error, its checks judged so; asked again, the
    checks wait (pending) for the new run, and are judged once more when it ends."""
    name = unique("holdout")
    version = log_hostile(mlflow_server.url, name, "raise RuntimeError('no loading today')", tmp_path)
    served = gated(name, log_dataset(mlflow_server.url, holdout(), tmp_path))
    request_id = ask_alias(served.url, name, version)
    behaviour_of(served.url, request_id)
    assert background_task(served.app, TASK)() == 1
    shown = behaviour_of(served.url, request_id)
    assert shown["state"] == "error" and "no loading today" in shown["reason"]
    assert shown["datasets"][0]["state"] == "error" and "no champion" in shown["datasets"][0]["error"]
    judged = checks_of(served.url, request_id)
    assert (judged["holdout-auc"]["status"], judged["examples"]["status"]) == ("error", "fail")
    assert "no loading today" in judged["examples"]["reason"]

    rerun = api(served.url, "POST", f"/requests/{request_id}/behaviour", user="alice")
    assert rerun.status_code == 202 and rerun.json()["state"] == "pending"
    assert {c["status"] for c in checks_of(served.url, request_id).values()} == {"pending"}
    assert background_task(served.app, TASK)() == 1
    assert {n: c["status"] for n, c in checks_of(served.url, request_id).items()} == {
        "holdout-auc": "error",
        "agreement": "error",
        "examples": "fail",
    }


@pytest.mark.browser
def test_the_page_shows_the_dataset_pending_then_its_numbers(
    gated,
    mlflow_server,
    tmp_path,
    browser_page,  # noqa: F811 - the fixture imported above, by name
    screenshot,  # noqa: F811
):
    name = unique("holdout")
    v1, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.0, seed=0)
    v2, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=0.05, seed=3, shift=0.6)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    data = holdout()
    data.loc[0, "country"] = "<script>window.pwned=1</script>"  # a slice value a dataset author chose
    served = gated(name, log_dataset(mlflow_server.url, data, tmp_path))
    request_id = ask_alias(served.url, name, v2)
    browser_page.goto(f"{served.url}/checkpoint/whoami")
    browser_page.fill("input[name=name]", "carol")
    browser_page.click("button[type=submit]")
    browser_page.goto(f"{served.url}/checkpoint/requests/{request_id}")
    section = browser_page.locator("#dataset-1")
    assert "Dataset holdout" in section.inner_text() and "pending" in section.inner_text()
    section.scroll_into_view_if_needed()
    screenshot("dataset-pending")

    assert background_task(served.app, TASK)() == 1
    [scored] = behaviour_of(served.url, request_id)["datasets"]
    browser_page.reload()
    section = browser_page.locator("#dataset-1")
    text = section.inner_text()
    assert f"agreement {100 * scored['agreement']:.1f}%" in text and "roc_auc" in text and "p95 latency" in text
    assert "country = <script>window.pwned=1</script>" in text  # shown as text
    assert browser_page.evaluate("window.pwned") is None
    assert section.locator("svg rect").count() == len(scored["histogram"]["counts"])
    assert section.locator("table").nth(1).inner_text().startswith("Flips")
    section.scroll_into_view_if_needed()
    screenshot("dataset-done")
