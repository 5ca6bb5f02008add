"""What the benchmarks share: starting ``checkpoint serve``, stopping what they started,
Checkpoint's RSS from /proc, percentiles, and artifacts streamed without holding them.

Imported by the scripts next to it (run as ``.venv/bin/python benchmarks/<script>.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from checkpoint.demo.mlflow_server import MlflowServer, free_port, wait_http  # noqa: E402

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MIB = 1024 * 1024
GIB = 1024 * MIB
BLOCK = MIB  # artifact bodies go out and come in 1 MiB at a time


# -- processes ------------------------------------------------------------------------------


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop one process we started (and its own process group, which it leads) by its PID."""
    if process is None or process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group id is that same PID: start_new_session
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


@dataclass
class Checkpoint:
    """``checkpoint serve`` in a subprocess, exactly as the command line and the Dockerfile run it.

    Only ``CHECKPOINT_REGISTRY_URL`` and ``CHECKPOINT_DATA_DIR`` are set (so the database is the
    data directory's SQLite file and every other setting is its default), plus ``env``.
    """

    data_dir: Path
    registry_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "checkpoint.log"

    def start(self) -> Checkpoint:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {**os.environ, "CHECKPOINT_REGISTRY_URL": self.registry_url, "CHECKPOINT_DATA_DIR": str(self.data_dir)}
        env.pop("CHECKPOINT_DATABASE_URL", None)  # the data directory's own SQLite file
        env.update(self.env)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "checkpoint.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{self.url}/checkpoint/healthz", timeout=60, process=self.process, log=self.log_path)
        return self

    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        if self.process is None:
            return []
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        # SIGINT is gunicorn's quick shutdown: nothing is in flight any more, and on SIGTERM a
        # gthread worker that ever kept a connection alive sits out its whole graceful_timeout.
        stop_process(self.process, signal.SIGINT)


# nginx, the reference proxy (proxy_bench.py, load_bench.py)


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass
class Nginx:
    """nginx as its own foreground master, configured from nginx.conf.template."""

    prefix: Path
    upstream_port: int
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        binary = nginx_binary()
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # As root, nginx would run its workers as "nobody"; keep them as whoever runs the benchmark.
        user_line = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        conf = (ROOT / "benchmarks" / "nginx.conf.template").read_text()
        for key, value in {
            "@USER_LINE@": user_line,
            "@PREFIX@": str(self.prefix),
            "@UPSTREAM_PORT@": str(self.upstream_port),
            "@LISTEN_PORT@": str(self.port),
        }.items():
            conf = conf.replace(key, value)
        conf_path = self.prefix / "nginx.conf"
        conf_path.write_text(conf)
        log = self.prefix / "nginx.out"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [binary, "-p", str(self.prefix), "-c", str(conf_path), "-e", str(self.prefix / "error.log")],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{self.url}/health", timeout=30, process=self.process, log=self.prefix / "error.log")
        return self

    def pids(self) -> list[int]:
        """The master and its workers."""
        return process_tree(self.process.pid) if self.process else []

    def stop(self) -> None:
        stop_process(self.process, signal.SIGQUIT)  # graceful: lets the master reap its workers


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def process_tree(pid: int, limit: int = 256) -> list[int]:
    """This process and all its descendants (at most ``limit``): MLflow's server starts uvicorn, which forks its workers."""
    found, queue = [], [pid]
    while queue and len(found) < limit:
        current = queue.pop()
        found.append(current)
        queue += children(current)
    return found


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class RssSampler:
    """Samples the summed RSS of Checkpoint's processes in a background thread.

    Shared pages after the fork count once per process, as /proc reports them. ``series``
    keeps every sample as (seconds since start, bytes) for figures over time.
    """

    def __init__(self, checkpoint: Checkpoint, interval: float = 0.05) -> None:
        self.checkpoint = checkpoint
        self.interval = interval
        self.peak = 0
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def now(self) -> int:
        return sum(rss_bytes(pid) for pid in self.checkpoint.pids())

    def _sample(self) -> None:
        value = self.now()
        self.peak = max(self.peak, value)
        self.series.append((time.monotonic() - self._started, value))

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()


