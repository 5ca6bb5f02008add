"""Checkpoint's proxy measured against MLflow directly and against nginx, in one run.

Usage: .venv/bin/python benchmarks/proxy_bench.py [--quick] [--artifacts-only] [--rounds N]

Twice -- in front of a stock ``mlflow server`` (uvicorn, 4 workers: it never sets
TCP_NODELAY, so a reused keep-alive connection stalls ~40 ms) and in front of one started
with ``--workers 1`` (no stall) -- it starts nginx and ``checkpoint serve`` exactly as an
operator would, all on loopback, and measures each of the three paths:

a. p50/p99 latency of a small registry search, sequential calls on one keep-alive
   connection per path (the paths interleaved in rounds, so machine noise hits all alike);
b. requests/s and p99 latency with 32 concurrent keep-alive clients, driven by ``wrk``
   (a separate C process; a Python thread pool only when wrk is not installed);
c. upload and download throughput of one large artifact, streamed both ways and checked
   by size and CRC-32 -- here a second Checkpoint with ``CHECKPOINT_ZERO_COPY=off`` (the copy
   loops) runs beside the first (zero-copy bodies, the default), interleaved with the others;
d. Checkpoint's RSS (gunicorn master + workers, from /proc) when idle and at its peak
   during b and c.

``--artifacts-only`` runs c (and the RSS during it) alone; ``--rounds`` sets its round trips.

It prints a Markdown table with the targets marked PASS/FAIL and writes it to
``benchmarks/results/proxy.md``. Every loop is bounded in count and in time; only the
processes this script started are stopped, by their PID; temporary directories go away.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from common import (
    MIB,
    Artifact,
    Checkpoint,
    Nginx,
    RssSampler,
    bench_parser,
    cpu_seconds,
    host_port,
    nginx_binary,
    percentile,
    process_tree,
    publish,
)

from checkpoint.demo.mlflow_server import MlflowServer

SEARCH = "/api/2.0/mlflow/registered-models/search"
PATHS = ("direct", "nginx", "checkpoint")
COPY = "checkpoint-copy"  # Checkpoint with CHECKPOINT_ZERO_COPY=off, in the artifact phase only


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does."""

    calls: int  # sequential calls per path for the latency figures
    warmup: int
    load_seconds: float  # one wrk run
    rounds: int  # load runs and artifact round trips per path, in alternating order; the median counts
    clients: int
    artifact_mib: int
    phase_timeout: float  # no single measurement loop runs longer than this


FULL = Plan(calls=1000, warmup=100, load_seconds=10, rounds=3, clients=32, artifact_mib=1024, phase_timeout=300)
QUICK = Plan(calls=200, warmup=30, load_seconds=4, rounds=1, clients=32, artifact_mib=256, phase_timeout=120)


# -- the processes under test ---------------------------------------------------------------


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    calls: int
    reconnects: int


