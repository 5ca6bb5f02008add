"""How Checkpoint's costs grow (issue #18 §5): five small tables, each with its trend.

    .venv/bin/python benchmarks/scale_bench.py                       # all five parts: about 16 minutes
    .venv/bin/python benchmarks/scale_bench.py --quick               # small sizes: about 2 minutes
    .venv/bin/python benchmarks/scale_bench.py --only diff,list      # some parts again

Parts: ``cpu`` proxy CPU per call against the body's size (Checkpoint beside nginx), ``rss``
Checkpoint's RSS against concurrent artifact transfers, ``diff`` the request page against the
params/metrics of the diffed versions, ``list`` the request list against the requests in
PostgreSQL, ``audit`` ``checkpoint audit verify`` against the events in PostgreSQL. Each part
starts what it needs (a real ``mlflow server``, ``checkpoint serve`` with default settings,
nginx, a scratch database ``cp_scale_<pid>`` that is dropped at the end, also after a
failure) and stops it by PID. Loopback only; every loop is bounded in count and in time.

One script of five parts (over the usual 400 lines) so the parts share one report, one set of
options and one way of stating trends (``trend.py``).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa
import trend
from common import (
    ARTIFACTS,
    BLOCK,
    MIB,
    ROOT,
    Artifact,
    Nginx,
    RssSampler,
    blocks,
    cpu_seconds,
    host_port,
    load_average,
    percentile,
    process_tree,
    publish,
    servers,
    upload,
)
from pages_scale_bench import ADMIN_DEFAULT, ADMIN_ENV, ScratchDatabase
from seed import copy_requests, seed_wide_versions, vacuum

from checkpoint.storage import db, hashing
from checkpoint.web.context import make_request_cursor

PARTS = ("cpu", "rss", "diff", "list", "audit")
KIB = 1024
AUDIT_KEY = "scale-bench-audit-key-" + "0" * 32  # a fixed key: the seeded chain is made and verified with it


@dataclass(frozen=True)
class Plan:
    payloads: tuple[int, ...]  # bytes per call (cpu)
    calls: Callable[[int], int]  # at least this many calls per leg for a payload
    leg_seconds: float  # and at least this long (CPU time is counted in 10-ms ticks), at most 20 × the calls
    rounds: int  # cpu legs per proxy, alternating
    streams: tuple[int, ...]  # concurrent transfers (rss)
    stream_mib: int
    widths: tuple[int, ...]  # params = metrics per version (diff)
    page_runs: int
    requests: tuple[int, ...]  # list sizes, grown in one database
    events: tuple[int, ...]  # audit sizes, grown in one chain


FULL = Plan(
    payloads=(KIB, 64 * KIB, MIB, 16 * MIB),
    calls=lambda size: {KIB: 400, 64 * KIB: 300, MIB: 100}.get(size, 12),
    leg_seconds=5,
    rounds=3,
    streams=(1, 16, 64),
    stream_mib=32,
    widths=(100, 1000, 3000, 10_000),
    page_runs=15,
    requests=(1000, 10_000, 100_000, 1_000_000),
    events=(10_000, 100_000, 1_000_000),
)
QUICK = Plan(
    payloads=(KIB, MIB, 16 * MIB),
    calls=lambda size: 60 if size < MIB else 6,
    leg_seconds=1,
    rounds=1,
    streams=(1, 8),
    stream_mib=8,
    widths=(100, 1000),
    page_runs=5,
    requests=(1000, 10_000),
    events=(1000, 10_000),
)


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)


def size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def limit_line(what: str, sizes: list[float], costs: list[float], limit: float, unit: str, fmt: Callable[[float], str]) -> str:
    """Where the cost stops being acceptable: measured if it is over ``limit`` already, else
    extrapolated along the last step's trend."""
    over = next((size for size, cost in zip(sizes, costs, strict=True) if cost > limit), None)
    if over is not None:
        return f"{what}: over {limit:g} {unit} from {fmt(over)} on (measured)."
    reached = trend.fit(sizes[-2:], costs[-2:]).reaches(limit)
    if reached is None:
        return f"{what}: does not grow towards {limit:g} {unit} (flat over the last step)."
    return f"{what}: the last step's trend reaches {limit:g} {unit} at about {fmt(reached)} (extrapolated)."


