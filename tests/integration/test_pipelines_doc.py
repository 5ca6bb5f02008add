"""docs/pipelines.md as written: its token command, policy, train.py and GitHub Actions workflows
(taken from the page by ``tests.support.workflows``) against a real MLflow and Checkpoint; and the
demo's pipeline, scripts/demo-pipeline, against `checkpoint demo` as a user runs it.

The drift alarm's workflow is run by tests/integration/test_plan.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from mlflow import MlflowClient

from checkpoint.demo.mlflow_server import free_port
from tests.support.apps import ROOT
from tests.support.governed import api, make_model, unique
from tests.support.processes import run_against
from tests.support.workflows import block, blocks, installs_this_project, run_job, triggers, workflow

REVIEWER = "bob"


def _bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env={**os.environ, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def model_name() -> str:
    return unique("churn")


@pytest.fixture
def checkpoint_config(tmp_path, model_name) -> dict:
    """The page's policy, for this test's model; bob may give his tokens the review scope."""
    policy = block("yaml", "# policy.yaml: churn-model's champion needs one approval and a successful ci/eval")
    assert yaml.safe_load(policy)["rules"][0]["required_statuses"] == ["ci/eval"]
    path = tmp_path / "policy.yaml"
    path.write_text(policy.replace('"churn-model"', f'"{model_name}"'))
    return {"policy_file": path, "token_elevated_users": frozenset({REVIEWER})}


@pytest.fixture
def pipeline(sqlite_checkpoint, mlflow_server, model_name, tmp_path):
    """A checkout holding the page's train.py and a deploy.sh, the pipeline's token made with the
    page's command, and the GitHub context the workflow reads."""
    (token_command,) = [line for line in blocks("bash") if line.startswith("checkpoint token create")]
    made = _bash(token_command, tmp_path, CHECKPOINT_URL=sqlite_checkpoint.url, MLFLOW_TRACKING_USERNAME="ci-bot")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("cpt_") and "'churn nightly' (read, request, status)" in made.stderr
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "train.py").write_text(block("python", blocks("python")[0].splitlines()[0]))
    deploy = checkout / "deploy.sh"  # the user's own deployment: here, it checks it got a model
    deploy.write_text('#!/bin/sh\nset -e\ntest -f "$1/MLmodel"\necho "deploying $1"\n')
    deploy.chmod(0o755)
    context = {
        "vars": {"CHECKPOINT_URL": sqlite_checkpoint.url},
        "secrets": {"CHECKPOINT_TOKEN": token, "MLFLOW_USERNAME": "ci-bot", "MLFLOW_PASSWORD": "x"},
        "github": {"server_url": "https://github.example", "repository": "acme/churn", "run_id": "41", "sha": "0" * 40},
    }
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    return {"base": sqlite_checkpoint.url, "checkout": checkout, "context": context, "direct": direct, "token": token}


def _reviewer_line(verb: str) -> str:
    """The page's `checkpoint request approve|reject 12 ...` line (12 stands for the request's id)."""
    (commands,) = [b for b in blocks("bash") if b.startswith("checkpoint request list --awaiting-me")]
    (line,) = [line for line in commands.splitlines() if line.startswith(f"checkpoint request {verb} 12 ")]
    return line


def _review(pipeline: dict, verb: str):
    """The reviewer, from a terminal, signed in as bob: lists what awaits them, then acts on it."""

    def act(outputs: dict[str, dict[str, str]]) -> None:
        rid = outputs["request"]["id"]
        (commands,) = [b for b in blocks("bash") if b.startswith("checkpoint request list --awaiting-me")]
        listed = _bash(
            commands.splitlines()[0], pipeline["checkout"], CHECKPOINT_URL=pipeline["base"], MLFLOW_TRACKING_USERNAME=REVIEWER
        )
        assert listed.returncode == 0 and listed.stdout.startswith(f"#{rid} "), listed.stdout + listed.stderr
        line = _reviewer_line(verb).replace(" 12 ", f" {rid} ")
        done = _bash(line, pipeline["checkout"], CHECKPOINT_URL=pipeline["base"], MLFLOW_TRACKING_USERNAME=REVIEWER)
        assert done.returncode == 0, done.stderr

    return act