def measure_latency(urls: dict[str, str], plan: Plan) -> dict[str, Latency]:
    """Sequential searches on one keep-alive connection per path.

    The paths take turns in rounds of 10 calls (in rotating order), so machine noise hits
    them alike and no connection idles long enough (uvicorn closes after 5 s) to be dropped.
    """
    connections = {name: http.client.HTTPConnection(*host_port(url), timeout=30) for name, url in urls.items()}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    local_port: dict[str, int] = {}
    reconnects = dict.fromkeys(urls, 0)

    def call(name: str) -> float | None:
        conn = connections[name]
        start = time.perf_counter()
        try:
            conn.request("GET", SEARCH)
            answer = conn.getresponse()
            body = answer.read()
        except http.client.RemoteDisconnected:  # the server dropped the idle connection: count it, go on
            conn.close()
            reconnects[name] += 1
            return None
        elapsed = time.perf_counter() - start
        if answer.status != 200 or b"{" not in body:
            raise RuntimeError(f"{name}: search answered {answer.status}: {body[:200]!r}")
        port = conn.sock.getsockname()[1] if conn.sock else -1
        if local_port.setdefault(name, port) != port:
            reconnects[name] += 1
            local_port[name] = port
        return elapsed

    round_size = 10
    warmup_rounds = math.ceil(plan.warmup / round_size)  # MLflow's first registry calls are slow, pools fill
    names = list(urls)
    deadline = time.monotonic() + plan.phase_timeout
    try:
        for index in range(warmup_rounds + math.ceil(plan.calls / round_size)):
            turn = index % len(names)
            for name in names[turn:] + names[:turn]:
                for _ in range(round_size):
                    elapsed = call(name)
                    if index >= warmup_rounds and elapsed is not None:
                        samples[name].append(elapsed * 1000)
            if time.monotonic() > deadline:
                print(f"  latency: stopped at the {plan.phase_timeout:.0f} s time limit", flush=True)
                break
    finally:
        for conn in connections.values():
            conn.close()
    return {name: Latency(percentile(s, 50), percentile(s, 99), len(s), reconnects[name]) for name, s in samples.items()}


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int
    tool: str
    spread: str = ""  # MLflow's connections per worker process, per run (see upstream_spread)
    # CPU (utime + stime from /proc) per answer during the run, in ms: the proxy's own processes
    # (master and workers; NaN for direct) and MLflow's (its whole process tree) as the scale.
    cpu_ms: float = math.nan
    mlflow_cpu_ms: float = math.nan


WRK_SCRIPT = r"""
-- Stops a thread after a request cap (a safety bound; the run is meant to end on time),
-- and prints the figures as JSON.
local limit = 0
local count = 0
function init(args)
  limit = tonumber(args[1]) or 0
end
function response(status, headers, body)
  count = count + 1
  if limit > 0 and count >= limit then
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, "non2xx": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""
WRK_REQUEST_CAP = 2_000_000


def run_wrk(url: str, plan: Plan, script: Path) -> Load:
    """One wrk run: 32 keep-alive connections on one wrk thread, for plan.load_seconds."""
    command = [
        "wrk",
        "-t1",
        f"-c{plan.clients}",
        f"-d{plan.load_seconds:.0f}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + SEARCH,
        "--",
        str(WRK_REQUEST_CAP),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=plan.load_seconds + 60, check=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{done.stdout}\n{done.stderr}")
    figures = json.loads(line[6:])
    if figures["requests"] >= WRK_REQUEST_CAP:
        print("  wrk: hit the request cap; its requests/s is understated", flush=True)
    return Load(
        rps=figures["requests"] / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=figures["requests"],
        failures=figures["non2xx"] + figures["errors"],
        tool="wrk",
    )


def run_threads(url: str, plan: Plan) -> Load:
    """Fallback without wrk: Python threads, one keep-alive connection each (may be client-bound)."""
    deadline = time.monotonic() + plan.load_seconds
    per_client = WRK_REQUEST_CAP // plan.clients
    times: list[list[float]] = [[] for _ in range(plan.clients)]
    failures = [0] * plan.clients

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(*host_port(url), timeout=10)
        try:
            while time.monotonic() < deadline and len(times[index]) < per_client:
                start = time.perf_counter()
                try:
                    conn.request("GET", SEARCH)
                    answer = conn.getresponse()
                    answer.read()
                    ok = answer.status == 200
                except (OSError, http.client.HTTPException):
                    conn.close()
                    ok = False
                times[index].append(time.perf_counter() - start)
                failures[index] += not ok
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(plan.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=plan.load_seconds + 30)
    elapsed = time.monotonic() - started
    flat = [t * 1000 for per in times for t in per]
    return Load(len(flat) / elapsed, percentile(flat, 50), percentile(flat, 99), len(flat), sum(failures), "python")


def _orders(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, path) in alternating order, A B C then C B A, so drift hits every path alike."""
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            yield index, name


