"""Settings: every bad value stops start-up with a message naming the variable and a good value."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from checkpoint.demo.mlflow_server import free_port
from checkpoint.settings import Settings, SettingsError

CHECKPOINT = str(Path(sys.executable).with_name("checkpoint"))
GOOD = {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001"}

# (id, environment over GOOD, pattern the message must match: the variable and an example)
BAD_VALUES = [
    (
        "registry-missing",
        {"CHECKPOINT_REGISTRY_URL": ""},
        r"CHECKPOINT_REGISTRY_URL is not set.*e\.g\. CHECKPOINT_REGISTRY_URL=http://127\.0\.0\.1:5001",
    ),
    (
        "registry-blank",
        {"CHECKPOINT_REGISTRY_URL": "   "},
        r"CHECKPOINT_REGISTRY_URL is not set.*CHECKPOINT_REGISTRY_URL=http://",
    ),
    (
        "registry-no-scheme",
        {"CHECKPOINT_REGISTRY_URL": "127.0.0.1:5001"},
        r"CHECKPOINT_REGISTRY_URL='127\.0\.0\.1:5001' is not an http\(s\) URL.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-wrong-scheme",
        {"CHECKPOINT_REGISTRY_URL": "ftp://mlflow:5001"},
        r"CHECKPOINT_REGISTRY_URL='ftp://mlflow:5001' is not an http\(s\) URL.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-no-host",
        {"CHECKPOINT_REGISTRY_URL": "http://:5001"},
        r"CHECKPOINT_REGISTRY_URL='http://:5001' is not an http\(s\) URL.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-port-not-a-number",
        {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:mlflow"},
        r"CHECKPOINT_REGISTRY_URL='http://127\.0\.0\.1:mlflow' has a bad port.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-port-out-of-range",
        {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:99999"},
        r"CHECKPOINT_REGISTRY_URL='http://127\.0\.0\.1:99999' has a bad port.*http://127\.0\.0\.1:5001",
    ),
    (
        "registry-query",
        {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001/?x=1"},
        r"CHECKPOINT_REGISTRY_URL=.* must not have a query or fragment.*http://127\.0\.0\.1:5001",
    ),
    (
        "connect-timeout-word",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "five"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='five' is not a number.*CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT=5",
    ),
    (
        "connect-timeout-zero",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "0"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='0' is out of range.*e\.g\. 5",
    ),
    (
        "connect-timeout-negative",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "-1"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='-1' is out of range.*e\.g\. 5",
    ),
    (
        "connect-timeout-nan",
        {"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": "nan"},
        r"CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT='nan' is out of range",
    ),
    (
        "read-timeout-word",
        {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": "2m"},
        r"CHECKPOINT_UPSTREAM_READ_TIMEOUT='2m' is not a number.*CHECKPOINT_UPSTREAM_READ_TIMEOUT=120",
    ),
    (
        "read-timeout-infinite",
        {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": "inf"},
        r"CHECKPOINT_UPSTREAM_READ_TIMEOUT='inf' is out of range.*e\.g\. 120",
    ),
    (
        "read-timeout-too-long",
        {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": "1e9"},
        r"CHECKPOINT_UPSTREAM_READ_TIMEOUT='1e9' is out of range.*e\.g\. 120",
    ),
    (
        "pool-size-fraction",
        {"CHECKPOINT_UPSTREAM_POOL_SIZE": "1.5"},
        r"CHECKPOINT_UPSTREAM_POOL_SIZE='1\.5' is not a number.*CHECKPOINT_UPSTREAM_POOL_SIZE=64",
    ),
    (
        "pool-size-zero",
        {"CHECKPOINT_UPSTREAM_POOL_SIZE": "0"},
        r"CHECKPOINT_UPSTREAM_POOL_SIZE='0' is out of range.*e\.g\. 64",
    ),
    (
        "chunk-size-tiny",
        {"CHECKPOINT_CHUNK_SIZE": "512"},
        r"CHECKPOINT_CHUNK_SIZE='512' is out of range.*e\.g\. 65536",
    ),
    (
        "apply-lease-word",
        {"CHECKPOINT_APPLY_LEASE_SECONDS": "5m"},
        r"CHECKPOINT_APPLY_LEASE_SECONDS='5m' is not a number.*CHECKPOINT_APPLY_LEASE_SECONDS=390",
    ),
    (
        "apply-lease-zero",
        {"CHECKPOINT_APPLY_LEASE_SECONDS": "0"},
        r"CHECKPOINT_APPLY_LEASE_SECONDS='0' is out of range.*e\.g\. 390",
    ),
    (
        "apply-lease-infinite",
        {"CHECKPOINT_APPLY_LEASE_SECONDS": "inf"},
        r"CHECKPOINT_APPLY_LEASE_SECONDS='inf' is out of range.*e\.g\. 390",
    ),
    (
        "database-path-not-url",
        {"CHECKPOINT_DATABASE_URL": "/var/lib/checkpoint/checkpoint.db"},
        r"CHECKPOINT_DATABASE_URL='/var/lib/checkpoint/checkpoint\.db' is not a database URL.*"
        r"sqlite:////var/lib/checkpoint/checkpoint\.db.*postgresql\+psycopg://",
    ),
    (
        # Heroku-style URLs: SQLAlchemy 2 has no "postgres" dialect, so this must be caught at start.
        "database-postgres-scheme",
        {"CHECKPOINT_DATABASE_URL": "postgres://checkpoint:secret@127.0.0.1:5432/checkpoint"},
        r"CHECKPOINT_DATABASE_URL=.*postgresql\+psycopg://",
    ),
    (
        "database-sqlite-two-slashes",
        {"CHECKPOINT_DATABASE_URL": "sqlite://checkpoint.db"},
        r"CHECKPOINT_DATABASE_URL=.*sqlite:////",
    ),
    (
        "public-url-no-scheme",
        {"CHECKPOINT_PUBLIC_URL": "checkpoint.example.com"},
        r"CHECKPOINT_PUBLIC_URL='checkpoint\.example\.com' is not an http\(s\) URL.*https://checkpoint\.example\.com",
    ),
    (
        "public-url-bad-port",
        {"CHECKPOINT_PUBLIC_URL": "https://checkpoint.example.com:https"},
        r"CHECKPOINT_PUBLIC_URL=.* has a bad port.*https://checkpoint\.example\.com",
    ),
    (
        "cors-origin-no-scheme",
        {"CHECKPOINT_CORS_ALLOWED_ORIGINS": "https://a.example.com, notebooks.example.com"},
        r"CHECKPOINT_CORS_ALLOWED_ORIGINS='notebooks\.example\.com' is not an http\(s\) URL.*https://",
    ),
    (
        "log-level-unknown",
        {"CHECKPOINT_LOG_LEVEL": "verbose"},
        r"CHECKPOINT_LOG_LEVEL='VERBOSE' is not one of DEBUG, INFO, WARNING, ERROR",
    ),
]


@pytest.mark.parametrize(("env", "pattern"), [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES])
def test_bad_value_names_variable_and_example(env, pattern, tmp_path):
    with pytest.raises(SettingsError, match=pattern):
        Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), **env})


def test_defaults(tmp_path):
    settings = Settings.from_env({"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001/", "CHECKPOINT_DATA_DIR": str(tmp_path)})
    assert settings.registry_url == "http://127.0.0.1:5001"
    assert settings.upstream_origin == "http://127.0.0.1:5001"
    assert settings.data_dir == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'checkpoint.db'}"
    assert settings.upstream_connect_timeout == 5.0
    assert settings.upstream_read_timeout == 120.0
    assert settings.upstream_pool_size == 64
    assert settings.chunk_size == 64 * 1024
    assert settings.log_level == "INFO"
    assert settings.public_url is None
    assert settings.cors_allowed_origins == ()
    assert settings.secret_key == ""


def test_default_data_dir_is_in_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings.from_env(GOOD)
    assert settings.data_dir == tmp_path / ".checkpoint"
    assert settings.database_url == f"sqlite:///{tmp_path / '.checkpoint' / 'checkpoint.db'}"


def test_values_are_parsed_and_normalised(tmp_path):
    settings = Settings.from_env(
        {
            "CHECKPOINT_REGISTRY_URL": " https://mlflow.internal:8443/prefix/ ",
            "CHECKPOINT_DATA_DIR": str(tmp_path),
            "CHECKPOINT_DATABASE_URL": "postgresql+psycopg://cp:secret@db:5432/checkpoint",
            "CHECKPOINT_PUBLIC_URL": "https://checkpoint.example.com/",
            "CHECKPOINT_CORS_ALLOWED_ORIGINS": "https://a.example.com/, ,https://b.example.com",
            "CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT": " 2.5 ",
            "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "30",
            "CHECKPOINT_UPSTREAM_POOL_SIZE": "8",
            "CHECKPOINT_CHUNK_SIZE": "1024",
            "CHECKPOINT_LOG_LEVEL": "debug",
            "CHECKPOINT_SECRET_KEY": "s3cret",
            "UNRELATED": "ignored",
        }
    )
    assert settings.registry_url == "https://mlflow.internal:8443/prefix"
    assert settings.upstream_origin == "https://mlflow.internal:8443"
    assert settings.database_url == "postgresql+psycopg://cp:secret@db:5432/checkpoint"
    assert settings.public_url == "https://checkpoint.example.com"
    assert settings.cors_allowed_origins == ("https://a.example.com", "https://b.example.com")
    assert settings.upstream_connect_timeout == 2.5
    assert settings.upstream_read_timeout == 30.0
    assert settings.upstream_pool_size == 8
    assert settings.chunk_size == 1024
    assert settings.log_level == "DEBUG"
    assert settings.secret_key == "s3cret"


def test_overrides_win_over_environment(tmp_path):
    env = {**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "30"}
    settings = Settings.from_env(env, registry_url="http://127.0.0.1:6000", upstream_read_timeout=7)
    assert settings.registry_url == "http://127.0.0.1:6000"
    assert settings.upstream_read_timeout == 7.0


def test_apply_lease_follows_the_registry_timeout_unless_set(tmp_path):
    """An apply's registry calls wait up to 5 s + min(read timeout, 60 s) each; the lease outlasts ~6 of them."""
    env = {**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).apply_lease == 390.0
    assert Settings.from_env({**env, "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "10"}).apply_lease == 90.0
    assert Settings.from_env({**env, "CHECKPOINT_UPSTREAM_READ_TIMEOUT": "600"}).apply_lease == 390.0
    assert Settings.from_env({**env, "CHECKPOINT_APPLY_LEASE_SECONDS": " 2.5 "}).apply_lease == 2.5


def test_unknown_override_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="unknown setting.*registy_url"):
        Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path)}, registy_url="http://127.0.0.1:1")


def test_generated_secret_is_kept_private_and_stable(tmp_path):
    settings = Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path / "data")})
    first = settings.with_secret()
    second = Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path / "data")}).with_secret()
    assert len(first.secret_key) == 64
    assert second.secret_key == first.secret_key
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]  # no temp file left behind


def test_configured_secret_wins(tmp_path):
    settings = Settings.from_env({**GOOD, "CHECKPOINT_DATA_DIR": str(tmp_path), "CHECKPOINT_SECRET_KEY": "mine"})
    assert settings.with_secret().secret_key == "mine"
    assert not (tmp_path / "secret_key").exists()


# --- the command line: the same message, no traceback, a non-zero exit ---------------------------


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the installed `checkpoint` script in its own process group; kill that group on a hang."""
    process = subprocess.Popen(
        [CHECKPOINT, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=10)
        pytest.fail(f"`checkpoint {' '.join(args)}` did not exit within {timeout} s (it started?):\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The caller's environment without any CHECKPOINT_* of its own, HOME in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINT_")}
    env["HOME"] = str(tmp_path / "home")
    env["CHECKPOINT_DATA_DIR"] = str(tmp_path / "data")
    env.update(values)
    return env


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
