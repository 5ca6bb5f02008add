"""The behavioural diff (review/behaviour/) against a real MLflow with real logged models: the
numbers are right (computed again here from the models themselves), a challenger that fails
on the champion's input example is breaking, the same pair is never scored twice, and models
that try to read Checkpoint's secrets, reach MLflow or Checkpoint, hang, eat memory or flood
their output get an error result and achieve nothing."""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from mlflow import MlflowClient

from checkpoint.registry import Registry
from checkpoint.review.behaviour.runner import Runner
from checkpoint.runtime import sandbox
from checkpoint.services import services
from tests.support.apps import background_task
from tests.support.behaviour import ask_alias, behaviour_of, log_hostile, log_sklearn
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, unique
from tests.support.race import race

TASK = "behaviour"
SECRET = "hunter2-not-for-models"


@pytest.fixture
def checkpoint_config() -> dict:
    """No background thread: each test runs the evaluations itself, when it chooses."""
    return {"background": False}


@pytest.fixture(autouse=True)
def _isolated_here() -> None:
    if not sandbox.detect().isolated:
        pytest.fail(f"these tests need namespaces (root or user namespaces): {sandbox.detect().note}")


def test_classifiers_agreement_is_right_and_the_same_pair_is_never_scored_twice(sqlite_checkpoint, mlflow_server):
    base, app = sqlite_checkpoint.url, sqlite_checkpoint.app
    name = unique("behave")
    v1, champion, example1 = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.0, seed=0)
    v2, challenger, example2 = log_sklearn(mlflow_server.url, name, ["a", "b"], c=0.05, seed=3, shift=0.6)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    request_id = ask_alias(base, name, v2)

    shown = behaviour_of(base, request_id)
    assert shown["state"] == "pending" and shown["challenger"]["version"] == v2 and shown["champion"]["version"] == v1
    page = requests.get(f"{base}/checkpoint/requests/{request_id}", auth=("carol", "x"), timeout=30).text
    assert 'id="behaviour-h">Behaviour</h2>' in page and "this page does not wait for it" in page

    assert background_task(app, TASK)() == 1
    shown = behaviour_of(base, request_id)
    assert shown["state"] == "done", shown
    assert shown["isolation"] == "namespaces" and shown["examples"]["breaking"] == []
    by_example = {e["example"]: e for e in shown["examples"]["inputs"]}
    for whose, example in (("champion", example1), ("challenger", example2)):
        expected = float(np.mean(champion.predict(example) == challenger.predict(example)))
        comparison = by_example[whose]["comparison"]
        assert comparison["kind"] == "classes" and comparison["rows"] == len(example) == 12
        assert comparison["agreement"] == pytest.approx(expected)
        assert comparison["disagreements"] == round((1 - expected) * len(example))
    assert any(e["comparison"]["agreement"] < 1 for e in by_example.values())  # the pair does differ
    page = requests.get(f"{base}/checkpoint/requests/{request_id}", auth=("carol", "x"), timeout=30).text
    agreement = by_example["champion"]["comparison"]["agreement"]
    assert f"agreement {100 * agreement:.1f}%" in page

    # The same pair asked again (withdrawn, reopened): the stored result, nothing run.
    assert api(base, "POST", f"/requests/{request_id}/withdraw", user="alice").status_code == 200
    again = ask_alias(base, name, v2)
    assert behaviour_of(base, again)["state"] == "done" and behaviour_of(base, again)["key"] == shown["key"]
    assert background_task(app, TASK)() == 0
    # Re-running a finished diff leaves it as it is.
    rerun = api(base, "POST", f"/requests/{again}/behaviour", user="alice")
    assert rerun.status_code == 200 and rerun.json()["state"] == "done"