# -- cpu: proxy CPU per call against the payload ---------------------------------------------


def enough(done: int, calls: int, started: float, seconds: float, deadline: float) -> bool:
    """A leg ends after ``calls`` calls and ``seconds`` of them, at 20 × ``calls``, or at the deadline."""
    now = time.monotonic()
    return (done >= calls and now - started >= seconds) or done >= 20 * calls or now > deadline


def get_leg(url: str, path: str, size: int, calls: int, seconds: float, deadline: float) -> int:
    """GETs of one artifact on one keep-alive connection, bodies read into one buffer; how many."""
    conn = http.client.HTTPConnection(*host_port(url), timeout=60)
    buffer = memoryview(bytearray(BLOCK))
    started, done = time.monotonic(), 0
    try:
        while not enough(done, calls, started, seconds, deadline):
            done += 1
            conn.request("GET", f"{ARTIFACTS}/{path}")
            answer = conn.getresponse()
            got = 0
            while count := answer.readinto(buffer):
                got += count
            if answer.status != 200 or got != size:
                raise RuntimeError(f"GET {path} via {url}: {answer.status}, {got} of {size} bytes")
    finally:
        conn.close()
    return done


def put_leg(url: str, path: str, artifact: Artifact, calls: int, seconds: float, deadline: float) -> int:
    """PUTs of the same body to one path (overwritten), each streamed from blocks(); how many."""
    started, done = time.monotonic(), 0
    while not enough(done, calls, started, seconds, deadline):
        upload(url, path, artifact.size, artifact.seed, timeout=120)
        done += 1
    return done


def part_cpu(plan: Plan, tmp: Path) -> Section:
    section = Section("Proxy CPU per call against the body's size")
    results: dict[tuple[str, str, int], list[float]] = {}
    mlflow_cpu: dict[tuple[str, int], list[float]] = {}
    done_calls: dict[tuple[str, int], list[int]] = {}
    with servers(tmp, 1) as (mlflow, checkpoint):
        nginx = Nginx(tmp / "nginx", host_port(mlflow.url)[1]).start()
        try:
            proxies = {"nginx": (nginx.url, nginx.pids), "Checkpoint": (checkpoint.url, checkpoint.pids)}
            mlflow_pids = process_tree(mlflow.process.pid) if mlflow.process else []
            for size in plan.payloads:
                artifact = Artifact(size)
                upload(mlflow.url, f"scale/get-{size}.bin", size, artifact.seed, timeout=120)
                calls = plan.calls(size)
                for direction in ("GET", "PUT"):
                    order = list(proxies)
                    for round_ in range(plan.rounds):
                        for who in order if round_ % 2 == 0 else order[::-1]:
                            url, pids = proxies[who]
                            deadline = time.monotonic() + 120
                            before, before_ml = cpu_seconds(pids()), cpu_seconds(mlflow_pids)
                            if direction == "GET":
                                done = get_leg(url, f"scale/get-{size}.bin", size, calls, plan.leg_seconds, deadline)
                            else:
                                done = put_leg(url, f"scale/put-{size}-{who}.bin", artifact, calls, plan.leg_seconds, deadline)
                            spent, spent_ml = cpu_seconds(pids()) - before, cpu_seconds(mlflow_pids) - before_ml
                            results.setdefault((who, direction, size), []).append(spent * 1000 / max(done, 1))
                            done_calls.setdefault((direction, size), []).append(done)
                            mlflow_cpu.setdefault((direction, size), []).append(spent_ml * 1000 / max(done, 1))
                    print(
                        f"  {direction} {size_label(size)} × {calls}: "
                        + ", ".join(f"{w} {statistics.median(results[(w, direction, size)]):.3f} ms" for w in proxies),
                        flush=True,
                    )
        finally:
            nginx.stop()
    sizes = list(plan.payloads)
    for direction, verb in (("GET", "download (GET, answer of that size)"), ("PUT", "upload (PUT, body of that size)")):
        rows = []
        for size in sizes:
            cp, ng = (
                statistics.median(results[("Checkpoint", direction, size)]),
                statistics.median(results[("nginx", direction, size)]),
            )
            ml = statistics.median(mlflow_cpu[(direction, size)])
            per_mib = f"{cp / (size / MIB):.2f}" if size >= MIB else "–"
            ratio = f"{cp / ng:.1f} ×" if ng > 0 else "nginx < 1 tick"
            rows.append(
                [
                    size_label(size),
                    f"{statistics.median(done_calls[(direction, size)]):.0f} × {plan.rounds}",
                    f"{ng:.3f}",
                    f"{cp:.3f}",
                    ratio,
                    per_mib,
                    f"{ml:.2f}",
                ]
            )
        section.lines += [f"**{verb}**", ""]
        section.lines += table(
            [
                "payload",
                "calls per leg (median) × legs",
                "nginx ms/call",
                "Checkpoint ms/call",
                "vs nginx",
                "Checkpoint ms per MiB",
                "MLflow ms/call (scale)",
            ],
            rows,
        )
        cp_costs = [statistics.median(results[("Checkpoint", direction, s)]) for s in sizes]
        ng_costs = [statistics.median(results[("nginx", direction, s)]) for s in sizes]
        ratios = [(s, c / n if n > 0 else float("inf")) for s, c, n in zip(sizes, cp_costs, ng_costs, strict=True)]
        mib_s = 1000 / (cp_costs[-1] / (sizes[-1] / MIB))
        section.lines += [
            "",
            f"Checkpoint's CPU per call: {trend.describe(sizes, cp_costs)}. At the largest size one core moves "
            f"about {mib_s:.0f} MiB/s through it ({direction}).",
            "Over 3 × nginx's CPU per call (#18 §2's target) at: "
            + (", ".join(size_label(s) for s, r in ratios if r > 3) or "no size")
            + ".",
            "",
        ]
    return section


