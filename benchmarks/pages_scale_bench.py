"""The request list and the request page with its diff, with 100,000 requests in PostgreSQL.

    .venv/bin/python benchmarks/pages_scale_bench.py            # 100,000 requests, 50 timed runs per page
    .venv/bin/python benchmarks/pages_scale_bench.py --quick    # 10,000 requests, 15 runs

It creates its own database (``cp_bench_<pid>``) on the local PostgreSQL, migrates it with
alembic, bulk-inserts the requests (with an approval or rejection on each applied or
rejected one) through SQLAlchemy core, starts a real ``mlflow server`` with one model of
two wide versions and ``checkpoint serve`` (default settings, that database), opens one
real request through the API, and times each page sequentially on one keep-alive
connection: the first view, then p50/p99 of ``--runs`` more. Targets: list ≤ 50 ms and
request page ≤ 300 ms (p50, warm; a p99 over it is flagged). The database is dropped at the end. Loopback only;
every loop is bounded in count.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests
import sqlalchemy as sa
from common import bench_parser, load_average, percentile, publish, servers
from seed import fill_requests, seed_wide_versions

ADMIN_ENV = "CHECKPOINT_TEST_POSTGRES_URL"  # the same variable, and default, as the test suite (scripts/test)
ADMIN_DEFAULT = "postgresql+psycopg://checkpoint_test:checkpoint_test@127.0.0.1:5432/postgres"
LIST_TARGET_MS, DETAIL_TARGET_MS = 50.0, 300.0


@dataclass(frozen=True)
class Plan:
    requests: int
    runs: int
    width: int  # params and metrics per version of the diffed model


FULL = Plan(requests=100_000, runs=50, width=2000)
QUICK = Plan(requests=10_000, runs=15, width=500)


@dataclass
class Timing:
    what: str
    first_ms: float
    samples: list[float]
    target_ms: float

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


Check = Callable[[requests.Response], None]


def time_page(http: requests.Session, url: str, runs: int, check: Check) -> tuple[float, list[float]]:
    """The first GET's time, then the times of ``runs`` more, in ms; every answer is checked."""
    samples: list[float] = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        answer = http.get(url, timeout=60)
        samples.append((time.perf_counter() - start) * 1000)
        check(answer)
    return samples[0], samples[1:]


def html_ok(marker: str) -> Check:
    def check(answer: requests.Response) -> None:
        if answer.status_code != 200 or marker not in answer.text:
            raise RuntimeError(f"{answer.url} answered {answer.status_code} without {marker!r}: {answer.text[:300]!r}")

    return check