@contextmanager
def servers(
    tmp: Path,
    mlflow_workers: int | None = None,
    checkpoint_env: dict[str, str] | None = None,
) -> Iterator[tuple[MlflowServer, Checkpoint]]:
    """A real ``mlflow server`` under ``tmp`` and ``checkpoint serve`` in front of it; both stopped at the end."""
    mlflow = MlflowServer(tmp / "mlflow", workers=mlflow_workers).start()
    checkpoint = Checkpoint(tmp / "checkpoint", mlflow.url, checkpoint_env or {})
    try:
        yield mlflow, checkpoint.start()
    finally:
        checkpoint.stop()
        mlflow.stop()


# -- figures --------------------------------------------------------------------------------


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (NaN for no samples)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def load_average() -> float:
    return os.getloadavg()[0]


def bench_parser(doc: str, quick_help: str, result_name: str) -> argparse.ArgumentParser:
    """The options every benchmark has: --quick and --output (default benchmarks/results/<result_name>)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / result_name)
    return parser


def publish(table: str, output: Path) -> None:
    """Print the Markdown report and keep it under benchmarks/results/ (or wherever --output says)."""
    print()
    print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    print(f"written to {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


# -- artifacts, streamed both ways ----------------------------------------------------------


def blocks(size: int, seed: bytes) -> Iterator[bytearray]:
    """The artifact, 1 MiB at a time from one reused buffer: every MiB is numbered, so order is checked too."""
    buffer = bytearray(seed)
    for index in range(math.ceil(size / BLOCK)):
        buffer[:8] = index.to_bytes(8, "big")
        yield buffer if (index + 1) * BLOCK <= size else buffer[: size - index * BLOCK]


def crc_of(size: int, seed: bytes) -> int:
    crc = 0
    for block in blocks(size, seed):
        crc = zlib.crc32(block, crc)
    return crc


@dataclass
class Artifact:
    """One artifact's content, made on the fly from a random 1 MiB seed, and its CRC-32 for the check."""

    size: int
    seed: bytes = field(default_factory=lambda: os.urandom(BLOCK))

    def __post_init__(self) -> None:
        self.crc = crc_of(self.size, self.seed)

    def round_trip(self, url: str, path: str, timeout: float) -> tuple[float, float]:
        """Seconds to upload it to ``path`` and to download it back (checked)."""
        return upload(url, path, self.size, self.seed, timeout), download(url, path, self.size, self.crc, timeout)


def upload(url: str, path: str, size: int, seed: bytes, timeout: float) -> float:
    """PUT with Content-Length, the body streamed from blocks(); returns seconds until the answer."""
    conn = http.client.HTTPConnection(*host_port(url), timeout=120)
    try:
        start = time.perf_counter()
        conn.putrequest("PUT", f"{ARTIFACTS}/{path}")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        for block in blocks(size, seed):
            conn.send(block)
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"upload to {url} took over {timeout:.0f} s")
        answer = conn.getresponse()
        body = answer.read()
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    if answer.status != 200:
        raise RuntimeError(f"upload to {url} answered {answer.status}: {body[:300]!r}")
    return elapsed


def download(url: str, path: str, size: int, crc: int, timeout: float) -> float:
    """GET the artifact back, streamed into one reused buffer; checks its size and CRC-32."""
    conn = http.client.HTTPConnection(*host_port(url), timeout=120)
    buffer = memoryview(bytearray(BLOCK))
    try:
        start = time.perf_counter()
        conn.request("GET", f"{ARTIFACTS}/{path}")
        answer = conn.getresponse()
        if answer.status != 200:
            raise RuntimeError(f"download from {url} answered {answer.status}: {answer.read(300)!r}")
        got, check = 0, 0
        while count := answer.readinto(buffer):
            check = zlib.crc32(buffer[:count], check)
            got += count
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"download from {url} took over {timeout:.0f} s")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    if got != size or check != crc:
        raise RuntimeError(f"download from {url}: {got} bytes, CRC {check:#x}; expected {size} bytes, CRC {crc:#x}")
    return elapsed