# -- rss: Checkpoint's memory against concurrent transfers -----------------------------------


def paced_get(url: str, path: str, size: int, rate: float, deadline: float) -> int:
    """Download at most ``rate`` bytes/s (a slow client keeps its transfer open); bytes read."""
    conn = http.client.HTTPConnection(*host_port(url), timeout=120)
    buffer = memoryview(bytearray(256 * KIB))
    got, start = 0, time.monotonic()
    try:
        conn.request("GET", f"{ARTIFACTS}/{path}")
        answer = conn.getresponse()
        while (count := answer.readinto(buffer)) and time.monotonic() < deadline:
            got += count
            ahead = got / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(min(ahead, 1.0))  # pacing the client, not waiting for a result
    finally:
        conn.close()
    return got


def paced_put(url: str, path: str, artifact: Artifact, rate: float, deadline: float) -> int:
    conn = http.client.HTTPConnection(*host_port(url), timeout=120)
    sent, start = 0, time.monotonic()
    try:
        conn.putrequest("PUT", f"{ARTIFACTS}/{path}")
        conn.putheader("Content-Length", str(artifact.size))
        conn.endheaders()
        for block in blocks(artifact.size, artifact.seed):
            for offset in range(0, len(block), 256 * KIB):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"PUT {path}: over the part's time limit")
                piece = block[offset : offset + 256 * KIB]
                conn.send(piece)
                sent += len(piece)
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"PUT {path}: {answer.status}")
    finally:
        conn.close()
    return sent


def at_once(count: int, work: Callable[[int], int]) -> tuple[int, int, list[BaseException]]:
    """Run ``work(i)`` in ``count`` threads started together; (bytes, most in flight, errors)."""
    barrier = threading.Barrier(count)
    lock = threading.Lock()
    state = {"bytes": 0, "live": 0, "most": 0}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait(timeout=60)
        with lock:
            state["live"] += 1
            state["most"] = max(state["most"], state["live"])
        try:
            moved = work(index)
            with lock:
                state["bytes"] += moved
        except BaseException as exc:  # noqa: BLE001 - reported in the table's notes
            errors.append(exc)
        finally:
            with lock:
                state["live"] -= 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return state["bytes"], state["most"], errors