def test_the_page_names_what_it_runs():
    flow = workflow("train and promote")
    assert set(triggers(flow)) == {"schedule", "workflow_dispatch"}
    steps = flow["jobs"]["train"]["steps"]
    assert any(installs_this_project(s.get("run", "")) for s in steps)
    assert [s.get("name") for s in steps if "run" in s][1:] == [
        "train and register",
        "open the promote request",
        "post the evaluation",
        "wait for the review",
        "deploy",
    ]
    assert flow["jobs"]["train"]["env"]["MODEL"] == "churn-model"


def test_the_documented_pipeline_trains_promotes_waits_and_deploys(pipeline, model_name, mlflow_server):
    """The page's workflow run step by step; the reviewer approves before the wait starts (the
    evaluation's success is already there): the approval applies it, the wait exits 0, deploy runs."""
    job = run_job(
        workflow("train and promote"),
        "train",
        pipeline["checkout"],
        pipeline["context"],
        env={"MODEL": model_name},
        before={"wait for the review": _review(pipeline, "approve")},
    )
    assert job.ok, [(s.name, s.returncode, s.stderr[-2000:]) for s in job.steps]
    version = job.step("train and register").outputs["version"]
    rid = job.step("open the promote request").outputs["id"]
    assert f"opened promote request #{rid} (open)" in job.step("open the promote request").stderr
    posted = job.step("post the evaluation").stdout.splitlines()
    assert posted == [f"ci/eval is success on request #{rid}", f"request #{rid} is open"]
    assert job.step("wait for the review").stdout.startswith(f"promote request #{rid} applied")
    assert job.step("deploy").stdout.strip().endswith("deploying build/model")
    assert pipeline["direct"].get_registered_model(model_name).aliases == {"champion": version}

    shown = api(pipeline["base"], "GET", f"/requests/{rid}").json()
    assert (shown["author"], shown["state"]) == ("ci-bot", "applied"), "the request is the token owner's"
    (status,) = shown["statuses"]
    run_url = "https://github.example/acme/churn/actions/runs/41"
    assert (status["context"], status["state"], status["target_url"]) == ("ci/eval", "success", run_url)
    assert status["description"] == f"val_auc {job.step('train and register').outputs['val_auc']}"
    assert [r["reviewer"] for r in shown["reviews"]] == [REVIEWER]


def test_a_failed_evaluation_ends_the_job_and_blocks_the_request(pipeline, model_name):
    job = run_job(
        workflow("train and promote"),
        "train",
        pipeline["checkout"],
        pipeline["context"],
        env={"MODEL": model_name, "MIN_AUC": "1.01"},
    )
    assert job.ran() == ["train and register", "open the promote request", "post the evaluation"]
    assert job.step("post the evaluation").returncode == 1
    rid = job.step("open the promote request").outputs["id"]
    assert f"ci/eval is failure on request #{rid}" in job.step("post the evaluation").stdout
    shown = api(pipeline["base"], "GET", f"/requests/{rid}").json()
    assert (shown["state"], shown["blocked_by_statuses"]) == ("open", ["ci/eval"])
    assert "champion" not in pipeline["direct"].get_registered_model(model_name).aliases


def test_a_rejection_ends_the_wait_with_the_reason_and_nothing_is_deployed(pipeline, model_name):
    job = run_job(
        workflow("train and promote"),
        "train",
        pipeline["checkout"],
        pipeline["context"],
        env={"MODEL": model_name},
        before={"wait for the review": _review(pipeline, "reject")},
    )
    assert job.ran()[-1] == "wait for the review" and job.step("wait for the review").returncode == 1
    waited = job.step("wait for the review").stdout
    assert "rejected" in waited and f"rejected by {REVIEWER}: Not during the sale" in waited
    assert "champion" not in pipeline["direct"].get_registered_model(model_name).aliases


