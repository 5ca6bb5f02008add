"""`bash scripts/demo` as a new user's first run sees it: pip's minutes are never silent, and a
failing pip says why (issue 17 §4.10). Run on a copy of the script with stand-ins for the
virtualenv's pip and checkpoint, so no package is installed."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _layout(tmp_path: Path, pip_body: str) -> Path:
    """A repository copy holding scripts/demo and a .venv whose pip runs ``pip_body``."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo", tmp_path / "scripts" / "demo")
    (tmp_path / "requirements-dev.txt").write_text("-e .\n")
    (tmp_path / "setup.py").write_text("# stand-in\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in {
        "python": "exit 0",
        "pip": pip_body,
        "checkpoint": 'echo "stand-in checkpoint $*"',
    }.items():
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    return tmp_path


def _run(root: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(root / "scripts" / "demo"), "--port", "5999"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=root,
    )


def test_a_slow_install_says_what_it_is_doing(tmp_path):
    # A pip that takes 12 s, as the real one takes ~95 s on a first run: the script speaks meanwhile.
    pip = 'echo "Collecting mlflow==3.17.2"; sleep 6; echo "Collecting scikit-learn"; sleep 6; echo "Successfully installed x"'
    root = _layout(tmp_path, pip)
    started = time.monotonic()
    done = _run(root)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("checkpoint demo: installing Checkpoint and its dependencies into .venv")
    ticks = [line for line in out if line.startswith("checkpoint demo:   1") and " s: " in line]
    assert ticks and "Collecting scikit-learn" in ticks[0], out
    assert any(line.startswith("checkpoint demo: dependencies installed (") for line in out), out
    assert out[-1] == "stand-in checkpoint demo --port 5999", out
    assert "Successfully installed" not in done.stdout  # pip's own lines are in the log
    assert "Successfully installed x" in (root / ".venv" / "pip-install.log").read_text()
    assert time.monotonic() - started < 30

    again = _run(root)  # unchanged requirements: no pip at all
    assert "installing" not in again.stdout and again.stdout.splitlines()[-1] == "stand-in checkpoint demo --port 5999"


@pytest.mark.parametrize("message", ["ERROR: No matching distribution found for mlflow==99"])
def test_a_failing_install_shows_the_end_of_its_log(tmp_path, message):
    root = _layout(tmp_path, f'echo "Collecting mlflow==99"; echo "{message}" >&2; exit 1')
    done = _run(root)
    assert done.returncode == 1
    assert "pip failed" in done.stderr and message in done.stderr
    assert "stand-in checkpoint" not in done.stdout
    assert not (root / ".venv" / ".scripts-demo-installed").exists()  # tried again next time
