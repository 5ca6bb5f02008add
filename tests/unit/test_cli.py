"""The `checkpoint request promote` command without a server: the client is replaced by one that
records what it was asked, so what the command reads from its arguments and stdin can be seen."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

from checkpoint import client as client_module
from checkpoint.cli import main


@pytest.fixture
def promoted(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    def promote(self, model, version, **kwargs):
        calls.append({"model": model, "version": version, **kwargs})
        return {"created": True, "id": 7, "state": "open", "url": "http://127.0.0.1:9/checkpoint/requests/7"}

    monkeypatch.setattr(client_module.CheckpointClient, "promote", promote)
    return calls


def _promote(*args: str, stdin: str | None = None):
    argv = ["request", "promote", "--url", "http://127.0.0.1:9", "--model", "m", "--version", "3", *args]
    return CliRunner().invoke(main, argv, input=stdin)


def test_description_dash_reads_stdin_without_a_deprecation_warning(promoted):
    # click 8.5 deprecated get_text_stream, which this command used; mypy reported it (an attribute
    # click now serves through a module __getattr__), and the warning failed the command under -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        result = _promote("--stage", "Staging", "--description", "-", stdin="Why: better AUC.\nSecond line, é.\n")
    assert result.exit_code == 0, result.output
    assert promoted[0]["description"] == "Why: better AUC.\nSecond line, é.\n"
    assert "opened promote request #7 (open)" in result.output


def test_description_is_taken_as_given_otherwise(promoted):
    result = _promote("--alias", "champion", "--description", "-x-", "--json")
    assert result.exit_code == 0, result.output
    assert promoted[0]["description"] == "-x-" and promoted[0]["alias"] == "champion"
    assert json.loads(result.output)["id"] == 7


def test_exactly_one_of_stage_and_alias(promoted):
    result = _promote("--stage", "Staging", "--alias", "champion")
    assert result.exit_code == 2 and "give exactly one of --stage, --alias or --copy-to" in result.output
    assert promoted == []


def test_serve_migrates_in_the_master_after_the_configuration_and_before_gunicorn(monkeypatch, tmp_path):
    """The schema step lives in cli.py (the front door has no SQL); serve() calls it once, after
    the logs are set up and the configuration checked, before gunicorn forks any worker."""
    from checkpoint.edge import serving
    from checkpoint.runtime import logs, metrics
    from checkpoint.storage import db

    steps: list[str] = []
    monkeypatch.setenv("CHECKPOINT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHECKPOINT_REGISTRY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CHECKPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'checkpoint.db'}")
    monkeypatch.setattr(logs, "configure", lambda *args: steps.append("logs"))
    monkeypatch.setattr(db, "upgrade", lambda engine: steps.append(f"migrate {engine.url.database}"))
    monkeypatch.setattr(metrics, "prepare_multiprocess", lambda: None)
    monkeypatch.setattr(serving.CheckpointServer, "run", lambda self: steps.append("gunicorn"))
    result = CliRunner().invoke(main, ["serve", "--host", "127.0.0.1", "--port", "5099"])
    assert result.exit_code == 0, result.output
    assert steps == ["logs", f"migrate {tmp_path / 'checkpoint.db'}", "gunicorn"]


def test_a_failed_migration_stops_serve_before_gunicorn(monkeypatch, tmp_path):
    from checkpoint.edge import serving
    from checkpoint.runtime import logs
    from checkpoint.storage import db

    def broken(engine):
        raise db.SchemaError("the database is newer than this code")

    monkeypatch.setenv("CHECKPOINT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHECKPOINT_REGISTRY_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(logs, "configure", lambda *args: None)
    monkeypatch.setattr(db, "upgrade", broken)
    monkeypatch.setattr(serving.CheckpointServer, "run", lambda self: pytest.fail("gunicorn started"))
    result = CliRunner().invoke(main, ["serve", "--host", "127.0.0.1", "--port", "5099"])
    assert result.exit_code == 1 and isinstance(result.exception, db.SchemaError)


def test_request_list_offers_every_state_the_api_filters_on():
    from checkpoint.cli import LIST_STATES
    from checkpoint.storage.entities import STATES, WAITING

    assert set(LIST_STATES) == {*STATES, WAITING}


def test_quiet_prints_only_the_id_on_stdout(promoted):
    result = CliRunner().invoke(
        main, ["request", "promote", "--url", "http://127.0.0.1:9", "--model", "m", "--version", "3", "--alias", "champion", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "7\n"
    assert result.stderr == "opened promote request #7 (open): http://127.0.0.1:9/checkpoint/requests/7\n"


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


def test_no_command_takes_an_option_twice():
    """`status set` once had --url both for Checkpoint's address and the CI run's link (click
    warns and one silently wins): every option string names one parameter of its command."""
    for path, command in _commands(main):
        flags = [flag for param in command.params for flag in (*param.opts, *param.secondary_opts)]
        assert len(flags) == len(set(flags)), f"checkpoint {' '.join(path)} takes an option twice: {sorted(flags)}"


def test_status_set_reads_checkpoints_address_and_the_runs_link_apart(monkeypatch):
    asked: list[tuple] = []

    def set_status(self, context, state, **kwargs):
        asked.append((self.base, context, state, kwargs["target_url"]))
        return {"status": {"context": context, "state": state}}

    monkeypatch.setattr(client_module.CheckpointClient, "set_status", set_status)
    argv = ["status", "set", "--model", "m", "--version", "1", "--context", "ci/eval", "--state", "success"]
    run = ["--url", "https://ci.example/run/41"]
    by_option = CliRunner().invoke(main, [*argv, *run, "--checkpoint-url", "http://127.0.0.1:9"])
    by_env = CliRunner(env={"CHECKPOINT_URL": "http://127.0.0.1:8"}).invoke(main, [*argv, *run])
    assert by_option.exit_code == by_env.exit_code == 0, by_option.output + by_env.output
    assert asked == [
        ("http://127.0.0.1:9/checkpoint/api/v1", "ci/eval", "success", "https://ci.example/run/41"),
        ("http://127.0.0.1:8/checkpoint/api/v1", "ci/eval", "success", "https://ci.example/run/41"),
    ]