def test_the_documented_gitlab_job_waits_for_the_reviewer_and_deploys(pipeline, model_name):
    """.gitlab-ci.yml's script, its lines in one shell as GitLab runs them: it opens the request,
    posts the evaluation and waits; the reviewer approves (the page's line) while it waits."""
    (job,) = yaml.safe_load(block("yaml", "# .gitlab-ci.yml")).values()
    install, *lines = job["script"]
    assert installs_this_project(install) and job["variables"] == {"MODEL": "churn-model"}
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MODEL": model_name,
        "CHECKPOINT_URL": pipeline["base"],
        "CHECKPOINT_TOKEN": pipeline["token"],
        "MLFLOW_TRACKING_USERNAME": "ci-bot",
        "MLFLOW_TRACKING_PASSWORD": "x",
        "CI_JOB_URL": "https://gitlab.example/acme/churn/-/jobs/7",
        "CI_PIPELINE_SOURCE": "schedule",
    }
    script = subprocess.Popen(
        ["bash", "-e", "-c", "\n".join(lines)],
        cwd=pipeline["checkout"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # until the job has posted its evaluation: then it waits for a review
            found = api(pipeline["base"], "GET", "/requests", params={"model": model_name}).json()["requests"]
            shown = api(pipeline["base"], "GET", f"/requests/{found[0]['id']}").json() if found else {}
            if [s["state"] for s in shown.get("statuses", ())] == ["success"]:
                break
            assert script.poll() is None and time.monotonic() < deadline, script.communicate(timeout=30)
            time.sleep(0.5)
        assert shown["state"] == "open" and script.poll() is None, "waiting for the review"
        _review(pipeline, "approve")({"request": {"id": str(shown["id"])}})
        out, err = script.communicate(timeout=180)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait(timeout=10)
    assert script.returncode == 0, out + err
    assert f"promote request #{shown['id']} applied" in out and out.strip().endswith("deploying build/model")
    assert shown["statuses"][0]["target_url"] == "https://gitlab.example/acme/churn/-/jobs/7"
    version = pipeline["direct"].get_registered_model(model_name).aliases["champion"]
    assert f"Nightly retrain {model_name} v{version}" == shown["title"]


def _gitops_checkout(tmp_path: Path, document: dict) -> Path:
    checkout = tmp_path / "registry"
    checkout.mkdir(exist_ok=True)
    (checkout / "registry.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return checkout


def test_the_documented_pull_request_plan_passes_drift_and_fails_errors(pipeline, mlflow_server, tmp_path):
    """plan.yml in a registry repository: no change (0) and a proposed change (2) pass with the
    plan in the job's summary; a version MLflow does not have fails the check (1)."""
    flow = workflow("registry plan")
    assert triggers(flow)["pull_request"]["paths"] == ["registry.yaml"]
    name, (v1, v2) = make_model(mlflow_server.url)
    pipeline["direct"].set_registered_model_alias(name, "champion", v1)

    def pull_request(champion: int) -> object:
        checkout = _gitops_checkout(tmp_path, {"models": {name: {"aliases": {"champion": champion}}}})
        return run_job(flow, "plan", checkout, pipeline["context"])

    same = pull_request(int(v1))
    assert same.ok and "::notice::MLflow already matches registry.yaml" in same.steps[0].stdout
    assert "No changes." in same.summary

    change = pull_request(int(v2))
    assert change.ok, change.steps[0].stderr
    assert "::notice::merging asks Checkpoint for the changes above" in change.steps[0].stdout
    assert f"~ {name} @champion: {v1} → {v2}" in change.summary and change.summary.startswith("### checkpoint plan\n```\n")

    unknown = pull_request(99)
    assert not unknown.ok and unknown.steps[0].returncode == 1
    assert "registry.yaml" in unknown.steps[0].stdout + unknown.steps[0].stderr


def test_the_documented_apply_runs_as_written(pipeline, mlflow_server, tmp_path):
    """apply.yml: one request for the plan's changes; run again, the same request."""
    flow = workflow("registry apply")
    assert triggers(flow)["push"] == {"branches": ["main"], "paths": ["registry.yaml"]}
    name, (v1, v2) = make_model(mlflow_server.url)
    pipeline["direct"].set_registered_model_alias(name, "champion", v1)
    checkout = _gitops_checkout(tmp_path, {"models": {name: {"aliases": {"champion": int(v2)}}}})
    first = run_job(flow, "apply", checkout, pipeline["context"])
    again = run_job(flow, "apply", checkout, pipeline["context"])
    assert first.ok and again.ok, first.steps[0].stderr + again.steps[0].stderr
    opened = api(pipeline["base"], "GET", "/requests", params={"model": name, "state": "open"}).json()["requests"]
    assert len(opened) == 1, opened
    assert pipeline["direct"].get_registered_model(name).aliases == {"champion": v1}, "nothing applied before review"


# -- the demo's pipeline ------------------------------------------------------------------


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the demo stops both of its servers
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _demo_running(tmp_path: Path, port: int, mlflow_port: int) -> subprocess.Popen:
    log = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = ["--port", str(port), "--mlflow-port", str(mlflow_port), "--data-dir", str(tmp_path / "data")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "checkpoint.cli", "demo", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 240
    while "Press Ctrl-C" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"the demo did not come up:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)
    return process


def test_the_demo_pipeline_does_the_whole_loop_with_tokens_and_plan_shows_the_drift(tmp_path):
    """scripts/demo-pipeline against `checkpoint demo`: tokens, train and register, promote,
    pending status, the reviewer's approval by her token, success applies, the wait ends 0;
    registry.yaml matches; a change straight on MLflow; the plan shows it, exit 2."""
    port, mlflow_port = free_port(), free_port()
    while mlflow_port == port:
        mlflow_port = free_port()
    demo = _demo_running(tmp_path, port, mlflow_port)
    url, mlflow_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mlflow_port}"
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHECKPOINT_", "MLFLOW_TRACKING_"))}
        ran = subprocess.run(
            [
                "bash",
                str(ROOT / "scripts" / "demo-pipeline"),
                "--url",
                url,
                "--mlflow-url",
                mlflow_url,
                "--work-dir",
                str(tmp_path / "w"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        transcript = ran.stdout + ran.stderr
        assert ran.returncode == 0, transcript
        # The seeded churn-model has 3 versions: the pipeline's is the fourth, the demo's fourth request.
        assert "version=4" in ran.stdout
        assert "opened promote request #4 (open)" in ran.stderr
        assert "promote request #4: open — approvals 1/1 — waiting for status(es) ci/eval" in ran.stdout
        assert "  [pipeline] promote request #4 applied: alias 'champion' of 'churn-model' now points to version 4" in ran.stdout
        assert "deploying churn-model v4" in ran.stdout
        assert "No changes. MLflow matches" in ran.stdout
        assert "~ churn-model @champion: 3 → 4\n\nPlan: 0 to add, 1 to change, 0 to remove.\nexit code 2" in ran.stdout
        assert "Traceback" not in transcript and "UserWarning" not in transcript

        shown = requests.get(f"{url}/checkpoint/api/v1/requests/4", auth=("visitor", "x"), timeout=30).json()
        assert (shown["author"], shown["state"]) == ("ci-bot", "applied")
        assert [(r["reviewer"], r["verdict"]) for r in shown["reviews"]] == [("ana.silva", "approve")]
        assert [(s["context"], s["state"]) for s in shown["statuses"]] == [("ci/eval", "success")]
        direct = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        assert direct.get_registered_model("churn-model").aliases == {"champion": "3"}, "the direct change stands"
        tokens = run_against(url, "token", "list", user="ana.silva").stdout
        assert "reviews from the terminal  [read, review]" in tokens
    finally:
        _stop(demo)