def upstream_spread(port: int) -> str:
    """How the established connections to MLflow's port are shared among its worker processes: "26+3+2+1".

    uvicorn's workers share one listening socket and each accepts new connections in bursts,
    so which worker ends up with which connection is luck; with a multi-worker MLflow that
    decides requests/s at 32 clients as much as the proxy does. Empty when ``ss`` cannot tell.
    """
    try:
        listing = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    owners = [field.split(",")[0] for field in listing.split("pid=")[1:]]
    counts = sorted((owners.count(pid) for pid in set(owners)), reverse=True)
    return "+".join(map(str, counts))


Pids = Callable[[], list[int]]


def measure_load(
    urls: dict[str, str], plan: Plan, workdir: Path, upstream_port: int, pids: dict[str, Pids], mlflow_pids: Pids
) -> dict[str, Load]:
    """Each path under 32 clients for plan.rounds runs; the median run's figures count.

    Around each run the CPU time of the path's own processes (``pids``: nginx's master and
    workers, Checkpoint's; none for direct) and of MLflow's is read from /proc, and divided by
    the answers: CPU per call, which unlike requests/s does not depend on who else wants the cores.
    """
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    use_wrk = shutil.which("wrk") is not None
    runs: dict[str, list[Load]] = {name: [] for name in urls}
    spreads: dict[str, list[str]] = {name: [] for name in urls}
    for _, name in _orders(list(urls), plan.rounds):
        sample = threading.Timer(plan.load_seconds / 2, lambda n=name: spreads[n].append(upstream_spread(upstream_port)))
        own = pids[name]() if name in pids else []
        mlflow_before, own_before = cpu_seconds(mlflow_pids()), cpu_seconds(own)
        sample.start()
        load = run_wrk(urls[name], plan, script) if use_wrk else run_threads(urls[name], plan)
        sample.join()
        answers = max(load.requests, 1)
        load.mlflow_cpu_ms = (cpu_seconds(mlflow_pids()) - mlflow_before) / answers * 1000
        if own:
            load.cpu_ms = (cpu_seconds(own) - own_before) / answers * 1000
        print(
            f"  load {name}: {load.rps:.0f} req/s, p99 {load.p99_ms:.1f} ms, {load.failures} failed, "
            f"CPU per call {load.cpu_ms:.3f} ms (MLflow {load.mlflow_cpu_ms:.3f} ms), "
            f"MLflow connections per worker {spreads[name][-1] or '?'}",
            flush=True,
        )
        runs[name].append(load)
        time.sleep(1)  # let TIME_WAITs and run queues settle between runs
    return {
        name: Load(
            rps=statistics.median(r.rps for r in rs),
            p50_ms=statistics.median(r.p50_ms for r in rs),
            p99_ms=statistics.median(r.p99_ms for r in rs),
            requests=sum(r.requests for r in rs),
            failures=sum(r.failures for r in rs),
            tool=rs[0].tool,
            spread=" | ".join(x or "?" for x in spreads[name]),
            cpu_ms=statistics.median(r.cpu_ms for r in rs),
            mlflow_cpu_ms=statistics.median(r.mlflow_cpu_ms for r in rs),
        )
        for name, rs in runs.items()
    }


@dataclass
class Transfer:
    upload_mibs: float
    download_mibs: float
    cpu_s_per_gib: float | None = None  # the proxy's CPU (utime+stime) per GiB moved, up and down together


