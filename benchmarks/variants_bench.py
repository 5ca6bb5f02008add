"""Checkpoint variants side by side: CPU per proxied call, each from its own source tree, with nginx.

One ``mlflow server --workers 1``, one nginx, one ``checkpoint serve`` per variant (``NAME=SRC[@THREADS]``,
SRC a source tree such as a git worktree), ``wrk -t1 -c32`` on the registry search for ``--seconds`` per
leg, legs in alternating order, medians. CPU per call = utime+stime of the proxy's processes / answers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Nginx, children, cpu_seconds, load_average, stop_process
from proxy_bench import WRK_SCRIPT, Plan, run_wrk

from checkpoint.demo.mlflow_server import MlflowServer, free_port, wait_http


def switches(pids: list[int]) -> int:
    """Voluntary context switches of every thread of these processes so far (/proc/<pid>/task/*/status)."""
    total = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            total += int(text.split("voluntary_ctxt_switches:", 1)[1].split()[0])
    return total


def start_checkpoint(src: str, threads: int, data: Path, upstream: str) -> tuple[subprocess.Popen, str]:
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "CHECKPOINT_REGISTRY_URL": upstream, "CHECKPOINT_DATA_DIR": str(data)}
    env.pop("CHECKPOINT_DATABASE_URL", None)
    env["CHECKPOINT_THREADS"] = str(threads)
    with (data / "log").open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "checkpoint.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/checkpoint/healthz", timeout=90, process=process, log=data / "log")
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variants", nargs="+", help="NAME=SRC[@THREADS]")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", type=int, default=5, help="registered models, so the search answers a few hundred bytes")
    args = parser.parse_args()
    plan = Plan(
        calls=0,
        warmup=0,
        load_seconds=args.seconds,
        rounds=args.rounds,
        clients=32,
        artifact_mib=0,
        phase_timeout=args.seconds * 4,
    )
    tmp = Path(tempfile.mkdtemp(prefix="variants-"))
    script = tmp / "wrk.lua"
    script.write_text(WRK_SCRIPT)
    load_before = load_average()
    mlflow = MlflowServer(tmp / "mlflow", workers=1).start()
    started: list[subprocess.Popen] = []
    nginx = None
    try:
        for i in range(args.models):
            request = urllib.request.Request(
                mlflow.url + "/api/2.0/mlflow/registered-models/create",
                data=json.dumps({"name": f"model-{i}", "description": "x" * 40}).encode(),
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request).read()
        nginx = Nginx(tmp / "nginx", upstream_port=int(mlflow.url.rsplit(":", 1)[1])).start()
        legs: dict[str, tuple[str, list[int]]] = {"nginx": (nginx.url, nginx.pids())}
        for spec in args.variants:
            name, _, rest = spec.partition("=")
            src, _, threads = rest.partition("@")
            process, url = start_checkpoint(src, int(threads or 32), tmp / name, mlflow.url)
            started.append(process)
            legs[name] = (url, [process.pid, *children(process.pid)])
        names = list(legs)
        results: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else reversed(names):
                url, pids = legs[name]
                before, waits = cpu_seconds(pids), switches(pids)
                load = run_wrk(url, plan, script)
                answers = max(load.requests, 1)
                cpu = (cpu_seconds(pids) - before) / answers * 1000
                results[name].append((cpu, load.requests / args.seconds, (switches(pids) - waits) / answers))
        nginx_ms = statistics.median(c for c, _, _ in results["nginx"])
        print(f"load average before {load_before:.1f}, after {load_average():.1f}; {args.rounds} x {args.seconds:g} s per leg")
        print("| variant | CPU per call, ms | × nginx | req/s | voluntary switches per call | runs (ms) |")
        print("|---|---:|---:|---:|---:|---|")
        for name in names:
            cpu = statistics.median(c for c, _, _ in results[name])
            rps = statistics.median(r for _, r, _ in results[name])
            waits = statistics.median(w for _, _, w in results[name])
            runs = ", ".join(f"{c:.3f}" for c, _, _ in results[name])
            print(f"| {name} | {cpu:.3f} | {cpu / nginx_ms:.1f} × | {rps:.0f} | {waits:.1f} | {runs} |")
    finally:
        for process in started:
            stop_process(process, signal.SIGINT)  # gunicorn's quick shutdown, as common.Checkpoint
        if nginx is not None:
            nginx.stop()
        mlflow.stop()


if __name__ == "__main__":
    main()