def part_rss(plan: Plan, tmp: Path) -> Section:
    section = Section("Checkpoint's RSS against concurrent artifact transfers")
    size = plan.stream_mib * MIB
    rate = 16 * MIB  # per client: 2 s for 32 MiB, so all transfers of a step overlap
    rows, peaks = [], []
    with servers(tmp, 1) as (mlflow, checkpoint):
        artifact = Artifact(size)
        upload(mlflow.url, "scale/rss.bin", size, artifact.seed, timeout=120)
        idle = RssSampler(checkpoint).now()
        for count in plan.streams:
            for direction in ("GET", "PUT"):
                deadline = time.monotonic() + 240
                with RssSampler(checkpoint, interval=0.1) as sampler:
                    if direction == "GET":
                        moved, most, errors = at_once(
                            count, lambda _, d=deadline: paced_get(checkpoint.url, "scale/rss.bin", size, rate, d)
                        )
                    else:
                        moved, most, errors = at_once(
                            count, lambda i, d=deadline: paced_put(checkpoint.url, f"scale/rss-put-{i}.bin", artifact, rate, d)
                        )
                after = sampler.now()
                if errors:
                    raise RuntimeError(f"{count} {direction}s at once: {len(errors)} failed, e.g. {errors[0]!r}")
                if moved != count * size:
                    raise RuntimeError(f"{count} {direction}s at once moved {moved} of {count * size} bytes")
                peaks.append(sampler.peak)
                rows.append(
                    [
                        str(count),
                        direction,
                        str(most),
                        f"{idle / MIB:.0f}",
                        f"{sampler.peak / MIB:.0f}",
                        f"{(sampler.peak - idle) / MIB:+.0f}",
                        f"{(sampler.peak - idle) / MIB / count:+.2f}",
                        f"{after / MIB:.0f}",
                    ]
                )
                print(f"  {count} × {direction}: peak {sampler.peak / MIB:.0f} MiB (idle {idle / MIB:.0f})", flush=True)
            for i in range(count):  # the uploads leave MLflow's store
                (mlflow.root / "mlartifacts" / "scale" / f"rss-put-{i}.bin").unlink(missing_ok=True)
    section.lines += [
        f"{plan.stream_mib} MiB per transfer, each client paced to 16 MiB/s so the transfers of a step overlap; "
        f"RSS of the gunicorn master and workers summed from `/proc/<pid>/status`, sampled every 100 ms.",
        "",
    ]
    section.lines += table(
        [
            "transfers at once",
            "way",
            "most in flight",
            "idle MiB",
            "peak MiB",
            "growth MiB",
            "growth per transfer MiB",
            "after MiB",
        ],
        rows,
    )
    for offset, direction in enumerate(("GET", "PUT")):
        ways = [p / MIB for p in peaks[offset::2]]
        counts = [float(c) for c in plan.streams]
        per = (ways[-1] - ways[0]) / (counts[-1] - counts[0])
        reach = f"64 MiB over idle at about {64 / per:,.0f} transfers at once" if per > 0 else "no growth to extrapolate"
        section.lines.append(
            f"\n{direction}: peak RSS against transfers at once: {trend.describe(counts, ways)}; "
            f"{per:+.2f} MiB per added transfer, so the 64-MiB limit of proxy_bench's target is {reach}."
        )
    return section


# -- diff: the request page against the number of params/metrics ------------------------------


def time_get(http: requests.Session, url: str, runs: int, marker: str, budget: float) -> tuple[float, list[float]]:
    """The first GET's ms, then up to ``runs`` more within ``budget`` seconds; every answer checked."""
    samples: list[float] = []
    stop = time.monotonic() + budget
    for _ in range(runs + 1):
        start = time.perf_counter()
        answer = http.get(url, timeout=120)
        samples.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200 or marker not in answer.text:
            raise RuntimeError(f"{url}: {answer.status_code} without {marker!r}: {answer.text[:200]!r}")
        if time.monotonic() > stop and len(samples) >= 3:
            break
    return samples[0], samples[1:]


