"""`checkpoint plan -f registry.yaml`: desired state against a real MLflow, read through Checkpoint.

Registry set-up is made straight on MLflow (the changes a plan must notice as drift); the plan is
asked through the CLI in a child process, as a CI job runs it, and through the JSON API.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from checkpoint import create_app
from checkpoint.client import CheckpointClient
from tests.support.apps import live
from tests.support.governed import api, make_model, unique
from tests.support.openapi import check_answer
from tests.support.processes import run_against as run
from tests.support.workspaces import Direct, make_workspace


def _direct(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def _write(tmp_path: Path, document: dict | str, name: str = "registry.yaml") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return str(path)


@pytest.fixture
def site(sqlite_checkpoint, mlflow_server):
    """fraud (3 versions: champion=1, legacy=2), churn (v1 in Production), prod.fraud (a copy of fraud/1)."""
    direct = _direct(mlflow_server)
    fraud, (f1, f2, f3) = make_model(mlflow_server.url, versions=3)
    direct.set_registered_model_alias(fraud, "champion", f1)
    direct.set_registered_model_alias(fraud, "legacy", f2)
    churn, (c1, c2) = make_model(mlflow_server.url)
    direct.transition_model_version_stage(churn, c1, "Production")
    prod = f"prod.{unique('fraud')}"
    direct.create_registered_model(prod)
    direct.copy_model_version(f"models:/{fraud}/{f1}", prod)
    return {"base": sqlite_checkpoint.url, "fraud": fraud, "churn": churn, "prod": prod, "direct": direct}


def _desired(site: dict) -> dict:
    return {
        "models": {
            site["fraud"]: {"aliases": {"champion": 2, "challenger": "3", "legacy": None}},
            site["churn"]: {"stages": {"Production": 2}},
            site["prod"]: {"copy_of": f"{site['fraud']}@champion"},
        }
    }


def test_plan_shows_every_kind_of_difference_and_exits_like_terraform(site, tmp_path):
    path = _write(tmp_path, _desired(site))
    fraud, churn, prod = site["fraud"], site["churn"], site["prod"]

    shown = run(site["base"], "plan", "-f", path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"~ {fraud} @champion: 1 → 2",
        f"+ {fraud} @challenger: (none) → 3",
        f"- {fraud} @legacy: 2 → (none)",
        f"~ {churn} stage Production: 1 → 2",
        f"+ {prod} v2 from {fraud}/2",
        "",
        "Plan: 2 to add, 2 to change, 1 to remove.",
    ]
    assert run(site["base"], "plan", "-f", path, "--exit-code").returncode == 2

    # Nothing was written: the plan only read.
    direct = site["direct"]
    assert direct.get_model_version_by_alias(fraud, "champion").version == "1"
    assert [v.version for v in direct.search_model_versions(f"name = '{prod}'")] == ["1"]


def test_json_plan_is_the_documented_shape_and_names_each_change(site, tmp_path, client):
    path = _write(tmp_path, _desired(site))
    answer = run(site["base"], "plan", "-f", path, "--json", "--exit-code")
    assert answer.returncode == 2, answer.stderr
    plan = json.loads(answer.stdout)
    check_answer(client.get("/checkpoint/api/v1/openapi.json").get_json(), "/plan", "post", "200", plan)
    assert plan["format"] == 1 and plan["drift"] is True
    assert plan["counts"] == {"create": 2, "update": 2, "delete": 1, "no-op": 0, "error": 0}
    fraud, churn, prod = site["fraud"], site["churn"], site["prod"]
    by_target = {(e["model"], e["target"]): e for e in plan["entries"]}
    assert by_target[(fraud, "alias:champion")]["changes"] == [
        {"kind": "set_alias", "name": fraud, "alias": "champion", "version": "2"}
    ]
    assert by_target[(fraud, "alias:legacy")]["changes"] == [{"kind": "delete_alias", "name": fraud, "alias": "legacy"}]
    assert by_target[(churn, "stage:Production")]["changes"] == [
        {"kind": "transition", "name": churn, "version": "2", "stage": "Production", "archive_existing_versions": True}
    ]
    copy = by_target[(prod, f"model:{prod}")]
    assert (copy["action"], copy["current"], copy["desired"], copy["next_version"]) == ("create", ["1"], "2", "2")
    # The copy follows the champion the file declares (2, not MLflow's 1), pinned for apply.
    assert copy["changes"] == [{"kind": "create_version", "name": prod, "source": f"models:/{fraud}/2"}]


def test_open_request_is_marked_and_matching_state_is_no_changes_until_mlflow_drifts(site, tmp_path):
    fraud, churn, prod, direct = site["fraud"], site["churn"], site["prod"], site["direct"]
    path = _write(tmp_path, _desired(site))
    opened = CheckpointClient(site["base"], username="alice", password="x").promote(fraud, "2", alias="champion")
    assert opened["state"] == "open"

    shown = run(site["base"], "plan", "-f", path)
    assert f"~ {fraud} @champion: 1 → 2  (open request #{opened['id']} moves it to 2)" in shown.stdout.splitlines()
    as_json = json.loads(run(site["base"], "plan", "-f", path, "--json").stdout)
    mark = next(e for e in as_json["entries"] if e["target"] == "alias:champion")["open_requests"]
    assert [(m["id"], m["state"], m["matches"]) for m in mark] == [(opened["id"], "open", True)]
    assert mark[0]["url"].endswith(f"/checkpoint/requests/{opened['id']}")

    # MLflow is made to match directly: no drift, and the open request is still shown on its target.
    direct.set_registered_model_alias(fraud, "champion", "2")
    direct.set_registered_model_alias(fraud, "challenger", "3")
    direct.delete_registered_model_alias(fraud, "legacy")
    direct.transition_model_version_stage(churn, "2", "Production", archive_existing_versions=True)
    direct.copy_model_version(f"models:/{fraud}/2", prod)
    held = run(site["base"], "plan", "-f", path, "--exit-code")
    assert held.returncode == 0, held.stdout + held.stderr
    assert held.stdout.splitlines() == [
        f"  {fraud} @champion: 2 as declared  (open request #{opened['id']} moves it to 2)",
        "",
        f"No changes. MLflow matches {path} (5 target(s)).",
    ]

    # A change made straight in MLflow, around Checkpoint, is drift.
    direct.set_registered_model_alias(fraud, "champion", "3")
    drifted = run(site["base"], "plan", "-f", path, "--exit-code")
    assert drifted.returncode == 2
    assert f"~ {fraud} @champion: 3 → 2  (open request #{opened['id']} moves it to 2)" in drifted.stdout.splitlines()
    assert drifted.stdout.splitlines()[-1] == "Plan: 0 to add, 1 to change, 0 to remove."


def test_no_changes_and_a_copy_registered_from_the_same_files(sqlite_checkpoint, mlflow_server, tmp_path):
    direct = _direct(mlflow_server)
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v2)
    prod = f"prod.{unique('same')}"
    direct.create_registered_model(prod)
    # Registered from the same storage location, not with a models:/ source: still the same files.
    held = direct.get_model_version(name, v2)
    direct.create_model_version(prod, held.source, run_id=held.run_id)
    path = _write(tmp_path, {"models": {name: {"aliases": {"champion": v2, "gone": None}}, prod: {"copy_of": f"{name}/{v2}"}}})

    shown = run(sqlite_checkpoint.url, "plan", "-f", path, "--exit-code")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.splitlines() == [f"No changes. MLflow matches {path} (3 target(s))."]
    plan = CheckpointClient(sqlite_checkpoint.url, username="alice", password="x").plan(
        {"models": {prod: {"copy_of": f"{name}/{v2}"}}}
    )
    assert plan["entries"][0]["action"] == "no-op" and plan["entries"][0]["message"] == f"the same files as {name}/{v2}"

    # A copy of the older version is behind the declared one.
    direct.copy_model_version(f"models:/{name}/{v1}", prod)
    behind = run(sqlite_checkpoint.url, "plan", "-f", path, "--exit-code")
    assert behind.returncode == 2
    assert f"+ {prod} v3 from {name}/{v2}" in behind.stdout.splitlines()


def test_a_copy_with_the_same_content_is_up_to_date(sqlite_checkpoint, mlflow_server, tmp_path):
    """Same files in two runs: the content digest matches, though source and location differ."""
    direct = _direct(mlflow_server)
    name, prod = unique("digest"), f"prod.{unique('digest')}"
    experiment = direct.get_experiment_by_name("governance-tests") or direct.get_experiment(
        direct.create_experiment("governance-tests")
    )
    made = {}
    for model, text in ((name, "flavors: {}\n"), (prod, "flavors: {}\n"), (f"{prod}-other", "flavors: {other: 1}\n")):
        run_ = direct.create_run(experiment.experiment_id)
        direct.log_text(run_.info.run_id, text, "model/MLmodel")
        direct.create_registered_model(model)
        made[model] = direct.create_model_version(model, f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id)
    cp = CheckpointClient(sqlite_checkpoint.url, username="alice", password="x")
    same = cp.plan({"models": {prod: {"copy_of": f"{name}/1"}}})["entries"][0]
    assert (same["action"], same["message"]) == ("no-op", f"the same content as {name}/1")
    other = cp.plan({"models": {f"{prod}-other": {"copy_of": f"{name}/1"}}})["entries"][0]
    assert (other["action"], other["next_version"], other["message"]) == ("create", "2", f"from {name}/1")


def test_unknown_models_and_versions_are_reported_errors_not_tracebacks(sqlite_checkpoint, mlflow_server, tmp_path):
    name, (v1, _v2) = make_model(mlflow_server.url)
    missing = unique("missing")
    text = (
        "models:\n"
        f"  {name}:\n"
        "    aliases:\n"
        f"      champion: {v1}\n"
        "      challenger: 99\n"
        f"  {missing}:\n"
        "    stages: {Production: 1}\n"
        f"  prod.{missing}:\n"
        f"    copy_of: {name}@nobody\n"
    )
    path = _write(tmp_path, text)
    shown = run(sqlite_checkpoint.url, "plan", "-f", path, "--exit-code")
    assert shown.returncode == 1
    assert "Traceback" not in shown.stderr + shown.stdout
    lines = shown.stdout.splitlines()
    assert f"+ {name} @champion: (none) → {v1}" in lines
    assert f"! {path}:5: {name} @challenger: version 99 of '{name}' does not exist" in lines
    assert f"! {path}:7: {missing} stage Production: registered model '{missing}' does not exist" in lines
    assert f"! {path}:9: prod.{missing}: the copy's source the version of '{name}' with alias 'nobody' does not exist" in lines
    assert lines[-1] == "Plan: 1 to add, 0 to change, 0 to remove. 3 target(s) could not be planned."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models:\n  m:\n    aliases:\n      champion: seven\n",
            'registry.yaml:4: models.m.aliases.champion: expected a version number or null, got "seven"',
        ),
        (
            "models:\n  m:\n    stages:\n      Archived: 2\n",
            "registry.yaml:4: models.m.stages.Archived: unknown stage (expected one of Staging, Production)",
        ),
        (
            "models:\n  m:\n    alias: {champion: 1}\n",
            "registry.yaml:3: models.m.alias: unknown key (expected one of aliases, stages, copy_of, workspace)",
        ),
        (
            "models:\n  m: {aliases: {a: 1}}\n  m: {aliases: {a: 2}}\n",
            "registry.yaml:3: models.m: duplicate key (each target is declared once)",
        ),
        (
            "models:\n  m:\n    copy_of: 3\n",
            'registry.yaml:3: models.m.copy_of: expected a model reference such as fraud-detector@champion, got "3"',
        ),
        (
            "models:\n  m:\n    copy_of: m@\n",
            'registry.yaml:3: models.m.copy_of: expected NAME@ALIAS, NAME/VERSION, NAME/STAGE or NAME/latest, got "m@"',
        ),
        ("models: [\n", "registry.yaml:2: not valid YAML"),
    ],
)
def test_a_bad_file_names_the_line_and_key_and_asks_nothing(sqlite_checkpoint, tmp_path, text, message):
    path = _write(tmp_path, text)
    shown = run(sqlite_checkpoint.url, "plan", "-f", path, "--exit-code")
    assert shown.returncode == 1
    assert message.replace("registry.yaml", path) in shown.stderr
    assert "Traceback" not in shown.stderr


def test_plan_cli_failures_exit_1_never_2(sqlite_checkpoint, tmp_path):
    """2 means drift to a CI job: a missing file, no -f or no address must not look like it."""
    assert run(sqlite_checkpoint.url, "plan", "--exit-code").returncode == 1
    gone = run(sqlite_checkpoint.url, "plan", "-f", str(tmp_path / "nope.yaml"), "--exit-code")
    assert gone.returncode == 1 and "cannot read" in gone.stderr
    path = _write(tmp_path, {"models": {"m": {"aliases": {"champion": 1}}}})
    unreachable = run("http://127.0.0.1:9", "plan", "-f", path, "--exit-code")
    assert unreachable.returncode == 1 and "cannot reach Checkpoint" in unreachable.stderr


def test_plan_api_refuses_a_bad_desired_state_with_its_problems(sqlite_checkpoint, client):
    document = client.get("/checkpoint/api/v1/openapi.json").get_json()
    answer = api(sqlite_checkpoint.url, "POST", "/plan", json={"desired": {"models": {"m": {"aliases": {"c": "x"}}}}})
    assert answer.status_code == 400
    check_answer(document, "/plan", "post", "400", answer.json())
    assert answer.json()["problems"] == [
        {"key": "models.m.aliases.c", "line": None, "message": 'expected a version number or null, got "x"'}
    ]
    assert api(sqlite_checkpoint.url, "POST", "/plan", json={"models": {}}).status_code == 400


def _documented_workflow() -> dict:
    text = (Path(__file__).parents[2] / "docs" / "pipelines.md").read_text()
    block = re.search(r"```yaml\n(name: registry drift\n.*?)```", text, re.S)
    assert block is not None, "docs/pipelines.md lost its drift-alarm workflow"
    return yaml.safe_load(block.group(1))


def test_the_documented_drift_alarm_runs_as_written(site, tmp_path):
    """Every `run` of docs/pipelines.md's workflow, in a checkout holding registry.yaml: it passes
    when MLflow matches, fails with the drift annotation when MLflow was changed directly."""
    workflow = _documented_workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true (GitHub reads it as "on")
    assert triggers["schedule"] and "workflow_dispatch" in triggers
    steps = [s["run"] for s in workflow["jobs"]["plan"]["steps"] if "run" in s]
    install, scripts = steps[0], steps[1:]
    (project,) = set(packages_distributions()["checkpoint"])
    assert install == f"pip install {project}"  # what the job installs is this package
    fraud, direct = site["fraud"], site["direct"]
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _write(checkout, {"models": {fraud: {"aliases": {"champion": 1, "legacy": 2}}}})
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CHECKPOINT_URL": site["base"],
        "MLFLOW_TRACKING_USERNAME": "ci",
        "MLFLOW_TRACKING_PASSWORD": "x",
    }

    def job() -> list[subprocess.CompletedProcess]:
        return [
            subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
            for script in scripts
        ]

    (quiet,) = job()
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "No changes." in quiet.stdout and json.loads((checkout / "plan.json").read_text())["drift"] is False

    direct.set_registered_model_alias(fraud, "champion", "3")  # around Checkpoint
    (alarm,) = job()
    assert alarm.returncode == 2
    assert f"~ {fraud} @champion: 3 → 1" in alarm.stdout
    assert "::error::MLflow differs from registry.yaml (drift)" in alarm.stdout
    assert json.loads((checkout / "plan.json").read_text())["counts"]["update"] == 1


def test_workspaces_top_level_and_per_model(mlflow_workspaces_server, sqlite_url, tmp_path):
    """The same model name in two MLflow workspaces: each file reads (and would change) the one it names."""
    url = mlflow_workspaces_server.url
    team = make_workspace(url, "plan")
    name = unique("ws")
    Direct(url, "").seed(name, production=False, label="default")
    Direct(url, team).seed(name, production=True, label=team)  # champion = 1 there only
    app = create_app({"registry_url": url, "database_url": sqlite_url, "data_dir": tmp_path})
    with live(app, sqlite_url) as served:
        in_team = _write(tmp_path, {"workspace": team, "models": {name: {"aliases": {"champion": 2}}}}, "team.yaml")
        shown = run(served.url, "plan", "-f", in_team, "--json")
        (entry,) = json.loads(shown.stdout)["entries"]
        assert (entry["workspace"], entry["action"], entry["current"]) == (team, "update", ["1"])
        assert entry["changes"] == [{"kind": "set_alias", "name": name, "alias": "champion", "version": "2", "workspace": team}]
        assert run(served.url, "plan", "-f", in_team).stdout.startswith(f"~ {name} (workspace {team}) @champion: 1 → 2")

        per_model = {"workspace": team, "models": {name: {"workspace": "default", "aliases": {"champion": 2}}}}
        in_default = run(served.url, "plan", "-f", _write(tmp_path, per_model, "default.yaml"))
        assert in_default.stdout.splitlines()[0] == f"+ {name} @champion: (none) → 2"
