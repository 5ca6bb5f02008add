"""The `checkpoint` command run as a process, and the environments the tests give such processes.

A test that starts a Checkpoint process with an environment it builds itself (no ``os.environ``
underneath, so nothing of the caller's leaks in) would also drop the variables through which a
coverage run measures its subprocesses: COVERAGE_FILE, which scripts/test sets, and what
``[tool.coverage.run] patch = subprocess`` sets (COVERAGE_PROCESS_START or COVERAGE_PROCESS_CONFIG,
COVERAGE_PROCESS_DATAFILE, by coverage's version). ``subprocess_env`` keeps those and only those.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["CHECKPOINT", "clean_env", "cli_process", "run_against", "run_cli", "serve_refusal", "subprocess_env"]

COVERAGE_PREFIX = "COVERAGE_"
# The installed `checkpoint` script, beside this interpreter.
CHECKPOINT = str(Path(sys.executable).with_name("checkpoint"))


def subprocess_env(**values: str) -> dict[str, str]:
    """``values`` as a whole environment, plus this process's ``COVERAGE_*`` variables when it has
    any (a run under coverage); ``values`` win over them."""
    env = {name: value for name, value in os.environ.items() if name.startswith(COVERAGE_PREFIX)}
    env.update(values)
    return env


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


def serve_refusal(tmp_path: Path, **values: str) -> subprocess.CompletedProcess:
    """`checkpoint serve` with ``values`` as its only CHECKPOINT_* settings, expected to stop at
    start: a non-zero exit and no traceback (the caller checks the message)."""
    from checkpoint.demo.mlflow_server import free_port

    result = run_cli(["serve", "--port", str(free_port())], clean_env(tmp_path, **values), cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    return result


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The caller's environment without any CHECKPOINT_* of its own, HOME in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINT_")}
    env["HOME"] = str(tmp_path / "home")
    env["CHECKPOINT_DATA_DIR"] = str(tmp_path / "data")
    env.update(values)
    return env


def cli_process(base: str, *args: str, user: str = "alice", **popen) -> subprocess.Popen:
    """`checkpoint ARGS` against ``base`` as ``user`` (a pipeline's environment: this one plus the URL and credentials)."""
    env = {**os.environ, "CHECKPOINT_URL": base, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": "x"}
    return subprocess.Popen(
        [sys.executable, "-m", "checkpoint.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_against(base: str, *args: str, user: str = "alice") -> subprocess.CompletedProcess:
    """`checkpoint ARGS` against ``base`` as ``user``, to its end."""
    process = cli_process(base, *args, user=user)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
