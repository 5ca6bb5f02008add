"""Settings on the command line: a bad value stops `checkpoint serve` and `checkpoint db upgrade` with the
message naming the variable, no traceback and a non-zero exit. The same values read in-process (every
message, the defaults, the overrides) are in tests/unit/test_settings.py."""

from __future__ import annotations

import re

import pytest

from checkpoint.demo.mlflow_server import free_port
from tests.support.processes import clean_env, run_cli

GOOD = {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001"}

# --- the command line: the same message, no traceback, a non-zero exit ---------------------------


CLI_CASES = [
    ("registry-missing", {"CHECKPOINT_REGISTRY_URL": ""}, r"CHECKPOINT_REGISTRY_URL is not set.*e\.g\."),
    (
        "registry-bad-port",
        {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:99999"},
        r"CHECKPOINT_REGISTRY_URL='http://127\.0\.0\.1:99999' has a bad port",
    ),
    (
        "read-timeout",
        {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": "soon"},
        r"CHECKPOINT_UPSTREAM_READ_TIMEOUT='soon' is not a number.*CHECKPOINT_UPSTREAM_READ_TIMEOUT=120",
    ),
    ("database-path", {"CHECKPOINT_DATABASE_URL": "checkpoint.db"}, r"CHECKPOINT_DATABASE_URL='checkpoint\.db'"),
    ("database-postgres-scheme", {"CHECKPOINT_DATABASE_URL": "postgres://u@127.0.0.1/x"}, r"CHECKPOINT_DATABASE_URL="),
    ("public-url", {"CHECKPOINT_PUBLIC_URL": "checkpoint"}, r"CHECKPOINT_PUBLIC_URL='checkpoint'"),
    ("log-level", {"CHECKPOINT_LOG_LEVEL": "loud"}, r"CHECKPOINT_LOG_LEVEL='LOUD' is not one of"),
]


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]], ids=" ".join)
@pytest.mark.parametrize(("env", "pattern"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_setting_without_traceback(command, env, pattern, tmp_path):
    values = {**GOOD, **env}
    args = [*command, "--port", str(free_port())] if command == ["serve"] else command
    result = run_cli(args, clean_env(tmp_path, **values), cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert re.search(pattern, result.stderr), result.stderr
    assert result.stderr.startswith("Error: "), result.stderr


# Knobs the `serve` command reads itself (not through Settings): a typo must read as plainly.
SERVE_CASES = [
    ("port-word", {"CHECKPOINT_PORT": "http"}, r"CHECKPOINT_PORT='?http'?"),
    ("workers-word", {"CHECKPOINT_WORKERS": "four"}, r"CHECKPOINT_WORKERS='?four'?"),
    ("threads-word", {"CHECKPOINT_THREADS": "many"}, r"CHECKPOINT_THREADS='?many'?"),
]


@pytest.mark.parametrize(("env", "pattern"), [c[1:] for c in SERVE_CASES], ids=[c[0] for c in SERVE_CASES])
def test_serve_refuses_bad_server_knob_without_traceback(env, pattern, tmp_path):
    args = ["serve"] if "CHECKPOINT_PORT" in env else ["serve", "--port", str(free_port())]
    result = run_cli(args, clean_env(tmp_path, **GOOD, **env), cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert re.search(pattern, result.stderr), result.stderr