def part_diff(plan: Plan, tmp: Path) -> Section:
    section = Section("The request page against the params and metrics of the diffed versions")
    rows, firsts, warms = [], [], []
    with servers(tmp, 1) as (mlflow, checkpoint):
        http = requests.Session()
        http.auth = ("alice", "x")
        for width in plan.widths:
            seeded = time.monotonic()
            model = seed_wide_versions(mlflow.url, width, width, name=f"wide-{width}")
            seeded = time.monotonic() - seeded
            change = {"kind": "set_alias", "name": model, "alias": "champion", "version": "2"}
            opened = http.post(f"{checkpoint.url}/checkpoint/api/v1/requests", json={"change": change}, timeout=120)
            opened.raise_for_status()
            first, warm = time_get(
                http, f"{checkpoint.url}/checkpoint/requests/{opened.json()['id']}", plan.page_runs, "cp-diff", 60
            )
            firsts.append(first)
            warms.append(statistics.median(warm))
            rows.append(
                [f"{width:,}", f"{first:.0f}", f"{warms[-1]:.0f}", f"{percentile(warm, 99):.0f}", str(len(warm)), f"{seeded:.0f}"]
            )
            print(f"  {width:,} params/metrics: first {first:.0f} ms, warm p50 {warms[-1]:.0f} ms", flush=True)
    widths = [float(w) for w in plan.widths]
    section.lines += [
        "Two versions whose runs have N params and N metrics each (2-step histories), seeded through MLflow's client into "
        "`mlflow server --workers 1`; a promote request opened through the API, then its page fetched on one "
        "keep-alive connection: the first view, then warm views (up to 60 s).",
        "",
    ]
    section.lines += table(
        ["params = metrics per version", "first view ms", "warm p50 ms", "warm p99 ms", "warm runs", "seeding s"], rows
    )
    section.lines += [
        "",
        f"First view: {trend.describe(widths, firsts)}; warm: {trend.describe(widths, warms)}. "
        "Targets (#18 §3): first ≤ 300 ms, warm ≤ 100 ms.",
        limit_line("First view", widths, firsts, 300, "ms", lambda w: f"{w:,.0f} params/metrics"),
        limit_line("Warm", widths, warms, 100, "ms", lambda w: f"{w:,.0f} params/metrics"),
    ]
    return section


# -- list: the request list against the number of requests ------------------------------------


