"""`checkpoint apply -f registry.yaml`: the plan, put into ONE batch request, against a real MLflow.

The CLI runs in a child process, as a CI job runs it; reviews go through the JSON API.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from mlflow import MlflowClient

from tests.support.governed import api, make_model, unique
from tests.support.processes import cli_process
from tests.support.processes import run_against as run


def _write(tmp_path: Path, document: dict | str) -> str:
    path = tmp_path / "registry.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return str(path)


def _requests(base: str) -> list[dict]:
    return api(base, "GET", "/requests?limit=200").json()["requests"]


def test_apply_opens_one_batch_and_running_it_again_finds_the_same_request(sqlite_checkpoint, mlflow_server, tmp_path):
    base = sqlite_checkpoint.url
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    fraud, (f1, f2, f3) = make_model(mlflow_server.url, versions=3)
    direct.set_registered_model_alias(fraud, "champion", f1)
    churn, (c1, c2) = make_model(mlflow_server.url)
    direct.transition_model_version_stage(churn, c1, "Production")
    prod = f"prod.{unique('fraud')}"
    path = _write(
        tmp_path,
        {
            "models": {
                fraud: {"aliases": {"champion": 2, "challenger": 3}},
                churn: {"stages": {"Production": 2}},
                prod: {"copy_of": f"{fraud}@champion"},
            }
        },
    )

    first = run(base, "apply", "-f", path, "--title", "Release 12", user="bob")
    assert first.returncode == 0, first.stderr
    out = first.stdout.splitlines()
    assert out[:4] == [
        f"~ {fraud} @champion: 1 → 2",
        f"+ {fraud} @challenger: (none) → 3",
        f"~ {churn} stage Production: 1 → 2",
        f"+ {prod} v1 from {fraud}/2",
    ]
    assert out[-1].startswith("Opened promote request #") and "(4 change(s), open)" in out[-1]
    (opened,) = _requests(base)
    assert opened["kind"] == "batch" and opened["title"] == "Release 12"
    assert [(c["model"], c["target"]) for c in opened["changes"]] == [
        (fraud, "alias:champion"),
        (fraud, "alias:challenger"),
        (churn, "stage:Production"),
        (prod, "model:" + prod),
    ]
    assert opened["description"].startswith(f"~ {fraud} @champion: 1 → 2")  # the plan, for the reviewers

    again = run(base, "apply", "-f", path, user="bob")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith(f"Found the open promote request #{opened['id']} ")
    assert len(_requests(base)) == 1  # the same request, not a second one

    decided = api(base, "POST", f"/requests/{opened['id']}/reviews", user="alice", json={"verdict": "approve"}).json()
    assert decided["state"] == "applied", decided["state_reason"]
    assert direct.get_registered_model(fraud).aliases == {"champion": f2, "challenger": f3}
    assert direct.get_model_version(churn, c2).current_stage == "Production"
    assert direct.get_latest_versions(prod)[0].source == f"models:/{fraud}/{f2}"

    settled = run(base, "apply", "-f", path, user="bob")
    assert settled.returncode == 0, settled.stderr
    assert settled.stdout.splitlines()[-2:] == [
        f"No changes. MLflow matches {path} (4 target(s)).",
        "Nothing to apply: no request opened.",
    ]
    assert len(_requests(base)) == 1


def test_apply_wait_waits_for_the_decision(sqlite_checkpoint, mlflow_server, tmp_path):
    base = sqlite_checkpoint.url
    name, (v1, v2) = make_model(mlflow_server.url)
    path = _write(tmp_path, {"models": {name: {"aliases": {"champion": 1, "challenger": 2}}}})
    waiting = cli_process(base, "apply", "-f", path, "--wait", "--interval", "0.2", "--timeout", "60", user="bob")
    try:
        opened = waiting.stdout.readline() if waiting.stdout else ""
        while opened and not opened.startswith("Opened promote request #"):
            opened = waiting.stdout.readline() if waiting.stdout else ""
        assert opened, waiting.stderr.read() if waiting.stderr else ""
        request_id = int(opened.split("#")[1].split()[0])
        # Approve only once the wait has seen the request open (its first progress line): an approval
        # before its first look would leave it nothing open to report.
        seen = waiting.stderr.readline() if waiting.stderr else ""
        while seen and not seen.startswith(f"promote request #{request_id}: open"):
            seen = waiting.stderr.readline() if waiting.stderr else ""
        assert seen, "the wait ended without reporting the request open"
        approved = api(base, "POST", f"/requests/{request_id}/reviews", user="alice", json={"verdict": "approve"})
        assert approved.json()["state"] == "applied"
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    assert out.splitlines()[-1].startswith(f"promote request #{request_id} applied: change 1 of 2:")
    assert seen.startswith(f"promote request #{request_id}: open")  # the progress, as `request wait` prints it


def test_a_file_with_errors_names_the_line_and_key_and_opens_nothing(sqlite_checkpoint, mlflow_server, tmp_path):
    base = sqlite_checkpoint.url
    bad = _write(tmp_path, "models:\n  m:\n    alias: {champion: 1}\n")
    shown = run(base, "apply", "-f", bad)
    assert shown.returncode == 1
    assert f"{bad}:3: models.m.alias: unknown key (expected one of aliases, stages, copy_of, workspace)" in shown.stderr
    assert "Traceback" not in shown.stderr

    name, (v1, v2) = make_model(mlflow_server.url)
    unplannable = _write(tmp_path, f"models:\n  {name}:\n    aliases:\n      champion: 1\n      challenger: 99\n")
    refused = run(base, "apply", "-f", unplannable)
    assert refused.returncode == 1
    assert f"! {unplannable}:5: {name} @challenger: version 99 of '{name}' does not exist" in refused.stdout
    assert "1 target(s) could not be planned: nothing opened" in refused.stderr
    assert _requests(base) == []
    assert run(base, "apply").returncode == 1  # no -f
