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