def test_regressors_differences_are_right(sqlite_checkpoint, mlflow_server):
    base, app = sqlite_checkpoint.url, sqlite_checkpoint.app
    name = unique("behave")
    v1, champion, example1 = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.0, kind="regressor", seed=0)
    v2, challenger, example2 = log_sklearn(mlflow_server.url, name, ["a", "b"], c=1.3, kind="regressor", seed=5)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    request_id = ask_alias(base, name, v2)
    assert background_task(app, TASK)() == 1

    shown = behaviour_of(base, request_id)
    assert shown["state"] == "done" and shown["examples"]["breaking"] == []
    for entry in shown["examples"]["inputs"]:
        example = example1 if entry["example"] == "champion" else example2
        diffs = np.abs(champion.predict(example) - challenger.predict(example))
        comparison = entry["comparison"]
        assert comparison["kind"] == "numbers"
        assert comparison["mean_abs_diff"] == pytest.approx(float(diffs.mean()))
        assert comparison["p95_abs_diff"] == pytest.approx(float(np.percentile(diffs, 95)))
        assert comparison["max_abs_diff"] == pytest.approx(float(diffs.max()))


@pytest.mark.browser
def test_a_dropped_column_is_breaking_on_the_page_pending_then_done(
    sqlite_checkpoint,
    mlflow_server,
    browser_page,  # noqa: F811 - the fixture imported above, by name
    screenshot,  # noqa: F811
):
    base, app = sqlite_checkpoint.url, sqlite_checkpoint.app
    name = unique("behave")
    v1, _, _ = log_sklearn(mlflow_server.url, name, ["a", "b"], kind="regressor")
    v2, _, _ = log_sklearn(mlflow_server.url, name, ["a", "c"], kind="regressor")  # no longer reads b
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    request_id = ask_alias(base, name, v2)
    browser_page.goto(f"{base}/checkpoint/whoami")
    browser_page.fill("input[name=name]", "carol")
    browser_page.click("button[type=submit]")
    browser_page.goto(f"{base}/checkpoint/requests/{request_id}")
    section = browser_page.locator("#behaviour")
    assert "pending" in section.inner_text() and "this page does not wait for it" in section.inner_text()
    section.scroll_into_view_if_needed()
    screenshot("pending")

    assert background_task(app, TASK)() == 1
    shown = behaviour_of(base, request_id)
    assert shown["state"] == "done"
    assert shown["examples"]["breaking"] and "fails on the champion's input example" in shown["examples"]["breaking"][0]
    assert "b" in shown["examples"]["breaking"][0]  # the column the challenger no longer reads
    browser_page.reload()
    section = browser_page.locator("#behaviour")
    text = section.inner_text()
    assert "Breaking: the challenger fails on the champion's input example" in text and "failed" in text
    section.scroll_into_view_if_needed()
    screenshot("breaking")


def _spy(mlflow_url: str, checkpoint_url: str, name: str, files: list[str]) -> str:
    """A model load that reports what it could reach: the environment, MLflow and Checkpoint
    over TCP, an alias move through MLflow's REST API, the test process's environ, secret files."""
    mlflow, checkpoint = urlsplit(mlflow_url), urlsplit(checkpoint_url)
    return f"""
    import json, os, socket, urllib.request
    report = {{"uid": os.getuid(), "env": sorted(os.environ), "found": [], "net": {{}}, "files": {{}}}}
    report["found"] = [k for k, v in os.environ.items() if {SECRET!r} in v]
    targets = (("mlflow", ({mlflow.hostname!r}, {mlflow.port})), ("checkpoint", ({checkpoint.hostname!r}, {checkpoint.port})))
    for label, address in targets:
        try:
            socket.create_connection(address, timeout=3).close()
            report["net"][label] = "connected"
        except OSError as exc:
            report["net"][label] = type(exc).__name__
    body = json.dumps({{"name": {name!r}, "alias": "champion", "version": "1"}}).encode()
    move = urllib.request.Request({mlflow_url!r} + "/api/2.0/mlflow/registered-models/alias", data=body, method="POST")
    move.add_header("Content-Type", "application/json")
    try:
        report["alias"] = urllib.request.urlopen(move, timeout=3).status
    except Exception as exc:
        report["alias"] = type(exc).__name__
    try:
        report["parent"] = {SECRET!r} in open("/proc/{os.getpid()}/environ", "rb").read().decode(errors="replace")
    except OSError as exc:
        report["parent"] = type(exc).__name__
    for path in {files!r}:
        try:
            open(path, "rb").read(1)
            report["files"][path] = "read"
        except OSError as exc:
            report["files"][path] = type(exc).__name__
    raise RuntimeError("REPORT " + json.dumps(report, separators=(",", ":")))
    """


