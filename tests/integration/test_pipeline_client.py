"""The pipeline helper: `checkpoint request promote / wait`, `checkpoint which`, and the Python API."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from checkpoint.client import CheckpointAPIError, CheckpointClient, WaitTimeout
from tests.support.governed import api, make_model
from tests.support.processes import cli_process as cli
from tests.support.processes import run_against as run


def test_promote_wait_which_cli(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (v1, v2) = make_model(mlflow_server.url)
    MlflowClient(tracking_uri=mlflow_server.url).set_registered_model_alias(name, "champion", v1)

    opened = run(
        base,
        "request",
        "promote",
        "--model",
        name,
        "--version",
        v2,
        "--alias",
        "champion",
        "--title",
        "Retrained on May data",
        "--description",
        "AUC +0.02",
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith("opened promote request #")
    request_id = int(opened.stdout.split("#", 1)[1].split(" ", 1)[0])
    assert f"{base}/checkpoint/requests/{request_id}" in opened.stdout

    again = run(
        base, "request", "promote", "--model", name, "--version", v2, "--alias", "champion", "--title", "Retrained on May data"
    )
    assert again.stdout.startswith(f"already open: promote request #{request_id} ")

    waiting = cli(base, "request", "wait", str(request_id), "--interval", "0.2", "--timeout", "60")
    decided = api(base, "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve", "comment": "ok"})
    assert decided.json()["state"] == "applied"
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert f"promote request #{request_id} applied" in out

    which = run(base, "which", name, "--alias", "champion")
    assert (which.returncode, which.stdout.strip()) == (0, v2)
    nothing = run(base, "which", name, "--stage", "Production")
    assert nothing.returncode == 1 and "no version" in nothing.stderr


def test_wait_exit_codes_rejected_and_timeout(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (v1,) = make_model(mlflow_server.url, versions=1)
    client = CheckpointClient(base, username="alice", password="x")
    made = client.promote(name, v1, stage="Production", title="first production model")
    assert made["created"] is True and made["state"] == "open"

    timed_out = run(base, "request", "wait", str(made["id"]), "--interval", "0.1", "--timeout", "0.3")
    assert timed_out.returncode == 3 and "still open" in timed_out.stderr
    with pytest.raises(WaitTimeout):
        client.wait(made["id"], timeout=0.2, interval=0.05)

    api(base, "POST", f"/requests/{made['id']}/reviews", json={"verdict": "reject", "comment": "not yet"})
    rejected = run(base, "request", "wait", str(made["id"]), "--interval", "0.1")
    assert rejected.returncode == 1 and "rejected" in rejected.stdout
    assert "rejected by bob: not yet" in rejected.stdout
    assert client.wait(made["id"])["state"] == "rejected"


def test_client_errors_are_clear(sqlite_checkpoint):
    client = CheckpointClient(sqlite_checkpoint.url)
    with pytest.raises(CheckpointAPIError) as missing:
        client.get(999999)
    assert missing.value.status == 404 and "does not exist" in missing.value.message
    with pytest.raises(ValueError, match="exactly one"):
        client.promote("m", "1", stage="Production", alias="champion")
    broken = run(sqlite_checkpoint.url, "request", "promote", "--model", "m", "--version", "1")
    assert broken.returncode == 2 and "exactly one of --stage, --alias or --copy-to" in broken.stderr


def test_request_list_awaiting_me_and_mine(sqlite_checkpoint, mlflow_server):
    """`checkpoint request list --awaiting-me` / `--mine`: bob sees alice's request waiting for him."""
    base = sqlite_checkpoint.url
    name, (_v1, v2) = make_model(mlflow_server.url)
    opened = run(base, "request", "promote", "--model", name, "--version", v2, "--alias", "champion", "--title", "Go\x1b[2J live")
    assert opened.returncode == 0, opened.stderr
    request_id = int(opened.stdout.split("#", 1)[1].split(" ", 1)[0])

    waiting = run(base, "request", "list", "--awaiting-me", user="bob")
    assert waiting.returncode == 0, waiting.stderr
    line = next(line for line in waiting.stdout.splitlines() if line.startswith(f"#{request_id} "))
    assert "open" in line and "0/1 approvals, by alice" in line and f"/checkpoint/requests/{request_id}" in line
    assert "\x1b" not in waiting.stdout  # the title's escape sequence is not sent to the terminal

    own = run(base, "request", "list", "--awaiting-me")  # alice: her own request does not wait for her
    assert own.returncode == 0, own.stderr
    assert f"#{request_id} " not in own.stdout
    mine = run(base, "request", "list", "--mine", "--json")
    assert request_id in [r["id"] for r in json.loads(mine.stdout)["requests"]]
    assert run(base, "request", "list", "--mine", user="bob").stdout == ""  # bob opened nothing here

    api(base, "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"})
    after = run(base, "request", "list", "--awaiting-me", user="bob")
    assert f"#{request_id} " not in after.stdout


def test_wait_prints_progress_once_per_change_and_quiet_does_not(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (v1,) = make_model(mlflow_server.url, versions=1)
    made = CheckpointClient(base, username="alice", password="x").promote(name, v1, alias="champion")

    timed_out = run(base, "request", "wait", str(made["id"]), "--interval", "0.05", "--timeout", "0.5")
    assert timed_out.returncode == 3
    lines = [line for line in timed_out.stderr.splitlines() if line.startswith(f"promote request #{made['id']}:")]
    assert lines == [f"promote request #{made['id']}: open — approvals 0/1"], timed_out.stderr  # ~10 polls, one line

    quiet = run(base, "request", "wait", str(made["id"]), "--interval", "0.05", "--timeout", "0.2", "--quiet")
    assert quiet.returncode == 3 and "approvals" not in quiet.stderr and "still open" in quiet.stderr


def test_promote_copy_to_prod(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (v1,) = make_model(mlflow_server.url, versions=1)
    opened = run(base, "request", "promote", "--model", name, "--version", v1, "--copy-to", f"prod.{name}")
    assert opened.returncode == 0, opened.stderr
    request_id = int(opened.stdout.split("#", 1)[1].split(" ", 1)[0])
    asked = api(base, "GET", f"/requests/{request_id}").json()
    assert asked["model"] == f"prod.{name}" and asked["change"]["source"] == f"models:/{name}/{v1}"
    assert asked["kind"] == "create_version"
    both = run(base, "request", "promote", "--model", name, "--version", v1, "--alias", "a", "--copy-to", "prod.x")
    assert both.returncode == 2 and "exactly one of --stage, --alias or --copy-to" in both.stderr
