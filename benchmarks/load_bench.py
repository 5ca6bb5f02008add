"""Mixed UI/API traffic from many concurrent clients through Checkpoint, and the same mix straight to MLflow.

    .venv/bin/python benchmarks/load_bench.py                 # 200 clients × 60 s each way
    .venv/bin/python benchmarks/load_bench.py --quick         # 20 clients × 10 s
    .venv/bin/python benchmarks/load_bench.py --clients 50 --seconds 30 --no-direct

A real ``mlflow server`` (stock: uvicorn, 4 workers) is seeded with a few models, versions
and runs (params, metric histories, small artifacts); ``checkpoint serve`` runs in front of
it with its default settings. Each client is a thread with one keep-alive connection that
picks its next call at random from a weighted mix (``KINDS``): MLflow UI page loads (the
index with Checkpoint's script injected, static assets cold and revalidated), MLflow API
reads, artifact listings and small downloads, Checkpoint's pages and API, the panel's
calls, and a small share of governed calls (answered 403 with a promote request: expected,
not errors). The direct run sends the same mix minus everything that only Checkpoint
answers. Reported: requests, requests/s, answers by status with every unexpected one named,
each 5xx attributed to MLflow (passed through) or Checkpoint (its own 502/504 JSON or page,
a crash, or any 5xx on /checkpoint/), p50/p99 per 10-s window, and Checkpoint's RSS (master
+ workers, /proc) sampled every second and summarised per window. Loopback only; every
loop is bounded in count and time; only processes this script started are stopped.

The nginx leg (``--no-nginx`` to skip it): nginx from ``nginx.conf.template`` in front of the
same MLflow, and Checkpoint, each sent the direct run's mix (the only mix nginx can pass: the
governed calls would be applied) in alternating order, ``--rounds`` times each; the median run
counts. Around every run the CPU time of the proxy's processes (master and workers) and of
MLflow's is read from /proc and divided by the answers: CPU per call, the figure that does not
depend on who else wants the two cores.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from common import (
    MIB,
    Checkpoint,
    Nginx,
    RssSampler,
    bench_parser,
    cpu_seconds,
    host_port,
    load_average,
    percentile,
    process_tree,
    publish,
    servers,
)
from seed import Registry, seed_registry

WINDOW = 10.0  # seconds per row of the over-time tables
DIRECT_LABEL = "direct to MLflow"
NGINX_LABEL = "through nginx (direct mix)"
SAME_MIX_LABEL = "through Checkpoint (direct mix)"
PER_CLIENT_CAP = 1_000_000  # a second bound besides the deadline
SOCKET_TIMEOUT = 30.0
HEAD_BYTES = 4096  # of each answer kept: enough for MLflow's index page and to attribute a 5xx


@dataclass(frozen=True)
class Plan:
    clients: int
    seconds: float
    seed: int = 1


FULL = Plan(clients=200, seconds=60)
QUICK = Plan(clients=20, seconds=10)


# -- the mix --------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    expect: frozenset[int]
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    validator_key: str = ""  # remember this answer's ETag / Last-Modified under this key


@dataclass
class Target:
    """What the calls are built from: the seeded registry and a few real promote requests."""

    registry: Registry
    assets: list[str]
    request_ids: list[int]


@dataclass
class ClientState:
    rng: random.Random
    validators: dict[str, dict[str, str]] = field(default_factory=dict)

    def conditional(self, key: str) -> dict[str, str]:
        return dict(self.validators.get(key, {}))


OK = frozenset({200})
OK_OR_304 = frozenset({200, 304})
GOVERNED = frozenset({403})
JSON = {"Content-Type": "application/json"}


def _json(method: str, path: str, payload: dict, expect: frozenset[int] = OK) -> Call:
    return Call(method, path, expect, json.dumps(payload).encode(), dict(JSON))


def _version(t: Target, s: ClientState) -> tuple[str, str]:
    model = s.rng.choice(t.registry.models)
    return model, s.rng.choice(t.registry.versions[model])


def _challenger(t: Target, s: ClientState) -> tuple[str, str]:
    """A version that is not the champion (version 1): setting the alias to the version it already
    names is a no-op Checkpoint answers as MLflow would (200), not a governed change."""
    model = s.rng.choice(t.registry.models)
    return model, s.rng.choice(t.registry.versions[model][1:])


def _run_file(t: Target, s: ClientState, name: str) -> str:
    return f"{s.rng.choice(t.registry.artifact_dirs)}/{name}"


Build = Callable[[Target, ClientState], Call]


def get(path: Callable[[Target, ClientState], str], *, revalidate: bool = False, html: bool = False) -> Build:
    """A GET of ``path(target, state)``; with ``revalidate``, sent with the validators of this client's
    last answer for the same path, as a browser's cache does (so 304 is as good as 200)."""

    def build(t: Target, s: ClientState) -> Call:
        where = path(t, s)
        if revalidate:
            return Call("GET", where, OK_OR_304, headers=s.conditional(where), validator_key=where)
        return Call("GET", where, OK, headers={"Accept": "text/html,application/xhtml+xml"} if html else {})

    return build


