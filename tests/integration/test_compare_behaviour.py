"""The compare page's behavioural diff (issues 14 and 17 §5), against a real MLflow with real logged
scikit-learn models: the datasets of the rules that would govern ``a``'s model, pending then scored
by the background work (numbers computed again here), the same stored diff a request for the pair
gets (never scored twice), a model no rule covers says so, and in ``mlflow`` identity mode no one
who may not read both models sees a number or queues a run. The page in a real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import quote

import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from sklearn import metrics

from checkpoint import create_app
from checkpoint.runtime import sandbox
from checkpoint.services import services
from tests.support.apps import background_task, live
from tests.support.auth import ADMIN, as_user, grant, mlflow_mode
from tests.support.behaviour import ask_alias, behaviour_of, frame, log_dataset, log_sklearn
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import unique

TASK = "behaviour"
NONE_CONFIGURED = "No evaluation datasets configured for this model"
POLICY = """
rules:
  - name: staging
    models: ["{model}"]
    targets: ["stage:Staging"]
    evaluation:
      - {{name: holdout, uri: "{uri}", target: label, slices: [country], max_rows: 400}}
  - name: production
    models: ["{model}"]
    targets: ["alias:champion"]
    evaluation:
      - {{name: holdout, uri: "{uri}", target: label, slices: [country], max_rows: 400}}
"""


@pytest.fixture(autouse=True)
def _isolated_here() -> None:
    if not sandbox.detect().isolated:
        pytest.fail(f"these tests need namespaces (root or user namespaces): {sandbox.detect().note}")


def holdout(rows: int = 500, seed: int = 21):
    data = frame(["a", "b"], rows=rows, seed=seed)
    data["country"] = np.where(data["a"] > 0.2, "fr", "de")
    data["label"] = ((data["a"] + 0.5 * data["b"] + np.random.default_rng(seed).normal(scale=0.7, size=rows)) > 0).astype(int)
    return data


@pytest.fixture
def pair(mlflow_server, tmp_path):
    """A model with a champion (v1) and a challenger (v2), and its holdout logged as a run's artifact."""
    name = unique("cmp-behaviour")
    v1, champion, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.0, seed=0)
    v2, challenger, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], c=0.05, seed=3, shift=0.6)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    data = holdout()
    uri = log_dataset(mlflow_server.url, data, tmp_path)
    return {"name": name, "v2": v2, "models": (champion, challenger), "data": data, "uri": uri}


@pytest.fixture
def served(pair, mlflow_server, sqlite_url, tmp_path):
    """Checkpoint (no background thread: the test runs its tasks) whose two rules for the model both
    name the holdout: the compare page scores it once."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(model=pair["name"], uri=pair["uri"]))
    settings = {"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path}
    with ExitStack() as stack:
        yield stack.enter_context(live(create_app(settings | {"policy_file": policy, "background": False}), sqlite_url))


def compare(base: str, model: str, html: bool = False, auth: tuple = ("carol", "x"), **params) -> requests.Response:
    prefix = "/checkpoint" if html else "/checkpoint/api/v1"
    headers = {"Accept": "text/html"} if html else {}
    return requests.get(
        f"{base}{prefix}/models/{quote(model, safe='')}/compare", params=params, auth=auth, headers=headers, timeout=60
    )


def test_the_rules_datasets_pending_then_scored_and_shared_with_a_request(served, pair, model_runs):
    base, name = served.url, pair["name"]
    answer = compare(base, name, a="@champion", b=pair["v2"])
    assert answer.status_code == 200, answer.text
    shown = answer.json()["behaviour"]
    assert shown["state"] == "pending", shown
    assert [(d["name"], d["state"]) for d in shown["datasets"]] == [("holdout", "pending")]  # two rules, one name
    assert (shown["champion"]["version"], shown["challenger"]["version"]) == ("1", pair["v2"])
    page = compare(base, name, html=True, a="@champion", b=pair["v2"])
    assert page.status_code == 200 and 'id="behaviour"' in page.text and "Dataset holdout" in page.text
    assert NONE_CONFIGURED not in page.text

    assert background_task(served.app, TASK)() == 1
    done = compare(base, name, a="@champion", b=pair["v2"]).json()["behaviour"]
    assert done["state"] == "done", done
    [scored] = done["datasets"]
    rows = pair["data"].iloc[:400]
    champion, challenger = pair["models"]
    old, new = champion.predict(rows[["a", "b"]]), challenger.predict(rows[["a", "b"]])
    assert scored["state"] == "done" and scored["rows"] == 400
    assert scored["agreement"] == pytest.approx(float(np.mean(old == new)))
    auc = metrics.roc_auc_score(rows["label"], challenger.predict_proba(rows[["a", "b"]])[:, 1])
    assert scored["metrics"]["roc_auc"]["challenger"] == pytest.approx(auc)
    assert [e["example"] for e in done["examples"]["inputs"]] == ["champion", "challenger"]
    page = compare(base, name, html=True, a="@champion", b=pair["v2"]).text
    assert f"agreement {100 * scored['agreement']:.1f}%" in page and "<svg" in page

    # A request for the same pair under the production rule (the same datasets): the same stored
    # diff. Its opening reads the datasets again (a file replaced at the same URI is scored again);
    # the same file costs no model run and leaves the numbers as they were.
    runs = len(model_runs)
    request_id = ask_alias(base, name, pair["v2"])
    assert behaviour_of(base, request_id)["key"] == done["key"]
    background_task(served.app, TASK)()
    from_request = behaviour_of(base, request_id)
    assert (from_request["state"], from_request["key"]) == ("done", done["key"])
    assert from_request["datasets"][0]["agreement"] == scored["agreement"]
    assert len(model_runs) == runs  # nothing scored twice


def test_a_model_no_rule_covers_says_so(served, mlflow_server):
    name = unique("cmp-uncovered")
    v1, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], seed=0)
    v2, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], seed=4, shift=0.3)
    page = compare(served.url, name, html=True, a=v1, b=v2)
    assert page.status_code == 200 and 'id="behaviour"' in page.text and NONE_CONFIGURED in page.text
    assert compare(served.url, name, a=v1, b=v2).json()["behaviour"]["datasets"] == []
    assert background_task(served.app, TASK)() == 1
    shown = compare(served.url, name, a=v1, b=v2).json()["behaviour"]
    assert shown["state"] == "done" and shown["datasets"] == [] and len(shown["examples"]["inputs"]) == 2
    assert NONE_CONFIGURED in compare(served.url, name, html=True, a=v1, b=v2).text

    # Another model registered from the very same files: the same stored diff (same digests), never
    # scored again, shown with the versions asked, not those of whoever asked first.
    client, twin = MlflowClient(mlflow_server.url), unique("cmp-twin")
    client.create_registered_model(twin)
    for version in (v1, v2):
        original = client.get_model_version(name, version)
        model_id = original.source.removeprefix("models:/")  # the logged model both register
        client.create_model_version(twin, original.source, run_id=original.run_id, model_id=model_id)
    again = compare(served.url, twin, a="1", b="2").json()["behaviour"]
    assert (again["key"], again["state"]) == (shown["key"], "done")
    assert (again["champion"]["name"], again["challenger"]["name"]) == (twin, twin)
    assert background_task(served.app, TASK)() == 0


# -- who may see the numbers (a real MLflow basic-auth app) ------------------------------


@pytest.fixture
def guarded(auth_mlflow, sqlite_url, tmp_path, monkeypatch) -> Iterator[dict]:
    """Two models on the auth server, a dataset for the secret one's rule; carol may read both,
    dave may not read the secret one."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    secret, other = unique("cmp-secret"), unique("cmp-open")
    for model in (secret, other):
        log_sklearn(auth_mlflow.url, model, ["a", "b"], c=1.0, seed=0)
        log_sklearn(auth_mlflow.url, model, ["a", "b"], c=0.05, seed=3, shift=0.6)
    grant(auth_mlflow.url, "carol", secret, "READ")
    grant(auth_mlflow.url, "dave", secret, "DENY")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(model=secret, uri=log_dataset(auth_mlflow.url, holdout(), tmp_path)))
    settings = mlflow_mode(auth_mlflow, sqlite_url, tmp_path, policy_file=policy, background=False)
    with live(create_app(settings), sqlite_url) as served:
        yield {"served": served, "secret": secret, "other": other}