def measure_transfers(
    urls: dict[str, str], plan: Plan, mlflow_root: Path, label: str, pids: dict[str, Callable[[], list[int]]] | None = None
) -> dict[str, Transfer]:
    """Upload then download one artifact per path and round; each file is deleted after its round trip.
    For the paths in ``pids`` (a proxy's processes) the CPU they spent per GiB moved is kept too."""
    size = plan.artifact_mib * MIB
    artifact = Artifact(size)
    pids = pids or {}

    ups: dict[str, list[float]] = {name: [] for name in urls}
    downs: dict[str, list[float]] = {name: [] for name in urls}
    cpus: dict[str, list[float]] = {name: [] for name in urls}
    for index, name in _orders(list(urls), plan.rounds):
        path = f"bench/{label}/{name}/{index}.bin"
        before = cpu_seconds(pids[name]()) if name in pids else 0.0
        up_s, down_s = artifact.round_trip(urls[name], path, plan.phase_timeout)
        if name in pids:
            cpus[name].append((cpu_seconds(pids[name]()) - before) / (2 * size / (1024 * MIB)))
        up, down = size / MIB / up_s, size / MIB / down_s
        cpu = f", proxy CPU {cpus[name][-1]:.2f} s/GiB" if name in pids else ""
        print(f"  artifact {name}: up {up:.0f} MiB/s, down {down:.0f} MiB/s{cpu}", flush=True)
        ups[name].append(up)
        downs[name].append(down)
        stored = mlflow_root / "mlartifacts" / path
        if stored.is_file():
            stored.unlink()
    return {
        name: Transfer(
            statistics.median(ups[name]), statistics.median(downs[name]), statistics.median(cpus[name]) if cpus[name] else None
        )
        for name in urls
    }


# -- one server, all paths ------------------------------------------------------------------


@dataclass
class ServerResult:
    label: str
    title: str
    latency: dict[str, Latency] | None
    load: dict[str, Load] | None
    transfers: dict[str, Transfer]
    rss_idle: int
    rss_peak_load: int
    rss_peak_transfer: int
    checkpoint_workers: int
    notes: list[str] = field(default_factory=list)
    rss_copy: tuple[int, int] = (0, 0)  # the copy-loop Checkpoint's RSS: idle, peak during the transfers


def bench_server(
    label: str, title: str, workers: int | None, plan: Plan, tmp: Path, artifacts_only: bool = False
) -> ServerResult:
    started = time.monotonic()
    print(f"== {title}", flush=True)
    with ExitStack() as stack:
        mlflow = MlflowServer(tmp / f"mlflow-{label}", workers=workers).start()
        stack.callback(mlflow.stop)
        nginx = Nginx(tmp / f"nginx-{label}", mlflow.port).start()
        stack.callback(nginx.stop)
        checkpoint = Checkpoint(tmp / f"checkpoint-{label}", mlflow.url).start()
        stack.callback(checkpoint.stop)
        copying = Checkpoint(tmp / f"checkpoint-copy-{label}", mlflow.url, env={"CHECKPOINT_ZERO_COPY": "off"}).start()
        stack.callback(copying.stop)
        urls = {"direct": mlflow.url, "nginx": nginx.url, "checkpoint": checkpoint.url}
        print(f"  started in {time.monotonic() - started:.0f} s", flush=True)

        latency: dict[str, Latency] | None = None
        load: dict[str, Load] | None = None
        time.sleep(1)
        rss_idle, rss_peak_load = RssSampler(checkpoint).now(), 0
        copy_idle = RssSampler(copying).now()
        if not artifacts_only:
            latency = measure_latency(urls, plan)
            for name, lat in latency.items():
                print(f"  latency {name}: p50 {lat.p50_ms:.2f} ms, p99 {lat.p99_ms:.2f} ms ({lat.calls} calls)", flush=True)
            with RssSampler(checkpoint) as sampler:
                load = measure_load(
                    urls,
                    plan,
                    tmp,
                    mlflow.port,
                    pids={"nginx": nginx.pids, "checkpoint": checkpoint.pids},
                    mlflow_pids=lambda: process_tree(mlflow.process.pid) if mlflow.process else [],
                )
            rss_peak_load = sampler.peak
        with RssSampler(checkpoint) as sampler, RssSampler(copying) as copy_sampler:
            transfers = measure_transfers(
                {**urls, COPY: copying.url},
                plan,
                mlflow.root,
                label,
                pids={"nginx": nginx.pids, "checkpoint": checkpoint.pids, COPY: copying.pids},
            )
        rss_peak_transfer = sampler.peak
        result = ServerResult(
            label,
            title,
            latency,
            load,
            transfers,
            rss_idle,
            rss_peak_load,
            rss_peak_transfer,
            len(checkpoint.pids()) - 1,
            rss_copy=(copy_idle, copy_sampler.peak),
        )
        for name, lat in (latency or {}).items():
            if lat.reconnects:
                result.notes.append(f"{name}: the latency client reconnected {lat.reconnects} times")
        for name, ld in (load or {}).items():
            if ld.failures:
                result.notes.append(f"{name}: {ld.failures} failed requests under load")
        if workers != 1 and load is not None:
            spread = "; ".join(f"{name} {ld.spread}" for name, ld in load.items())
            result.notes.append(f"MLflow's connections per worker process under load, per run: {spread}")
    print(f"  {title}: {time.monotonic() - started:.0f} s", flush=True)
    return result