def ui_runs_search(t: Target, s: ClientState) -> Call:
    payload = {"experiment_ids": [t.registry.experiment_id], "max_results": 50, "order_by": ["attributes.start_time DESC"]}
    return _json("POST", "/ajax-api/2.0/mlflow/runs/search", payload)


def _model(t: Target, s: ClientState) -> str:
    return quote(s.rng.choice(t.registry.models))


def _run(t: Target, s: ClientState) -> str:
    return s.rng.choice(t.registry.runs)


def _request(t: Target, s: ClientState) -> int:
    return s.rng.choice(t.request_ids)


def _version_query(t: Target, s: ClientState) -> str:
    model, version = _version(t, s)
    return urlencode({"name": model, "version": version})


def governed_alias(t: Target, s: ClientState) -> Call:
    model, version = _challenger(t, s)
    return _json(
        "POST", "/api/2.0/mlflow/registered-models/alias", {"name": model, "alias": "champion", "version": version}, GOVERNED
    )


def governed_stage(t: Target, s: ClientState) -> Call:
    model, version = _challenger(t, s)
    payload = {
        "name": model,
        "version": version,
        "stage": s.rng.choice(["Staging", "Production"]),
        "archive_existing_versions": False,
    }
    return _json("POST", "/api/2.0/mlflow/model-versions/transition-stage", payload, GOVERNED)


def governed_ui_alias(t: Target, s: ClientState) -> Call:
    model, version = _challenger(t, s)
    return _json(
        "POST", "/ajax-api/2.0/mlflow/registered-models/alias", {"name": model, "alias": "champion", "version": version}, GOVERNED
    )


@dataclass(frozen=True)
class Kind:
    name: str
    group: str
    weight: float
    build: Build
    checkpoint_only: bool = False  # left out of the direct run


# Weights are shares of calls (they need not add up to 100). A UI page load is the index plus
# a handful of assets, most of them revalidated from the browser's cache.
API, AJAX, ART, CP = "/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/2.0/mlflow-artifacts/artifacts", "/checkpoint"