def list_pages(total: int) -> dict[str, str]:
    deep = make_request_cursor(max(total // 100, 2))  # 99 % of the way down
    middle = make_request_cursor(total // 2)
    return {
        "open (default)": "/checkpoint/requests",
        "all states": "/checkpoint/requests?state=all",
        "one model": "/checkpoint/requests?state=all&model=model-042",
        "author + target": "/checkpoint/requests?state=all&author=user07&target=stage%3AProduction",
        "title search, one match": f"/checkpoint/requests?state=all&q=build+{total // 2 + 7}",
        "title search, no match": "/checkpoint/requests?state=all&q=no-such-title",
        "all states, middle": f"/checkpoint/requests?state=all&cursor={middle}",
        "applied, 99 % deep": f"/checkpoint/requests?state=applied&cursor={deep}",
    }


@contextmanager
def scratch(admin_url: str) -> Iterator[ScratchDatabase]:
    with ScratchDatabase(admin_url, name=f"cp_scale_{os.getpid()}") as database:
        yield database


def part_list(plan: Plan, tmp: Path, admin_url: str) -> Section:
    section = Section("The request list against the requests in PostgreSQL")
    by_page: dict[str, list[float]] = {}
    seeded: list[str] = []
    with scratch(admin_url) as database:
        engine = db.make_engine(database.url)
        db.upgrade(engine)
        engine.dispose()
        with servers(tmp, 1, {"CHECKPOINT_DATABASE_URL": database.url}) as (_mlflow, checkpoint):
            http = requests.Session()
            http.auth = ("alice", "x")
            have = 0
            for total in plan.requests:
                seconds = copy_requests(database.url, total - have, start_id=have + 1)
                vacuum(database.url)
                seeded.append(f"{total - have:,} in {seconds:.0f} s")
                have = total
                for what, path in list_pages(total).items():
                    _, samples = time_get(http, checkpoint.url + path, plan.page_runs, "cp-", 30)
                    by_page.setdefault(what, []).append(statistics.median(samples))
                print(f"  {total:,} requests: " + ", ".join(f"{w} {v[-1]:.1f}" for w, v in by_page.items()), flush=True)
    sizes = [float(n) for n in plan.requests]
    rows = []
    for what, values in by_page.items():
        over = next((f"{n:,}" for n, v in zip(plan.requests, values, strict=True) if v > 50), None)
        if over is None:
            reached = trend.fit(sizes[-2:], values[-2:]).reaches(50)
            over = f"~{reached:,.0g} (extrapolated)" if reached else "never (flat)"
        rows.append([what, *(f"{v:.1f}" for v in values), trend.describe(sizes, values), over])
    section.lines += [
        f"One PostgreSQL database grown in steps (seeded: {'; '.join(seeded)}; `VACUUM ANALYZE` after each), requests as "
        "`pages_scale_bench.py` makes them (60 % applied, reviews on applied and rejected ones). p50 ms of "
        f"{plan.page_runs} warm views per page, one keep-alive client.",
        "",
    ]
    section.lines += table(["page", *(f"{n:,}" for n in plan.requests), "trend", "over 50 ms from"], rows)
    return section


# -- audit: verify against the number of events -----------------------------------------------


def seed_events(database_url: str, start: int, count: int, previous: str) -> tuple[str, float]:
    """Append ``count`` keyed events after id ``start - 1`` whose hash is ``previous``, chained
    with the project's own hashing (as the store would have), with COPY. (new head, seconds)"""
    began = time.monotonic()
    keys = hashing.Keyring.of(AUDIT_KEY)
    kid, key = keys.current or ("", b"")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    kinds = ["opened", "review_approved", "approved", "applying", "applied"]
    engine = sa.create_engine(database_url)
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cursor:
            columns = "id, request_id, model_name, kind, actor, data, created_at, prev_hash, hash, key_id"
            with cursor.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                for event_id in range(start, start + count):
                    event = {
                        "id": event_id,
                        "request_id": None,
                        "model_name": f"model-{event_id % 200:03d}",
                        "kind": kinds[event_id % len(kinds)],
                        "actor": f"user{event_id % 40:02d}",
                        "data": {"version": str(event_id % 9 + 1), "note": "seeded"},
                        "created_at": base + timedelta(seconds=event_id),
                    }
                    digest = hashing.event_hash(event, previous, key)
                    copy.write_row(
                        [
                            *(event[k] for k in hashing.FIELDS[:5]),
                            json.dumps(event["data"]),
                            event["created_at"],
                            previous,
                            digest,
                            kid,
                        ]
                    )
                    previous = digest
            cursor.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), %s)", (start + count - 1,))
            cursor.execute("ANALYZE events")
        conn.commit()
    finally:
        raw.close()
        engine.dispose()
    return previous, time.monotonic() - began


def run_verify(database_url: str, tmp: Path, expected: int) -> tuple[float, float]:
    """``checkpoint audit verify`` as a user runs it; (wall seconds, its CPU seconds)."""
    env = {
        **os.environ,
        "CHECKPOINT_DATABASE_URL": database_url,
        "CHECKPOINT_AUDIT_KEY": AUDIT_KEY,
        "CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:9",
        "CHECKPOINT_DATA_DIR": str(tmp),
    }
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "checkpoint.cli", "audit", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode != 0 or f"intact: {expected} events" not in done.stdout:
        raise RuntimeError(f"audit verify: exit {done.returncode}: {done.stdout[:300]} {done.stderr[-500:]}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def part_audit(plan: Plan, tmp: Path, admin_url: str) -> Section:
    section = Section("`checkpoint audit verify` against the events in PostgreSQL")
    rows, walls = [], []
    with scratch(admin_url) as database:
        engine = db.make_engine(database.url)
        db.upgrade(engine)
        engine.dispose()
        have, head, previous = 0, hashing.GENESIS, 0
        for total in plan.events:
            head, seconds = seed_events(database.url, have + 1, total - have, head)
            have = total
            runs = [run_verify(database.url, tmp, total) for _ in range(1 if total >= 1_000_000 else 3)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            walls.append(wall)
            step = f"{(wall - walls[-2]) * 1e6 / (total - previous):.0f}" if len(walls) > 1 else "–"
            per_event = f"{wall * 1e6 / total:.0f}"
            rows.append([f"{total:,}", f"{seconds:.0f}", str(len(runs)), f"{wall:.1f}", f"{cpu:.1f}", per_event, step])
            previous = total
            print(f"  {total:,} events: verify {wall:.1f} s (CPU {cpu:.1f} s)", flush=True)
    sizes = [float(n) for n in plan.events]
    section.lines += [
        "Keyed events chained with `checkpoint.storage.hashing` (as the store chains them) and written with `COPY`, "
        "the chain grown in steps; then `python -m checkpoint.cli audit verify` as a user runs it (it reads 1,000 "
        "events a query, oldest first), checked to say `intact: N events`.",
        "",
    ]
    section.lines += table(
        ["events", "seeded in s", "runs", "verify s (median)", "its CPU s", "µs per event", "µs per added event"], rows
    )
    section.lines += [
        "",
        f"Verify time: {trend.describe(sizes, walls)}.",
        limit_line("A nightly check of 10 minutes", sizes, walls, 600, "s", lambda n: f"{n:,.0f} events"),
    ]
    return section


def report(sections: list[Section], parts: list[str], quick: bool, began: float) -> str:
    from importlib.metadata import version

    head = [
        f"# How Checkpoint's costs grow{' (quick)' if quick else ''}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores shared, Python {sys.version.split()[0]}, "
        f"mlflow {version('mlflow')}, parts: {', '.join(parts)}; run took {(time.monotonic() - began) / 60:.1f} min.",
    ]
    body = [f"\n## {s.title}\n\n" + "\n".join(s.lines) for s in sections]
    return "\n".join(head) + "\n" + "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> int:
    from common import bench_parser

    parser = bench_parser(__doc__, "small sizes of every part (about 2 minutes)", "scale.md")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run, of {', '.join(PARTS)}")
    parser.add_argument("--admin-url", default=os.environ.get(ADMIN_ENV, ADMIN_DEFAULT), help="PostgreSQL maintenance URL")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    plan = QUICK if args.quick else FULL
    began = time.monotonic()
    sections: list[Section] = []
    for part in PARTS:
        if part not in parts:
            continue
        load_before = load_average()
        part_began = time.monotonic()
        print(f"== {part} (load average {load_before:.2f})", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"checkpoint-scale-{part}-") as tmp:
            if part == "cpu":
                section = part_cpu(plan, Path(tmp))
            elif part == "rss":
                section = part_rss(plan, Path(tmp))
            elif part == "diff":
                section = part_diff(plan, Path(tmp))
            elif part == "list":
                section = part_list(plan, Path(tmp), args.admin_url)
            else:
                section = part_audit(plan, Path(tmp), args.admin_url)
        took = time.monotonic() - part_began
        section.lines.append(
            f"\n_Load average (1 min) {load_before:.2f} before, {load_average():.2f} after; {took / 60:.1f} min._"
        )
        print(f"   done in {took / 60:.1f} min (load average {load_average():.2f})", flush=True)
        sections.append(section)
        publish(report(sections, parts, args.quick, began), args.output)  # after every part: a later failure keeps it
    return 0


if __name__ == "__main__":
    sys.exit(main())
