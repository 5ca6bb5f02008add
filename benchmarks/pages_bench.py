"""Review pages under load: the request page of two versions with 2,000 params and 2,000
metrics each, the list page over 100,000 requests (SQLite and PostgreSQL), and the size of
the script injected into MLflow. Prints a Markdown table; targets: request page first view
≤ 300 ms and warm p50 ≤ 100 ms (rendered from its diff snapshot, review/diff_snapshots.py),
list ≤ 50 ms for any page and filter, script ≤ 15 KB.

The request page is measured twice: a reviewer arriving once the background thread has read
the diff (a second or so after opening: the targets), and a view the instant the request opens,
before that read (the page reads MLflow itself; shown for scale, no target).

    .venv/bin/python benchmarks/pages_bench.py [--quick] [--postgres URL] [--detail-only]

Everything runs on loopback; every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests
import sqlalchemy as sa
from common import ROOT, Checkpoint
from seed import fill_requests, seed_wide_versions

from checkpoint.demo.mlflow_server import MlflowServer

PARAMS = METRICS = 2000


def timed(session: requests.Session, url: str, runs: int) -> tuple[float, float, float]:
    """The first GET's time, then p50 and max in ms of ``runs`` more."""
    start = time.perf_counter()
    session.get(url, timeout=60).raise_for_status()
    first = (time.perf_counter() - start) * 1000
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = session.get(url, timeout=60)
        samples.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    return first, statistics.median(samples), max(samples)


def snapshot_taken(database_url: str, request_id: int, timeout: float = 60.0) -> float:
    """Wait (bounded) until the background thread stored the request's diff snapshot; seconds waited."""
    engine = sa.create_engine(database_url)
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            with engine.connect() as conn:
                query = sa.text("SELECT taken_at FROM diff_snapshots WHERE request_id = :id AND data IS NOT NULL")
                if conn.execute(query, {"id": request_id}).first() is not None:
                    return time.monotonic() - start
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise TimeoutError(f"no diff snapshot of request #{request_id} after {timeout:.0f} s")


def open_request(http: requests.Session, base: str, name: str, author: str) -> int:
    """A request to move ``champion`` to v2 (one per author: each is a new request)."""
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": "2"}
    answer = http.post(f"{base}/checkpoint/api/v1/requests", json={"change": change}, auth=(author, "x"), timeout=60)
    answer.raise_for_status()
    return answer.json()["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 requests and 500 params/metrics")
    parser.add_argument("--postgres", help="also measure the list on this PostgreSQL URL (a scratch database)")
    parser.add_argument("--detail-only", action="store_true", help="only the request page (no list, no 100,000 requests)")
    args = parser.parse_args()
    n_requests = 0 if args.detail_only else 10_000 if args.quick else 100_000
    width = 500 if args.quick else PARAMS
    runs = 5 if args.quick else 15
    rows: list[tuple[str, float, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        mlflow = MlflowServer(tmp_path / "mlflow", workers=1).start()
        processes = []
        try:
            name = seed_wide_versions(mlflow.url, width, width)
            backends = [("SQLite", f"sqlite:///{tmp_path / 'checkpoint.db'}")]
            if args.postgres:
                backends.append(("PostgreSQL", args.postgres))
            for label, url in backends:
                fill_requests(url, n_requests)
                server = Checkpoint(tmp_path / label, mlflow.url, {"CHECKPOINT_DATABASE_URL": url, "CHECKPOINT_WORKERS": "1"})
                processes.append(server.start())
                base = server.url
                http = requests.Session()
                http.auth = ("alice", "x")
                if label == "SQLite":
                    wide = f"{width}+{width} params/metrics per version"
                    ready = open_request(http, base, name, "alice")
                    waited = snapshot_taken(url, ready)
                    first, p50, worst = timed(http, f"{base}/checkpoint/requests/{ready}", runs)
                    rows.append(
                        (
                            f"request page, {wide}, its snapshot read ({waited:.1f} s after opening)",
                            first,
                            p50,
                            worst,
                            "first ≤ 300 ms, p50 ≤ 100 ms",
                        )
                    )
                    instant = open_request(http, base, name, "bob")
                    first, p50, worst = timed(http, f"{base}/checkpoint/requests/{instant}", runs)
                    rows.append(
                        (f"request page, {wide}, viewed the instant it opens", first, p50, worst, "(no snapshot yet: scale only)")
                    )
                if args.detail_only:
                    continue
                pages = {
                    "list: open (default)": "/checkpoint/requests",
                    "list: all states": "/checkpoint/requests?state=all",
                    "list: one model": "/checkpoint/requests?state=all&model=model-042",
                    "list: author + target": "/checkpoint/requests?state=all&author=user07&target=stage%3AProduction",
                    "list: title search": "/checkpoint/requests?state=all&q=build+4242",
                }
                for what, path in pages.items():
                    first, p50, worst = timed(http, base + path, runs)
                    rows.append((f"{what} ({label}, {n_requests:,} requests)", first, p50, worst, "≤ 50 ms"))
                deep = http.get(f"{base}/checkpoint/api/v1/requests?state=applied&limit=25", timeout=60).json()
                cursor = deep["next_cursor"]
                for _ in range(20):  # walk 20 pages in, then time a deep page
                    cursor = http.get(
                        f"{base}/checkpoint/api/v1/requests?state=applied&limit=25&cursor={cursor}", timeout=60
                    ).json()["next_cursor"]
                first, p50, worst = timed(http, f"{base}/checkpoint/requests?state=applied&cursor={cursor}", runs)
                rows.append((f"list: page 21 of applied ({label})", first, p50, worst, "≤ 50 ms"))
        finally:
            for server in processes:
                server.stop()
            mlflow.stop()
    script = ROOT / "checkpoint" / "web" / "static" / "panel.js"
    size = script.stat().st_size if script.exists() else 0
    print("| measurement | first view ms | p50 ms | max ms | target |")
    print("|---|---:|---:|---:|---|")
    for what, first, p50, worst, target in rows:
        print(f"| {what} | {first:.1f} | {p50:.1f} | {worst:.1f} | {target} |")
    print(f"| injected panel.js size | {size:,} bytes | | | ≤ 15 KB |")


if __name__ == "__main__":
    main()