# fmt: off
KINDS = [
    Kind("GET / (MLflow UI, script injected)", "MLflow UI", 3, get(lambda t, s: "/", html=True)),
    Kind("static asset, revalidated", "MLflow UI", 6, get(lambda t, s: s.rng.choice(t.assets), revalidate=True)),
    Kind("static asset, cold (up to 4.4 MB)", "MLflow UI", 1, get(lambda t, s: s.rng.choice(t.assets))),
    Kind("UI runs/search (POST)", "MLflow UI", 5, ui_runs_search),
    Kind("UI registered-models/get", "MLflow UI", 4, get(lambda t, s: f"{AJAX}/registered-models/get?name={_model(t, s)}")),
    Kind("registered-models/search", "MLflow API", 9, get(lambda t, s: f"{API}/registered-models/search?max_results=50")),
    Kind("model-versions/get", "MLflow API", 9, get(lambda t, s: f"{API}/model-versions/get?{_version_query(t, s)}")),
    Kind("model-versions/search", "MLflow API", 4,
         get(lambda t, s: f"{API}/model-versions/search?" + urlencode({"filter": f"name='{_model(t, s)}'"}))),
    Kind("registered-models/alias (GET)", "MLflow API", 4,
         get(lambda t, s: f"{API}/registered-models/alias?name={_model(t, s)}&alias=champion")),
    Kind("runs/get", "MLflow API", 9, get(lambda t, s: f"{API}/runs/get?run_id={_run(t, s)}")),
    Kind("metrics/get-history", "MLflow API", 7,
         get(lambda t, s: f"{API}/metrics/get-history?run_id={_run(t, s)}&metric_key={s.rng.choice(t.registry.metric_keys)}")),
    Kind("artifact listing (proxy API)", "artifacts", 4, get(lambda t, s: f"{ART}?path={quote(_run_file(t, s, 'notes'))}")),
    Kind("artifact listing (UI)", "artifacts", 3, get(lambda t, s: f"{AJAX}/artifacts/list?run_id={_run(t, s)}&path=data")),
    Kind("artifact download, text", "artifacts", 3, get(lambda t, s: f"{ART}/{_run_file(t, s, 'notes/readme.txt')}")),
    Kind("artifact download, 64 KiB", "artifacts", 3, get(lambda t, s: f"{ART}/{_run_file(t, s, 'data/blob.bin')}")),
    Kind("get-artifact (UI), 64 KiB", "artifacts", 2,
         get(lambda t, s: f"/get-artifact?path=data/blob.bin&run_uuid={_run(t, s)}")),
    Kind("Checkpoint request list page", "Checkpoint pages", 3,
         get(lambda t, s: s.rng.choice([f"{CP}/requests", f"{CP}/requests?state=all"])), True),
    Kind("Checkpoint request page with diff", "Checkpoint pages", 3, get(lambda t, s: f"{CP}/requests/{_request(t, s)}"), True),
    Kind("API: list requests", "Checkpoint API", 2, get(lambda t, s: f"{CP}/api/v1/requests?limit=25"), True),
    Kind("API: get request", "Checkpoint API", 2, get(lambda t, s: f"{CP}/api/v1/requests/{_request(t, s)}"), True),
    Kind("API: which (asks MLflow)", "Checkpoint API", 1,
         get(lambda t, s: f"{CP}/api/v1/which?model={_model(t, s)}&alias=champion"), True),
    Kind("panel: summary (ETag)", "panel", 5,
         get(lambda t, s: f"{CP}/api/v1/summary?model={_model(t, s)}", revalidate=True), True),
    Kind("panel: script/stylesheet (ETag)", "panel", 1,
         get(lambda t, s: s.rng.choice([f"{CP}/static/panel.js", f"{CP}/static/panel.css"]), revalidate=True), True),
    Kind("governed: set champion alias (API)", "governed", 1, governed_alias, True),
    Kind("governed: stage transition (API)", "governed", 0.5, governed_stage, True),
    Kind("governed: set champion alias (UI)", "governed", 0.5, governed_ui_alias, True),
]
# fmt: on


# -- the load generator ---------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    done: float  # seconds since the run began
    latency: float  # seconds
    kind: int
    status: int  # 0: no answer (connection error or timeout)
    blame: str = ""  # for a 5xx: "mlflow" or "checkpoint"
    note: str = ""  # what was wrong with an unexpected answer


def attribute_5xx(path: str, head: bytes) -> str:
    """Who produced a 5xx seen through Checkpoint.

    Checkpoint's own failures are recognisable: its 502/504 (proxy.py, gateway.py) carry a
    JSON message or an HTML page naming Checkpoint; a crash in its WSGI code is gunicorn's
    bare HTML error page; anything under /checkpoint/ is its own. Everything else was
    answered by MLflow and passed through unchanged.
    """
    text = head.decode("utf-8", "replace")
    if path.startswith("/checkpoint/"):
        return "checkpoint"
    if '"message": "Checkpoint' in text or "Checkpoint</title>" in text or text.startswith("<html>\n  <head>\n    <title>"):
        return "checkpoint"
    return "mlflow"