def cursor_at(http: requests.Session, base: str, query: str, depth: int) -> tuple[str, int]:
    """The list's own cursor ``depth`` rows into ``query`` (walked through the API, 200 rows a call)."""
    cursor, walked = "", 0
    for _ in range(depth // 200 + 1):  # bounded: one call per 200 rows
        limit = min(200, depth - walked)
        if limit <= 0:
            break
        page = http.get(f"{base}/checkpoint/api/v1/requests?{query}&limit={limit}&cursor={cursor}", timeout=60)
        page.raise_for_status()
        body = page.json()
        if not body.get("next_cursor"):
            break
        cursor, walked = body["next_cursor"], walked + limit
    return cursor, walked


@dataclass
class ScratchDatabase:
    """A database of our own on the local PostgreSQL, created empty and dropped with FORCE."""

    admin_url: str
    name: str = f"cp_bench_{os.getpid()}"

    def __post_init__(self) -> None:
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    @property
    def url(self) -> str:
        return self.admin.url.set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> ScratchDatabase:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()

    def analyze(self) -> None:
        """Fresh statistics, as autovacuum would have them on a database that grew over months."""
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
        engine.dispose()


def measure(plan: Plan, admin_url: str, tmp: Path) -> tuple[list[Timing], dict[str, str]]:
    facts: dict[str, str] = {}
    timings: list[Timing] = []
    with ScratchDatabase(admin_url) as database:
        seconds = fill_requests(database.url, plan.requests, reviews=True)
        database.analyze()
        facts["seed"] = f"{plan.requests:,} requests inserted in {seconds:.1f} s into `{database.name}`"
        print(f"  {facts['seed']}", flush=True)
        with servers(tmp, 1, {"CHECKPOINT_DATABASE_URL": database.url}) as (mlflow, checkpoint):
            model = seed_wide_versions(mlflow.url, plan.width, plan.width)
            base = checkpoint.url
            http = requests.Session()
            http.auth = ("alice", "x")
            change = {"kind": "set_alias", "name": model, "alias": "champion", "version": "2"}
            opened = http.post(f"{base}/checkpoint/api/v1/requests", json={"change": change}, timeout=60)
            opened.raise_for_status()
            real_id = opened.json()["id"]
            facts["checkpoint"] = f"{len(checkpoint.pids()) - 1} gunicorn workers + master"

            def page(what: str, path: str, marker: str = "cp-", target: float = LIST_TARGET_MS) -> None:
                first, samples = time_page(http, base + path, plan.runs, html_ok(marker))
                timings.append(Timing(what, first, samples, target))
                print(
                    f"  {what}: first {first:.1f} ms, p50 {percentile(samples, 50):.1f}, p99 {percentile(samples, 99):.1f}",
                    flush=True,
                )

            page("request page with diff (real request)", f"/checkpoint/requests/{real_id}", "cp-diff", DETAIL_TARGET_MS)
            page("request page, a seeded applied request", "/checkpoint/requests/1", "cp-", DETAIL_TARGET_MS)
            page("list: open (default)", "/checkpoint/requests")
            page("list: all states", "/checkpoint/requests?state=all")
            page("list: applied", "/checkpoint/requests?state=applied")
            page("list: one model", "/checkpoint/requests?state=all&model=model-042")
            page("list: one author", "/checkpoint/requests?state=all&author=user07")
            page("list: author + target", "/checkpoint/requests?state=all&author=user07&target=" + quote("stage:Production"))
            page("list: rejected, one model", "/checkpoint/requests?state=rejected&model=model-042")
            page("list: title search, one match", f"/checkpoint/requests?state=all&q=build+{plan.requests // 2 + 7}")
            page("list: title search, no match", "/checkpoint/requests?state=all&q=no-such-title")
            for label, depth in (("page 21", 20 * 25), ("middle", plan.requests * 6 // 10 // 2), ("last", plan.requests)):
                cursor, walked = cursor_at(http, base, "state=applied", depth)
                page(f"list: applied, {label} (after {walked:,} rows)", f"/checkpoint/requests?state=applied&cursor={cursor}")
            cursor, walked = cursor_at(http, base, "", plan.requests // 2)  # the API lists all states without one
            page(f"list: all states, middle (after {walked:,} rows)", f"/checkpoint/requests?state=all&cursor={cursor}")
    return timings, facts


def report(plan: Plan, timings: list[Timing], facts: dict[str, str], quick: bool, load_before: float) -> str:
    from importlib.metadata import version

    engine = sa.create_engine(facts["admin"])
    with engine.connect() as conn:
        server = conn.execute(sa.text("SHOW server_version")).scalar()
    engine.dispose()
    lines = [
        f"## Pages at scale{' (quick)' if quick else ''}: {plan.requests:,} requests in PostgreSQL {server}",
        "",
        f"{facts['seed']}; diffed model: 2 versions × {plan.width:,} params and {plan.width:,} metrics. "
        f"Checkpoint: `checkpoint serve`, {facts['checkpoint']}. One keep-alive client, sequential; "
        f"first view, then p50/p99 of {plan.runs} runs. mlflow {version('mlflow')}, {os.cpu_count()} cores; "
        f"load average (1 min) {load_before:.1f} before, {load_average():.1f} after.",
        "",
        "| page | first ms | p50 ms | p99 ms | target (p50, warm) | result |",
        "|---|---:|---:|---:|---|:---:|",
    ]
    for t in timings:
        ok = ("PASS" if t.p50 <= t.target_ms else "FAIL") + (" (p99 over)" if t.p99 > t.target_ms else "")
        lines.append(f"| {t.what} | {t.first_ms:.1f} | {t.p50:.1f} | {t.p99:.1f} | ≤ {t.target_ms:.0f} ms | {ok} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "10,000 requests, 15 runs, 500 params/metrics per version", "pages_scale.md")
    parser.add_argument("--requests", type=int, help="how many requests to seed (default 100,000)")
    parser.add_argument("--runs", type=int, help="timed runs per page after the first view (default 50)")
    parser.add_argument("--width", type=int, help="params and metrics per version of the diffed model (default 2,000)")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(ADMIN_ENV, ADMIN_DEFAULT),
        help=f"PostgreSQL maintenance database to create the scratch one from (${ADMIN_ENV})",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        requests=min(max(args.requests or base.requests, 1000), 1_000_000),
        runs=min(max(args.runs or base.runs, 1), 1000),
        width=min(max(args.width or base.width, 1), 10_000),
    )
    load_before = load_average()
    print(f"== pages at scale: {plan.requests:,} requests, {plan.runs} runs per page", flush=True)
    with tempfile.TemporaryDirectory(prefix="checkpoint-pages-") as tmp:
        timings, facts = measure(plan, args.admin_url, Path(tmp))
    facts["admin"] = args.admin_url
    publish(report(plan, timings, facts, args.quick, load_before), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