# -- the report -----------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _delta(value: float) -> str:
    return f"{value:+.2f} ms"


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def transfer_table(r: ServerResult, plan: Plan) -> list[str]:
    """The artifact phase: each path's MiB/s and its share of direct's, both Checkpoint paths side by side."""
    size = f"{plan.artifact_mib} MiB" if plan.artifact_mib < 1024 else f"{plan.artifact_mib // 1024} GiB"
    runs = f"median of {plan.rounds}" if plan.rounds > 1 else "1 run"
    names = {"direct": "direct", "nginx": "nginx", "checkpoint": "Checkpoint, zero-copy (splice)", COPY: "Checkpoint, copy loops"}
    direct = r.transfers["direct"]
    lines = [
        f"#### {r.title}: artifacts ({size}, {runs}, interleaved)",
        "",
        "| path | upload MiB/s | upload vs direct | download MiB/s | download vs direct | proxy CPU s per GiB moved |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, name in names.items():
        t = r.transfers[key]
        cpu = "–" if t.cpu_s_per_gib is None else f"{t.cpu_s_per_gib:.2f}"
        lines.append(
            f"| {name} | {t.upload_mibs:.0f} | {_pct(t.upload_mibs / direct.upload_mibs)} "
            f"| {t.download_mibs:.0f} | {_pct(t.download_mibs / direct.download_mibs)} | {cpu} |"
        )
    lines += [
        "",
        f"RSS during the transfers: zero-copy Checkpoint idle {r.rss_idle / MIB:.0f} MiB, "
        f"peak {r.rss_peak_transfer / MIB:.0f} MiB "
        f"({(r.rss_peak_transfer - r.rss_idle) / MIB:+.0f} MiB); copy-loop Checkpoint idle {r.rss_copy[0] / MIB:.0f} MiB, "
        f"peak {r.rss_copy[1] / MIB:.0f} MiB ({(r.rss_copy[1] - r.rss_copy[0]) / MIB:+.0f} MiB).",
    ]
    return lines


def server_table(r: ServerResult, plan: Plan) -> list[str]:
    if r.latency is None or r.load is None:
        return transfer_table(r, plan)
    d, n, c = (r.latency[p] for p in PATHS)
    ld, ln, lc = (r.load[p] for p in PATHS)
    td, tn, tc = (r.transfers[p] for p in PATHS)
    size = f"{plan.artifact_mib} MiB" if plan.artifact_mib < 1024 else f"{plan.artifact_mib // 1024} GiB"
    runs = f"median of {plan.rounds}" if plan.rounds > 1 else "1 run"
    rows = [
        (f"p50 latency, search, 1 keep-alive conn ({d.calls} calls), ms", d.p50_ms, n.p50_ms, c.p50_ms, "ms"),
        ("p99 latency, same, ms", d.p99_ms, n.p99_ms, c.p99_ms, "ms"),
        (
            f"requests/s, {plan.clients} keep-alive clients ({ld.tool}, {runs} × {plan.load_seconds:.0f} s)",
            ld.rps,
            ln.rps,
            lc.rps,
            "ratio",
        ),
        (f"p99 latency, {plan.clients} clients, ms", ld.p99_ms, ln.p99_ms, lc.p99_ms, "ms"),
        (f"proxy CPU per call, {plan.clients} clients, ms", ld.cpu_ms, ln.cpu_ms, lc.cpu_ms, "cpu"),
        (
            f"MLflow CPU per call, {plan.clients} clients, ms (the scale)",
            ld.mlflow_cpu_ms,
            ln.mlflow_cpu_ms,
            lc.mlflow_cpu_ms,
            "plain",
        ),
        (f"upload {size} ({runs}), MiB/s", td.upload_mibs, tn.upload_mibs, tc.upload_mibs, "ratio"),
        (f"download {size} ({runs}), MiB/s", td.download_mibs, tn.download_mibs, tc.download_mibs, "ratio"),
    ]
    lines = [
        f"### {r.title}",
        "",
        "| measure | direct | nginx | Checkpoint | Checkpoint vs direct | Checkpoint vs nginx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, vd, vn, vc, kind in rows:
        if kind == "ms":
            lines.append(f"| {label} | {_ms(vd)} | {_ms(vn)} | {_ms(vc)} | {_delta(vc - vd)} | {_delta(vc - vn)} |")
        elif kind == "cpu":  # direct has no proxy: only the ratio to nginx means something
            lines.append(f"| {label} | – | {vn:.3f} | {vc:.3f} | – | {vc / vn:.1f} × |")
        elif kind == "plain":
            lines.append(f"| {label} | {vd:.3f} | {vn:.3f} | {vc:.3f} | | |")
        else:
            lines.append(f"| {label} | {vd:.0f} | {vn:.0f} | {vc:.0f} | {_pct(vc / vd)} | {_pct(vc / vn)} |")
    lines += [
        "",
        f"Checkpoint RSS ({r.checkpoint_workers} gunicorn workers + master): idle {r.rss_idle / MIB:.0f} MiB, "
        f"peak under load {r.rss_peak_load / MIB:.0f} MiB, "
        f"peak during the transfers {r.rss_peak_transfer / MIB:.0f} MiB "
        f"(growth {(max(r.rss_peak_load, r.rss_peak_transfer) - r.rss_idle) / MIB:+.0f} MiB).",
    ]
    lines += [f"Note: {note}." for note in r.notes]
    return lines + [""] + transfer_table(r, plan)


def targets(stock: ServerResult, fast: ServerResult) -> list[tuple[str, str, bool]]:
    """(target, measured, passed) for each target of the brief."""
    out: list[tuple[str, str, bool]] = []
    if stock.latency is None or fast.latency is None or stock.load is None or fast.load is None:
        return artifact_targets(stock, fast)
    d, n, c = (fast.latency[p] for p in PATHS)
    out.append(("no-stall server: p50 added over direct ≤ 1 ms", _delta(c.p50_ms - d.p50_ms), c.p50_ms - d.p50_ms <= 1))
    out.append(("no-stall server: p99 added over direct ≤ 3 ms", _delta(c.p99_ms - d.p99_ms), c.p99_ms - d.p99_ms <= 3))
    out.append(("no-stall server: p50 within 1 ms of nginx", _delta(c.p50_ms - n.p50_ms), c.p50_ms - n.p50_ms <= 1))
    sd, _, sc = (stock.latency[p] for p in PATHS)
    out.append(
        (
            "stock server: Checkpoint p50 and p99 no slower than direct",
            f"p50 {_delta(sc.p50_ms - sd.p50_ms)}, p99 {_delta(sc.p99_ms - sd.p99_ms)}",
            sc.p50_ms <= sd.p50_ms and sc.p99_ms <= sd.p99_ms,
        )
    )
    for r, name in ((stock, "stock"), (fast, "no-stall")):
        ratio = r.load["checkpoint"].rps / r.load["nginx"].rps
        out.append((f"{name} server: requests/s at {r.load['nginx'].tool} 32 clients ≥ 90 % of nginx", _pct(ratio), ratio >= 0.9))
    out += artifact_targets(stock, fast)
    for r, name in ((stock, "stock"), (fast, "no-stall")):
        times = r.load["checkpoint"].cpu_ms / r.load["nginx"].cpu_ms
        out.append((f"{name} server: proxy CPU per call ≤ 3 × nginx's", f"{times:.1f} ×", times <= 3))
    growth = max(max(r.rss_peak_load, r.rss_peak_transfer) - r.rss_idle for r in (stock, fast))
    out.append(("Checkpoint RSS growth over idle < 64 MiB", f"{growth / MIB:+.0f} MiB", growth < 64 * MIB))
    return out


def artifact_targets(stock: ServerResult, fast: ServerResult) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    for r, name in ((stock, "stock"), (fast, "no-stall")):
        up = r.transfers["checkpoint"].upload_mibs / r.transfers["direct"].upload_mibs
        down = r.transfers["checkpoint"].download_mibs / r.transfers["direct"].download_mibs
        out.append((f"{name} server: artifact upload ≥ 95 % of direct", _pct(up), up >= 0.95))
        out.append((f"{name} server: artifact download ≥ 95 % of direct", _pct(down), down >= 0.95))
    return out


def report(stock: ServerResult, fast: ServerResult, plan: Plan, quick: bool, seconds: float, load_before: float) -> str:
    versions = _versions()
    chunk = os.environ.get("CHECKPOINT_CHUNK_SIZE") or str(_setting_default("chunk_size"))
    lines = [
        f"## Proxy benchmark{' (quick)' if quick else ''}: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{os.cpu_count()} cores shared by MLflow, nginx (worker_processes auto), Checkpoint (`checkpoint serve`: "
        f"{stock.checkpoint_workers} workers, chunk {int(chunk) // 1024} KiB) and the load generator; loopback only. "
        f"Load average (1 min) before the run {load_before:.1f}, after it {os.getloadavg()[0]:.1f}. "
        f"{versions}. Run took {seconds / 60:.1f} min.",
        "",
    ]
    for r in (stock, fast):
        lines += server_table(r, plan) + [""]
    lines += ["### Targets", "", "| target | measured | result |", "|---|---:|:---:|"]
    lines += [f"| {name} | {value} | {'PASS' if ok else 'FAIL'} |" for name, value, ok in targets(stock, fast)]
    return "\n".join(lines) + "\n"


def _setting_default(name: str):
    from dataclasses import fields

    from checkpoint.settings import Settings

    return next(f.default for f in fields(Settings) if f.name == name)


def _versions() -> str:
    from importlib.metadata import version

    nginx = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    wrk = (
        "wrk " + (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1:2] or ["?"])[0]
        if shutil.which("wrk")
        else "no wrk"
    )
    return (
        f"Python {platform.python_version()}, mlflow {version('mlflow')}, gunicorn {version('gunicorn')}, "
        f"urllib3 {version('urllib3')}, nginx {nginx}, {wrk}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer calls, shorter load, 256 MiB artifact", "proxy.md")
    parser.add_argument("--artifacts-only", action="store_true", help="only the artifact phase (c) and its RSS")
    parser.add_argument("--rounds", type=int, choices=range(1, 10), help="artifact round trips per path (default: the plan's)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = replace(plan, rounds=args.rounds)
    if not Path(nginx_binary()).exists():
        parser.error("nginx is not installed (apt-get install nginx)")
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk): falling back to Python threads, which may be client-bound")

    started, load_before = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="checkpoint-bench-") as name:
        tmp = Path(name)
        only = args.artifacts_only
        stock = bench_server("stock", "MLflow stock: uvicorn, 4 workers (40 ms keep-alive stall)", None, plan, tmp, only)
        fast = bench_server("nostall", "MLflow --workers 1 (no stall)", 1, plan, tmp, only)
    publish(report(stock, fast, plan, args.quick, time.monotonic() - started, load_before), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