class Client(threading.Thread):
    """One simulated user: a keep-alive connection, calls picked from the mix until the deadline."""

    def __init__(
        self,
        index: int,
        url: str,
        target: Target,
        kinds: list[Kind],
        plan: Plan,
        t0: float,
        deadline: float,
        via_checkpoint: bool,
    ) -> None:
        super().__init__(daemon=True, name=f"client-{index}")
        self.url = url
        self.target = target
        self.kinds = kinds
        self.cum_weights = list(_accumulate(k.weight for k in kinds))
        self.t0, self.deadline = t0, deadline
        self.via_checkpoint = via_checkpoint
        self.state = ClientState(random.Random(plan.seed * 100_003 + index))
        token = base64.b64encode(f"user{index % 20:02d}:x".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}
        self.answers: list[Answer] = []
        self.connects = 0
        self.retries = 0
        self.conn: http.client.HTTPConnection | None = None
        self.buffer = bytearray(256 * 1024)

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline and len(self.answers) < PER_CLIENT_CAP:
                index = self.state.rng.choices(range(len(self.kinds)), cum_weights=self.cum_weights)[0]
                self.answers.append(self.one(index))
        finally:
            if self.conn is not None:
                self.conn.close()

    def one(self, index: int) -> Answer:
        call = self.kinds[index].build(self.target, self.state)
        start = time.monotonic()
        try:
            status, head, validators = self.send(call)
        except (OSError, http.client.HTTPException) as exc:
            self.drop()
            end = time.monotonic()
            return Answer(end - self.t0, end - start, index, 0, note=f"{type(exc).__name__}: {exc}"[:200])
        end = time.monotonic()
        answer = Answer(end - self.t0, end - start, index, status)
        if call.validator_key and validators:
            self.state.validators[call.validator_key] = validators
        if status >= 500:
            answer.blame = attribute_5xx(call.path, head) if self.via_checkpoint else "mlflow"
        if status not in call.expect:
            answer.note = f"{call.method} {call.path[:80]} -> {status}: {head[:160].decode('utf-8', 'replace')}"
        elif call.path == "/" and self.via_checkpoint and b"/checkpoint/static/panel.js" not in head:
            answer.note = "GET / through Checkpoint without the panel's script"
            answer.status = -1
        return answer

    def send(self, call: Call) -> tuple[int, bytes, dict[str, str]]:
        """One call; a keep-alive connection the server closed meanwhile is reopened once."""
        for attempt in range(2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*host_port(self.url), timeout=SOCKET_TIMEOUT)
                self.connects += 1
            try:
                self.conn.request(call.method, call.path, body=call.body, headers={**self.auth, **call.headers})
                answer = self.conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.drop()
                if not reused or attempt:
                    raise
                self.retries += 1
                continue
            head = self.read(answer)
            if answer.will_close:
                self.drop()
            validators = {}
            if answer.getheader("ETag"):
                validators["If-None-Match"] = answer.getheader("ETag")
            if answer.getheader("Last-Modified"):
                validators["If-Modified-Since"] = answer.getheader("Last-Modified")
            return answer.status, head, validators
        raise AssertionError("unreachable")

    def read(self, answer: http.client.HTTPResponse) -> bytes:
        """The whole body, read into one reused buffer; its first HEAD_BYTES are kept."""
        view = memoryview(self.buffer)
        head = b""
        while count := answer.readinto(view):
            if len(head) < HEAD_BYTES:
                head += bytes(view[: min(count, HEAD_BYTES - len(head))])
        return head

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _accumulate(values) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


@dataclass
class RunResult:
    label: str
    plan: Plan
    kinds: list[Kind]
    answers: list[Answer]
    elapsed: float
    connects: int
    retries: int
    client_cpu: float
    checkpoint_cpu: float | None = None
    proxy_cpu: float | None = None  # the proxy's processes (Checkpoint's or nginx's), seconds
    mlflow_cpu: float | None = None
    rss: list[tuple[float, int]] = field(default_factory=list)
    rss_idle: int = 0
    log_lines: dict[str, int] = field(default_factory=dict)


Pids = Callable[[], list[int]]


