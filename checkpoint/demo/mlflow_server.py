"""Start and stop a real ``mlflow server`` on loopback: for the demo, the tests and the benchmarks.

MLflow takes ~10 s to start, so callers start one and share it. The server runs in its
own process group and is stopped by that group's id only: nothing else is touched.
By default the server is the MLflow installed next to this Python; ``executable`` points at
another installation's ``mlflow`` script (the 2.x compatibility run uses one in its own venv).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import urllib3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, *, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200, failing early if ``process`` died."""
    deadline = time.monotonic() + timeout
    http = urllib3.PoolManager(retries=False, timeout=2.0)
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process for {url} exited with {process.returncode}:\n{tail}")
        try:
            if http.request("GET", url).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


@dataclass
class MlflowServer:
    """A ``mlflow server`` on an SQLite store with served artifacts, all under ``root``."""

    root: Path
    port: int = 0
    workers: int | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    executable: str | None = None
    # ``--enable-workspaces`` (MLflow >= 3.10): the registry is split by the X-MLFLOW-WORKSPACE
    # header, so the same model name can live in several workspaces. Needs the SQL store used here.
    enable_workspaces: bool = False
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "mlflow-server.log"

    def start(self, timeout: float = 90.0) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        launcher = [self.executable] if self.executable else [sys.executable, "-m", "mlflow"]
        # These flags mean the same on 2.22 (gunicorn) and 3.x (uvicorn); --workers sizes either.
        command = [
            *launcher,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.root / "mlartifacts"),
            "--serve-artifacts",
        ]
        if self.workers:
            command += ["--workers", str(self.workers)]
        if self.enable_workspaces:
            command.append("--enable-workspaces")
        command += self.extra_args
        # The job runner (a pool of huey consumers for MLflow's GenAI jobs) costs ~7 processes per
        # server and plays no part in the registry: off unless a caller turns it back on (2.x has
        # no job runner and ignores the variable).
        # Telemetry off too: these servers live on loopback and have no business calling out.
        # uvicorn parses HTTP with httptools whenever it can import it, and Checkpoint depends on
        # httptools: pin h11, the parser of a plain ``pip install mlflow`` (its limits are the ones
        # Checkpoint's front server is sized to; edge/limits.py). 2.x (gunicorn) ignores it.
        env = {
            **os.environ,
            "UVICORN_HTTP": "h11",
            "MLFLOW_HOME": str(self.root),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **self.env,
        }
        # Keep the client settings of whoever started us away from the server.
        env.pop("MLFLOW_TRACKING_URI", None)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            wait_http(f"{self.url}/health", timeout=timeout, process=self.process, log=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def version_at(url: str) -> str:
        """The MLflow version of the server at ``url``, as its ``/version`` route reports it (2.x and 3.x)."""
        answer = urllib3.PoolManager(retries=False, timeout=5.0).request("GET", f"{url}/version")
        if answer.status != 200:
            raise RuntimeError(f"{url}/version answered {answer.status}")
        return answer.data.decode().strip()

    def stop(self) -> None:
        """Stop the server's whole process group (uvicorn or gunicorn workers, job runner) by its id."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