def test_no_number_for_who_may_not_read_the_model(guarded):
    served, secret, other = guarded["served"], guarded["secret"], guarded["other"]
    base = served.url

    def call(user: str, model: str, html: bool = False, **params) -> requests.Response:
        return compare(base, model, html=html, auth=as_user(user), **params)

    asks = [(secret, {"a": "1", "b": "2"}), (other, {"a": "1", "b": "2", "b_model": secret})]
    for model, params in asks:  # dave asks first: refused, and no diff is queued for him
        for html in (False, True):
            refused = call("dave", model, html, **params)
            assert refused.status_code == 403, refused.text
            assert "holdout" not in refused.text and "Behaviour" not in refused.text
    store = services(served.app).store
    assert background_task(served.app, TASK)() == 0
    assert call("carol", secret, **asks[0][1]).json()["behaviour"]["state"] == "pending"
    assert background_task(served.app, TASK)() == 1
    scored = call("carol", secret, **asks[0][1]).json()["behaviour"]
    assert scored["state"] == "done" and scored["datasets"][0]["state"] == "done", scored
    agreement = f"{100 * scored['datasets'][0]['agreement']:.1f}%"
    assert agreement in call("carol", secret, html=True, **asks[0][1]).text
    for model, params in asks:  # the numbers stored now: still none for dave
        for html in (False, True):
            refused = call("dave", model, html, **params)
            assert refused.status_code == 403 and agreement not in refused.text and scored["key"] not in refused.text
    assert store.behaviour(scored["key"]) is not None


@pytest.mark.browser
def test_the_compare_page_shows_the_dataset_pending_then_its_numbers(
    served,
    pair,
    browser_page,  # noqa: F811 - the fixture imported above, by name
    screenshot,  # noqa: F811
):
    browser_page.goto(f"{served.url}/checkpoint/whoami")
    browser_page.fill("input[name=name]", "carol")
    browser_page.click("button[type=submit]")
    url = f"{served.url}/checkpoint/models/{quote(pair['name'], safe='')}/compare?a=%40champion&b={pair['v2']}"
    browser_page.goto(url)
    section = browser_page.locator("#behaviour")
    assert "pending" in section.inner_text() and "Dataset holdout" in section.inner_text()
    section.scroll_into_view_if_needed()
    screenshot("compare-behaviour-pending")

    assert background_task(served.app, TASK)() == 1
    browser_page.reload()
    section = browser_page.locator("#dataset-1")
    text = section.inner_text()
    assert "agreement" in text and "roc_auc" in text and "p95 latency" in text
    assert section.locator("svg rect").count() > 0
    section.scroll_into_view_if_needed()
    screenshot("compare-behaviour-done")
