"""Threads per gunicorn worker for a streaming proxy: what ``CHECKPOINT_THREADS`` buys.

Every call in flight holds one worker thread for as long as it streams, so the thread count
bounds how many transfers can run at once before short calls start to queue behind them.
For each thread count (2 workers each) this measures, through ``checkpoint serve`` in
front of one real ``mlflow server``:

a. requests/s and p99 of a registry search with 64 keep-alive clients (wrk, 10 s);
b. p50/p99 of short calls made one after another while 48 slow clients (each reading at
   16 MiB/s, like a laptop on a VPN) download a 64 MiB artifact at the same time, and the
   downloads' total time: the streaming case the setting is for;
c. Checkpoint's RSS with everything idle again.

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import tempfile
import threading
import time
from pathlib import Path

from common import (
    ARTIFACTS,
    Artifact,
    Checkpoint,
    bench_parser,
    host_port,
    load_average,
    percentile,
    publish,
    rss_bytes,
    upload,
)
from proxy_bench import SEARCH, WRK_SCRIPT, Plan, run_wrk

from checkpoint.demo.mlflow_server import MlflowServer

THREADS = (4, 8, 16, 32, 64)
STREAMS = 48
CLIENT_MIB_PER_S = 16  # each downloading client reads no faster than this
PHASE_TIMEOUT = 120.0


def slow_download(url: str, path: str, size: int) -> None:
    """GET the artifact, reading it at CLIENT_MIB_PER_S: the connection (and a worker thread) stays busy."""
    conn = http.client.HTTPConnection(*host_port(url), timeout=PHASE_TIMEOUT)
    try:
        conn.request("GET", f"{ARTIFACTS}/{path}")
        answer = conn.getresponse()
        if answer.status != 200:
            raise RuntimeError(f"download answered {answer.status}")
        start, got = time.perf_counter(), 0
        while chunk := answer.read(256 * 1024):
            got += len(chunk)
            ahead = got / (CLIENT_MIB_PER_S * 2**20) - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)  # the client's own pace, not a wait for the server
        if got != size:
            raise RuntimeError(f"download was {got} bytes, not {size}")
    finally:
        conn.close()


def short_calls_during_streams(url: str, path: str, artifact: Artifact, calls: int) -> tuple[float, float, float]:
    """p50 and p99 ms of ``calls`` searches while STREAMS downloads run; and the downloads' wall time."""
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            slow_download(url, path, artifact.size)
        except BaseException as exc:  # noqa: BLE001 - reported after the phase
            errors.append(exc)

    started = time.perf_counter()
    streams = [threading.Thread(target=stream, daemon=True) for _ in range(STREAMS)]
    for thread in streams:
        thread.start()
    conn = http.client.HTTPConnection(*host_port(url), timeout=PHASE_TIMEOUT)
    samples: list[float] = []
    deadline = time.monotonic() + PHASE_TIMEOUT
    for _ in range(calls):
        if time.monotonic() > deadline:
            break
        begin = time.perf_counter()
        conn.request("GET", SEARCH + "?max_results=10")
        answer = conn.getresponse()
        answer.read()
        samples.append((time.perf_counter() - begin) * 1000)
        if answer.status != 200:
            raise RuntimeError(f"search answered {answer.status}")
    conn.close()
    for thread in streams:
        thread.join(PHASE_TIMEOUT)
    if errors:
        raise RuntimeError(f"{len(errors)} downloads failed, first: {errors[0]!r}")
    return percentile(samples, 50), percentile(samples, 99), time.perf_counter() - started


def main() -> None:
    parser = bench_parser(__doc__, "threads 8 and 32 only, 5-s load, 16 MiB artifact", "threads.md")
    args = parser.parse_args()
    counts = (8, 32) if args.quick else THREADS
    plan = Plan(
        calls=0, warmup=0, load_seconds=5 if args.quick else 10, rounds=1, clients=64, artifact_mib=0, phase_timeout=PHASE_TIMEOUT
    )
    artifact = Artifact((16 if args.quick else 64) * 1024 * 1024)
    before = load_average()
    rows = []
    with tempfile.TemporaryDirectory(prefix="checkpoint-threads-") as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        mlflow = MlflowServer(Path(tmp) / "mlflow").start()
        try:
            upload(mlflow.url, "threads/artifact.bin", artifact.size, artifact.seed, PHASE_TIMEOUT)
            for threads in counts:
                checkpoint = Checkpoint(
                    Path(tmp) / f"checkpoint-{threads}",
                    mlflow.url,
                    {"CHECKPOINT_THREADS": str(threads), "CHECKPOINT_WORKERS": "2"},
                ).start()
                try:
                    load = run_wrk(checkpoint.url, plan, script)
                    p50, p99, wall = short_calls_during_streams(checkpoint.url, "threads/artifact.bin", artifact, 100)
                    rss = sum(rss_bytes(pid) for pid in checkpoint.pids()) / 2**20
                finally:
                    checkpoint.stop()
                print(
                    f"  threads {threads}: {load.rps:.0f} req/s, p99 {load.p99_ms:.1f} ms; during streams "
                    f"p50 {p50:.1f} / p99 {p99:.1f} ms, streams {wall:.1f} s; RSS {rss:.0f} MiB",
                    flush=True,
                )
                rows.append((threads, load, p50, p99, wall, rss))
        finally:
            mlflow.stop()
    lines = [
        "## Threads per worker (`CHECKPOINT_THREADS`, 2 workers)",
        "",
        f"`checkpoint serve` in front of one `mlflow server` (stock workers), loopback, 2 cores shared by all; "
        f"load average (1 min) {before:.1f} before, {load_average():.1f} after. (b): {STREAMS} clients each "
        f"downloading {artifact.size // 2**20} MiB at {CLIENT_MIB_PER_S} MiB/s at once, and 100 searches one after "
        "another meanwhile.",
        "",
        "| threads | (a) req/s, 64 clients | (a) p99 ms | (b) search p50 ms | (b) search p99 ms | (b) downloads s | RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, load, p50, p99, wall, rss in rows:
        lines.append(f"| {threads} | {load.rps:.0f} | {load.p99_ms:.1f} | {p50:.1f} | {p99:.1f} | {wall:.1f} | {rss:.0f} |")
    publish("\n".join(lines) + "\n", args.output)


if __name__ == "__main__":
    main()
