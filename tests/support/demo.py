"""`checkpoint demo` started as a user starts it, for the tests that drive it end to end: its own
process group, its console captured to a file, waited on by what it prints, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from checkpoint.demo.mlflow_server import free_port

ROOT = Path(__file__).resolve().parents[2]
# A first run trains and registers the example models and plays the seeded history: minutes on a busy machine.
START_TIMEOUT = 240


def distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_output(process: subprocess.Popen, log: Path, needle: str, timeout: float) -> str:
    """Poll the demo's output until ``needle`` shows up; fail early if the demo exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        if process.poll() is not None:
            pytest.fail(f"checkpoint demo exited with {process.returncode} before printing {needle!r}:\n{text[-4000:]}")
        time.sleep(0.3)
    pytest.fail(f"no {needle!r} within {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_demo(args: list[str], log: Path, *, as_background_job: bool = False) -> subprocess.Popen:
    """`checkpoint demo ARGS` from the repository root, its console into ``log``."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "checkpoint.cli", "demo", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the test signals only the demo
            # A shell starts `demo &` with SIGINT ignored; Ctrl-C handling must not rely on inheriting it.
            preexec_fn=_ignore_sigint if as_background_job else None,
        )


def stop_demo(process: subprocess.Popen) -> None:
    """Last-resort cleanup when an assertion failed before the demo was stopped."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the demo stops its servers on SIGTERM too
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@dataclass
class RunningDemo:
    """A demo that printed its banner: where it serves, where its MLflow is, its console and data."""

    process: subprocess.Popen
    url: str
    mlflow_url: str
    log: Path
    data: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 60) -> str:
        return wait_for_output(self.process, self.log, needle, timeout)


@contextmanager
def running_demo(tmp_path: Path) -> Iterator[RunningDemo]:
    """A fresh demo (its own data directory) up to its banner; Ctrl-C'd at the end, as a user stops it."""
    port, mlflow_port = distinct_free_ports(2)
    log, data = tmp_path / "demo.out", tmp_path / "data"
    process = start_demo(["--port", str(port), "--mlflow-port", str(mlflow_port), "--data-dir", str(data)], log)
    try:
        wait_for_output(process, log, "Press Ctrl-C", timeout=START_TIMEOUT)
        yield RunningDemo(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mlflow_port}", log, data)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=90) == 0
    finally:
        stop_demo(process)