def _report(error: str) -> dict:
    found = re.search(r"REPORT (\{.*\})", error)
    assert found, error
    return json.loads(found.group(1))


def test_a_model_cannot_read_secrets_or_reach_mlflow_or_checkpoint(sqlite_checkpoint, mlflow_server, monkeypatch, tmp_path):
    base, app = sqlite_checkpoint.url, sqlite_checkpoint.app
    secrets = ("CHECKPOINT_REGISTRY_PASSWORD", "CHECKPOINT_SECRET_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
    for variable in secrets:
        monkeypatch.setenv(variable, SECRET)  # in the process that runs the evaluations
    secret_files = [str(p) for p in services(app).settings.data_dir.glob("*_key")]
    assert secret_files  # the audit key at least was generated into the data directory
    name = unique("spy")
    version = log_hostile(mlflow_server.url, name, _spy(mlflow_server.url, base, name, secret_files), tmp_path)
    assert version == "1"
    request_id = ask_alias(base, name, version)  # the first champion: the model runs alone
    behaviour_of(base, request_id)
    assert background_task(app, TASK)() == 1

    shown = behaviour_of(base, request_id)
    assert shown["state"] == "error" and "the challenger could not be run" in shown["reason"]
    report = _report(shown["examples"]["models"]["challenger"]["error"])
    assert report["found"] == [] and not any(k.startswith(("CHECKPOINT_", "MLFLOW_")) for k in report["env"])
    assert report["uid"] == 65534  # nobody
    assert report["net"] == {"mlflow": "OSError", "checkpoint": "OSError"}  # network unreachable
    assert report["alias"] == "URLError"
    assert report["parent"] in ("FileNotFoundError", False)  # another PID namespace: no such process
    assert set(report["files"].values()) == {"FileNotFoundError"}  # the data directory is covered (jail.py)
    assert "champion" not in MlflowClient(mlflow_server.url).get_registered_model(name).aliases  # nothing moved

    # The control: the same model run without namespaces reaches MLflow and moves its alias, so
    # the assertions above would catch an isolation that does not hold.
    other = unique("spy")
    log_hostile(mlflow_server.url, other, _spy(mlflow_server.url, base, other, []), tmp_path)
    unisolated = Runner(sandbox.Isolation("none", ()), sandbox.Limits(timeout=120))
    registry = Registry(mlflow_server.url)
    runs = unisolated.run(registry, {"champion": None, "challenger": registry.version(other, "1")})
    control = _report(runs["challenger"]["error"])
    assert control["net"] == {"mlflow": "connected", "checkpoint": "connected"} and control["alias"] == 200
    assert MlflowClient(mlflow_server.url).get_registered_model(other).aliases == {"champion": "1"}


HOSTILE = {
    "hangs": ("import time\ntime.sleep(10 ** 6)", r"timed out after 15 s"),
    "eats memory": ("hoard = bytearray(6 * 1024 ** 3)", r"MemoryError"),
    "floods its answer": (
        "import os, sys\nsys.stdout.write('x' * (64 << 20))\nfor fd in range(3, 12):\n"
        "    try:\n        os.write(fd, b'{' * (8 << 20))\n    except OSError:\n        pass\ntime = 0",
        r"its output was over 4,194,304 bytes",
    ),
}


@pytest.fixture(params=list(HOSTILE))
def kind(request, checkpoint_config) -> str:
    """The hostile model's kind; the app it runs in gets 1.5 GB and, for the one that hangs, 15 s."""
    checkpoint_config["evaluator_memory_mb"] = 1536
    if request.param == "hangs":
        checkpoint_config["evaluator_timeout"] = 15
    return request.param


def test_a_hostile_model_gets_an_error_with_its_reason(kind, sqlite_checkpoint, mlflow_server, tmp_path):
    base, app = sqlite_checkpoint.url, sqlite_checkpoint.app
    body, reason = HOSTILE[kind]
    name = unique("hostile")
    version = log_hostile(mlflow_server.url, name, body, tmp_path)
    request_id = ask_alias(base, name, version)
    behaviour_of(base, request_id)
    assert background_task(app, TASK)() == 1
    shown = behaviour_of(base, request_id)
    assert shown["state"] == "error" and re.search(reason, shown["reason"]), shown["reason"]
    assert len(shown["reason"]) <= 4000
    # An error may be run again on demand: asked (202), not run until the background runs it.
    rerun = api(base, "POST", f"/requests/{request_id}/behaviour", user="alice")
    assert rerun.status_code == 202 and rerun.json()["state"] == "pending"


def test_a_diff_is_claimed_by_one_worker_and_written_only_by_it(live_checkpoint):
    """On SQLite and PostgreSQL: asked twice, stored once; two claims at once, one winner; only
    the claim holder's result counts; an error may be asked again, a done result never (but
    one with datasets may have them read again)."""
    store = services(live_checkpoint.app).store
    challenger = {"name": "m", "version": "2", "digest": "b" * 64}
    first = store.want_behaviour("k" * 64, "", None, challenger)
    assert store.want_behaviour("k" * 64, "", {"name": "x"}, challenger) == first and first.state == "pending"
    lease_before = store.clock.now() - timedelta(minutes=30)
    claims = race(*(lambda: store.claim_behaviour("k" * 64, lease_before) for _ in range(2)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and store.behaviour("k" * 64).state == "running"
    assert store.wanted_behaviours(lease_before) == []  # claimed by a live worker
    assert not store.finish_behaviour("k" * 64, won[0] - timedelta(seconds=1), "done", "", {"x": 1})  # not the holder
    assert store.finish_behaviour("k" * 64, won[0], "error", "timed out after 1 s", None)
    assert store.behaviour("k" * 64).reason == "timed out after 1 s"
    assert store.rerun_behaviour("k" * 64) and store.behaviour("k" * 64).state == "pending"
    again = store.claim_behaviour("k" * 64, lease_before)
    assert again is not None and store.finish_behaviour("k" * 64, again, "done", "", {"inputs": []})
    assert not store.rerun_behaviour("k" * 64) and store.behaviour("k" * 64).result == {"inputs": []}
    assert not store.refresh_behaviour("k" * 64)  # no datasets: a done diff stands
    # With datasets, a done diff may be read again: pending, its result kept for what is reused.
    holdout = [{"name": "holdout", "uri": "runs:/r/eval/h.parquet", "target": None, "slices": [], "max_rows": 10}]
    store.want_behaviour("d" * 64, "", None, challenger, holdout)
    claimed = store.claim_behaviour("d" * 64, lease_before)
    assert claimed is not None and store.finish_behaviour("d" * 64, claimed, "done", "", {"datasets": [{"name": "holdout"}]})
    assert store.refresh_behaviour("d" * 64) and not store.refresh_behaviour("d" * 64)  # once until it finishes
    refreshing = store.behaviour("d" * 64)
    assert refreshing.state == "pending" and refreshing.finished_at is None
    assert refreshing.result == {"datasets": [{"name": "holdout"}]}
