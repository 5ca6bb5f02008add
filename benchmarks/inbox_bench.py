"""``GET /requests?awaiting=me`` with 100,000 requests (10 % open) in PostgreSQL.

    .venv/bin/python benchmarks/inbox_bench.py            # 100,000 requests, 30 runs per query
    .venv/bin/python benchmarks/inbox_bench.py --quick    # 10,000 requests, 10 runs

The rule in force is the policy file's now, so "awaiting me" is decided per candidate in Python
(review/inbox.py) after the database has narrowed them (open, not mine, no review of mine); a
page reads at most 1,000 candidates. Two users bound it: ``lead`` (every request waits for
them: the page fills from the first 50 candidates) and ``user07`` (a rule lists only ``lead``:
nothing waits, so every page reads the whole 1,000). Compared, interleaved, with the plain list
of open requests. Loopback only; every loop bounded; the database is dropped at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import bench_parser, load_average, percentile, publish, servers
from pages_scale_bench import ADMIN_DEFAULT, ADMIN_ENV, ScratchDatabase
from seed import fill_requests

POLICY = "rules:\n  - name: leads review\n    models: ['model-*']\n    reviewers: [lead]\n"
QUERIES = (
    ("open requests (plain list)", "user07", "state=open"),
    ("awaiting=me, lead (page fills)", "lead", "awaiting=me"),
    ("awaiting=me, user07 (nothing: 1,000 read)", "user07", "awaiting=me"),
    # Pages: the header counts what waits (at most 200 candidates read, counted to 10).
    ("page /checkpoint/requests, lead (count 10+)", "lead", "/checkpoint/requests"),
    ("page /checkpoint/requests, user07 (count: 200 read)", "user07", "/checkpoint/requests"),
    ("page /checkpoint/inbox, lead", "lead", "/checkpoint/inbox"),
    ("page /checkpoint/inbox, user07", "user07", "/checkpoint/inbox"),
)


def address(base: str, query: str) -> str:
    return base + query if query.startswith("/") else f"{base}/checkpoint/api/v1/requests?{query}"


def rows(answer: requests.Response) -> str:
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        return f"{len(answer.json()['requests'])} rows"
    return f"{answer.text.count('<tr>') - answer.text.count('<thead>')} rows"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "10,000 requests, 10 runs", "inbox_bench.md")
    args = parser.parse_args(argv)
    count, runs = (10_000, 10) if args.quick else (100_000, 30)
    admin = os.environ.get(ADMIN_ENV, ADMIN_DEFAULT)
    load_before = load_average()
    samples: dict[str, list[float]] = {q[0]: [] for q in QUERIES}
    facts: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, ScratchDatabase(admin) as database:
        seconds = fill_requests(database.url, count, reviews=True)
        database.analyze()
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        env = {"CHECKPOINT_DATABASE_URL": database.url, "CHECKPOINT_POLICY_FILE": str(policy)}
        with servers(Path(tmp), 1, env) as (_mlflow, checkpoint):
            http = requests.Session()
            for what, user, query in QUERIES:  # first views, and what each answers
                got = http.get(address(checkpoint.url, query), auth=(user, "x"), timeout=60)
                got.raise_for_status()
                facts[what] = rows(got)
            for _ in range(runs):  # interleaved: A B C, A B C, ...
                for what, user, query in QUERIES:
                    started = time.perf_counter()
                    got = http.get(address(checkpoint.url, query), auth=(user, "x"), timeout=60)
                    samples[what].append((time.perf_counter() - started) * 1000)
                    got.raise_for_status()
    lines = [
        f"{count:,} requests seeded in {seconds:.1f} s (10 % open); {runs} runs each, interleaved; "
        f"load average {load_before:.2f} before, {load_average():.2f} after",
        "",
        "| query | rows | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for what, _user, _query in QUERIES:
        s = samples[what]
        lines.append(f"| {what} | {facts[what]} | {percentile(s, 50):.1f} | {percentile(s, 99):.1f} |")
    publish("\n".join(lines), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