def run_mix(
    label: str,
    url: str,
    target: Target,
    kinds: list[Kind],
    plan: Plan,
    checkpoint: Checkpoint | None,
    proxy_pids: Pids | None = None,
    mlflow_pids: Pids | None = None,
) -> RunResult:
    """All clients at once for plan.seconds (bounded again by each client's cap and the join timeout).

    ``checkpoint`` (the run through it): its RSS and log are watched too. ``proxy_pids`` and
    ``mlflow_pids``: whose CPU time is counted around the run."""
    print(f"== {label}: {plan.clients} clients × {plan.seconds:.0f} s, {len(kinds)} kinds of call", flush=True)
    t0 = time.monotonic()
    deadline = t0 + plan.seconds
    clients = [Client(i, url, target, kinds, plan, t0, deadline, checkpoint is not None) for i in range(plan.clients)]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    cp_cpu_before = cpu_seconds(checkpoint.pids()) if checkpoint else 0.0
    proxy_before = cpu_seconds(proxy_pids()) if proxy_pids else 0.0
    mlflow_before = cpu_seconds(mlflow_pids()) if mlflow_pids else 0.0
    log_offset = checkpoint.log_path.stat().st_size if checkpoint else 0
    rss_idle = RssSampler(checkpoint).now() if checkpoint else 0
    sampler = RssSampler(checkpoint, interval=1.0) if checkpoint else None
    if sampler:
        sampler.__enter__()
    try:
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=max(0.0, deadline - time.monotonic()) + SOCKET_TIMEOUT * 2 + 10)
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    elapsed = time.monotonic() - t0
    stuck = [c.name for c in clients if c.is_alive()]
    if stuck:
        print(f"  {len(stuck)} clients still busy after the join timeout: their answers so far count", flush=True)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    result = RunResult(
        label,
        plan,
        kinds,
        sorted((a for c in clients for a in list(c.answers)), key=lambda a: a.done),
        elapsed,
        sum(c.connects for c in clients),
        sum(c.retries for c in clients),
        (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
    )
    if proxy_pids:
        result.proxy_cpu = cpu_seconds(proxy_pids()) - proxy_before
    if mlflow_pids:
        result.mlflow_cpu = cpu_seconds(mlflow_pids()) - mlflow_before
    if checkpoint and sampler:
        result.checkpoint_cpu = cpu_seconds(checkpoint.pids()) - cp_cpu_before
        result.rss, result.rss_idle = sampler.series, rss_idle
        result.log_lines = scan_log(checkpoint.log_path, log_offset)
    print(f"  {len(result.answers):,} answers, {len(result.answers) / elapsed:.0f}/s", flush=True)
    return result


LOG_MARKS = {
    "upstream failures (502/504 logged by the proxy)": "upstream failure",
    "broken upstream streams": "upstream stream for",
    "tracebacks": "Traceback (most recent call last)",
    "gunicorn worker timeouts": "WORKER TIMEOUT",
    "gunicorn workers (re)booted": "Booting worker",
}


def scan_log(path: Path, offset: int) -> dict[str, int]:
    """Counts of the lines that would explain a Checkpoint-made failure, written during the run."""
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", "replace")
    return {label: text.count(mark) for label, mark in LOG_MARKS.items()}


# -- set-up ---------------------------------------------------------------------------------


def index_assets(mlflow_url: str) -> list[str]:
    """The scripts, stylesheet, icon and manifest MLflow's index page names (what a browser fetches first)."""
    import re

    import urllib3

    page = urllib3.PoolManager().request("GET", mlflow_url + "/", timeout=30).data.decode()
    found = re.findall(r'(?:src|href)="\.?/?(static-files/[^"]+)"', page)
    if not found:
        raise RuntimeError(f"no static assets named in MLflow's index page: {page[:300]!r}")
    return ["/" + path for path in dict.fromkeys(found)]


def open_requests(checkpoint_url: str, registry: Registry, count: int) -> list[int]:
    """Real promote requests (champion → version 2 of the first models), so request pages show real diffs."""
    import requests

    ids = []
    for model in registry.models[:count]:
        change = {"kind": "set_alias", "name": model, "alias": "champion", "version": registry.versions[model][1]}
        answer = requests.post(
            f"{checkpoint_url}/checkpoint/api/v1/requests", json={"change": change}, auth=("alice", "x"), timeout=60
        )
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    return ids


def smoke(url: str, target: Target, kinds: list[Kind], via_checkpoint: bool) -> None:
    """Every kind once, sequentially: warms caches and pools, and stops a misbuilt mix before the load."""
    client = Client(0, url, target, kinds, QUICK, time.monotonic(), 0, via_checkpoint)
    bad = [a.note for a in (client.one(i) for i in range(len(kinds))) if a.note]
    client.drop()
    if bad:
        raise RuntimeError("the mix does not work as built:\n  " + "\n  ".join(bad))


# -- the report -----------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds == seconds else "–"  # NaN for no samples


def windows(result: RunResult) -> list[list[Answer]]:
    count = max(1, round(result.plan.seconds / WINDOW))
    out: list[list[Answer]] = [[] for _ in range(count)]
    for answer in result.answers:
        out[min(count - 1, int(answer.done // WINDOW))].append(answer)
    return out


def over_time(result: RunResult) -> tuple[list[str], list[float], list[float]]:
    """The per-window table, and the windows' p99s and RSS maxima for the flatness targets."""
    head = "| window | answers | answers/s | p50 ms | p99 ms | 5xx (MLflow / Checkpoint) | other errors |"
    lines = [
        head + (" RSS mean MiB | RSS max MiB |" if result.rss else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if result.rss else ""),
    ]
    p99s, rss_max = [], []
    split = windows(result)
    for number, answers in enumerate(split):
        start, end = number * WINDOW, (number + 1) * WINDOW
        if number == len(split) - 1:  # the last window also holds the calls still in flight at the deadline
            end = max(end, result.elapsed)
        latencies = [a.latency for a in answers]
        p99s.append(percentile(latencies, 99))
        mlflow_5xx, cp_5xx = count_5xx(answers, "mlflow"), count_5xx(answers, "checkpoint")
        other = sum(bool(a.note) and a.status < 500 for a in answers)
        p50, rate = _ms(percentile(latencies, 50)), len(answers) / (end - start)
        row = (
            f"| {start:.0f}–{end:.0f} s | {len(answers):,} | {rate:.0f} | {p50} | {_ms(p99s[-1])} "
            f"| {mlflow_5xx} / {cp_5xx} | {other} |"
        )
        if result.rss:
            inside = [rss for at, rss in result.rss if start <= at <= end] or [result.rss[-1][1]]
            rss_max.append(max(inside))
            row += f" {statistics.mean(inside) / MIB:.0f} | {rss_max[-1] / MIB:.0f} |"
        lines.append(row)
    return lines, p99s, rss_max


def by_group(direct: RunResult | None, through: RunResult) -> list[str]:
    lines = [
        "| group | share of calls | direct p50 / p99 ms | through Checkpoint p50 / p99 ms | unexpected answers |",
        "|---|---:|---:|---:|---:|",
    ]
    groups = list(dict.fromkeys(k.group for k in through.kinds))
    for group in groups:
        cells = []
        for result in (direct, through):
            if result is None:
                cells.append("–")
                continue
            latencies = [a.latency for a in result.answers if result.kinds[a.kind].group == group]
            cells.append(f"{_ms(percentile(latencies, 50))} / {_ms(percentile(latencies, 99))}" if latencies else "–")
        mine = [a for a in through.answers if through.kinds[a.kind].group == group]
        share = len(mine) / max(1, len(through.answers))
        lines.append(f"| {group} | {share * 100:.1f} % | {cells[0]} | {cells[1]} | {sum(bool(a.note) for a in mine)} |")
    return lines


def count_5xx(answers: list[Answer], blame: str) -> int:
    return sum(a.status >= 500 and a.blame == blame for a in answers)


def totals(results: list[RunResult]) -> list[str]:
    def mlflow_bound(result: RunResult) -> list[float]:
        return [a.latency for a in result.answers if not result.kinds[a.kind].checkpoint_only]

    rows: list[tuple[str, Callable[[RunResult], str]]] = [
        ("answers", lambda r: f"{len(r.answers):,}"),
        ("answers/s", lambda r: f"{len(r.answers) / r.elapsed:.0f}"),
        (
            "p50 / p99 ms, all calls",
            lambda r: (
                f"{_ms(percentile([a.latency for a in r.answers], 50))} / {_ms(percentile([a.latency for a in r.answers], 99))}"
            ),
        ),
        (
            "p50 / p99 ms, calls MLflow answers (the direct run's mix)",
            lambda r: f"{_ms(percentile(mlflow_bound(r), 50))} / {_ms(percentile(mlflow_bound(r), 99))}",
        ),
        (
            "answers by status",
            lambda r: ", ".join(
                f"{s or 'none'}: {n:,}" for s, n in sorted(Counter(a.status for a in r.answers if a.status >= 0).items())
            ),
        ),
        ("unexpected answers", lambda r: f"{sum(bool(a.note) for a in r.answers):,}"),
        ("5xx answered by MLflow (passed through)", lambda r: str(count_5xx(r.answers, "mlflow"))),
        ("**5xx generated by Checkpoint**", lambda r: str(count_5xx(r.answers, "checkpoint"))),
        ("no answer (connection error, timeout)", lambda r: str(sum(a.status == 0 for a in r.answers))),
        ("connections opened / reopened after a keep-alive close", lambda r: f"{r.connects} / {r.retries}"),
        ("load generator CPU, s", lambda r: f"{r.client_cpu:.1f}"),
        ("proxy CPU, ms per answer (Checkpoint's or nginx's master + workers)", lambda r: _per_answer(r, r.proxy_cpu)),
        ("MLflow CPU, ms per answer (the scale)", lambda r: _per_answer(r, r.mlflow_cpu)),
    ]
    lines = ["| | " + " | ".join(r.label for r in results) + " |", "|---|" + "---:|" * len(results)]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return lines


def _per_answer(result: RunResult, seconds: float | None) -> str:
    return f"{seconds * 1000 / max(1, len(result.answers)):.3f}" if seconds is not None else "–"


def _median_of(results: list[RunResult], label: str, figure: Callable[[RunResult], float]) -> float:
    picked = [figure(r) for r in results if r.label.startswith(label)]
    return statistics.median(picked) if picked else float("nan")


def nginx_targets(results: list[RunResult]) -> list[str]:
    """Checkpoint against nginx on the same mix: answers/s and CPU per call (medians of the rounds)."""
    if not any(r.label.startswith(NGINX_LABEL) for r in results):
        return []
    rate = _median_of(results, SAME_MIX_LABEL, lambda r: len(r.answers) / r.elapsed) / _median_of(
        results, NGINX_LABEL, lambda r: len(r.answers) / r.elapsed
    )
    cpu = _median_of(results, SAME_MIX_LABEL, lambda r: (r.proxy_cpu or 0) / max(1, len(r.answers))) / _median_of(
        results, NGINX_LABEL, lambda r: (r.proxy_cpu or 0) / max(1, len(r.answers))
    )
    return [
        f"| answers/s through Checkpoint ≥ 90 % of nginx's (same mix, median runs) | {rate * 100:.0f} % "
        f"| {'PASS' if rate >= 0.9 else 'FAIL'} |",
        f"| proxy CPU per call ≤ 3 × nginx's (same mix, median runs) | {cpu:.1f} × | {'PASS' if cpu <= 3 else 'FAIL'} |",
    ]


def problems(results: list[RunResult], most: int = 12) -> list[str]:
    """The unexpected answers, grouped by what they said."""
    lines = []
    for result in results:
        counted = Counter(a.note for a in result.answers if a.note)
        for note, count in counted.most_common(most):
            text = note.replace("`", "'")[:220]
            lines.append(f"* {result.label}, {count}×: `{text}`")
    return lines


def report(results: list[RunResult], facts: str, quick: bool) -> str:
    through = results[-1]
    direct = next((r for r in results if r.label == DIRECT_LABEL), None)
    time_lines, p99s, rss_max = over_time(through)
    cp_5xx = count_5xx(through.answers, "checkpoint")
    p99s = [p if p == p else float("inf") for p in p99s]  # a window without a single answer is a stall
    steady = p99s[1:] if len(p99s) > 2 else p99s  # the first window includes the ramp-up
    typical = statistics.median_low(steady) if steady else 0.0  # of two windows: the lower
    p99_ratio = max(steady) / typical if typical > 0 else float("nan")
    growth = (rss_max[-1] - rss_max[0]) if rss_max else 0
    lines = [
        f"## Load benchmark{' (quick)' if quick else ''}: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        facts,
        "",
        "### Totals",
        "",
        *totals(results),
        "",
        "Checkpoint's log during the run: " + ", ".join(f"{k} {v}" for k, v in through.log_lines.items()) + ".",
        "",
        "### By group of calls",
        "",
        *by_group(direct, through),
        "",
        f"### Over time, through Checkpoint (RSS: master + workers, sampled every second; idle before: "
        f"{through.rss_idle / MIB:.0f} MiB)",
        "",
        *time_lines,
        "",
    ]
    if direct is not None:
        lines += ["### Over time, direct to MLflow", "", *over_time(direct)[0], ""]
    lines += [
        "### Targets",
        "",
        "| target | measured | result |",
        "|---|---:|:---:|",
        f"| zero 5xx generated by Checkpoint | {cp_5xx} | {'PASS' if cp_5xx == 0 else 'FAIL'} |",
        f"| p99 flat: no 10-s window (after the first) above 2 × their median (lower median) | worst {p99_ratio:.2f} × "
        f"| {'PASS' if p99_ratio <= 2 else 'FAIL'} |",
        f"| RSS flat: last window's max within 64 MiB of the first's | {growth / MIB:+.0f} MiB "
        f"| {'PASS' if growth < 64 * MIB else 'FAIL'} |",
        *nginx_targets(results),
    ]
    problem_lines = problems(results)
    if problem_lines:
        lines += ["", "Unexpected answers (most frequent first):", "", *problem_lines]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "20 clients × 10 s", "load.md")
    parser.add_argument("--clients", type=int, help="concurrent clients (default 200)")
    parser.add_argument("--seconds", type=float, help="length of each run (default 60)")
    parser.add_argument("--no-direct", action="store_true", help="skip the run straight to MLflow")
    parser.add_argument("--mlflow-workers", type=int, help="uvicorn workers of MLflow (default: MLflow's own, 4)")
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx leg (nginx and Checkpoint on the direct mix)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of the nginx leg, each way, alternating (default 1)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(clients=min(max(args.clients or base.clients, 1), 1000), seconds=min(max(args.seconds or base.seconds, 1), 900))
    load_before = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="checkpoint-load-") as name:
        tmp = Path(name)
        with servers(tmp, args.mlflow_workers) as (mlflow, checkpoint):
            registry = seed_registry(mlflow.url)
            target = Target(registry, index_assets(mlflow.url), open_requests(checkpoint.url, registry, 3))
            direct_kinds = [k for k in KINDS if not k.checkpoint_only]
            smoke(mlflow.url, target, direct_kinds, via_checkpoint=False)
            smoke(checkpoint.url, target, KINDS, via_checkpoint=True)
            results = []
            mlflow_pids = (lambda: process_tree(mlflow.process.pid)) if mlflow.process else None
            if not args.no_direct:
                results.append(run_mix(DIRECT_LABEL, mlflow.url, target, direct_kinds, plan, None, None, mlflow_pids))
                time.sleep(2)  # let connections close and run queues drain between the runs
            if not args.no_nginx:
                nginx = Nginx(tmp / "nginx", mlflow.port).start()
                try:
                    smoke(nginx.url, target, direct_kinds, via_checkpoint=False)
                    legs = [(NGINX_LABEL, nginx.url, nginx.pids), (SAME_MIX_LABEL, checkpoint.url, checkpoint.pids)]
                    for index in range(min(max(args.rounds, 1), 9)):
                        for label, url, pids in legs if index % 2 == 0 else legs[::-1]:
                            name = f"{label} #{index + 1}" if args.rounds > 1 else label
                            results.append(run_mix(name, url, target, direct_kinds, plan, None, pids, mlflow_pids))
                            time.sleep(2)
                finally:
                    nginx.stop()
            results.append(
                run_mix("through Checkpoint", checkpoint.url, target, KINDS, plan, checkpoint, checkpoint.pids, mlflow_pids)
            )
            workers = len(checkpoint.pids()) - 1
    from importlib.metadata import version

    facts = (
        f"{plan.clients} clients (Python threads, one keep-alive connection each) × {plan.seconds:.0f} s per run, "
        f"{len(KINDS)} kinds of call ({len(direct_kinds)} in the direct run); MLflow {version('mlflow')} "
        f"(`mlflow server`, {args.mlflow_workers or 'default'} workers, SQLite store, served artifacts: "
        f"{len(registry.models)} models × {len(registry.versions[registry.models[0]])} versions); Checkpoint `checkpoint serve` "
        f"with default settings ({workers} workers + master, SQLite). {os.cpu_count()} cores shared by all, "
        f"Python {platform.python_version()}; load average (1 min) {load_before:.1f} before, {load_average():.1f} after; "
        f"{(time.monotonic() - started) / 60:.1f} min in all."
    )
    publish(report(results, facts, args.quick), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
