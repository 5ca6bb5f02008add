"""Review pages under load: the request page of two versions with 2,000 params and 2,000
metrics each, the list page over 100,000 requests (SQLite and PostgreSQL), and the size of
the script injected into MLflow. Prints a Markdown table; targets: detail ≤ 300 ms,
list ≤ 50 ms for any page and filter, script ≤ 15 KB.

    .venv/bin/python benchmarks/pages_bench.py [--quick] [--postgres URL]

Everything runs on loopback; every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checkpoint import db  # noqa: E402
from checkpoint.mlflow_server import MlflowServer, free_port, wait_http  # noqa: E402

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


def seed_wide_versions(mlflow_url: str, n_params: int, n_metrics: int) -> str:
    """Two versions whose runs have n params and n metrics (with a short history each)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=mlflow_url)
    name = "wide-model"
    client.create_registered_model(name)
    experiment = client.create_experiment("wide")
    stamp = int(time.time() * 1000)
    for version in range(2):
        run = client.create_run(experiment)
        rid = run.info.run_id
        params = [Param(f"param_{i:04d}", f"value-{(i * (version + 1)) % 97}") for i in range(n_params)]
        metrics = [Metric(f"metric_{i:04d}", random.random(), stamp, step) for i in range(n_metrics) for step in (0, 1)]
        for start in range(0, len(params), 100):
            client.log_batch(rid, params=params[start : start + 100])
        for start in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[start : start + 1000])
        client.set_terminated(rid)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=rid)
    client.set_registered_model_alias(name, "champion", "1")
    return name


def fill_requests(database_url: str, count: int) -> None:
    """``count`` requests across models, targets, authors and states, inserted in bulk."""
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    states = ["open", "applied", "rejected", "withdrawn", "failed"]
    models = [f"model-{i:03d}" for i in range(200)]
    authors = [f"user{i:02d}" for i in range(40)]
    targets = ["alias:champion", "stage:Production", "stage:Staging", "model:prod.x", "tag:validation_status"]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        model = random.choice(models)
        stamp = base + timedelta(minutes=i)
        rows.append({
            "kind": "set_alias", "model_name": model, "version": str(i % 9 + 1), "target": random.choice(targets),
            "change": {"kind": "set_alias", "name": model, "alias": "champion", "version": "1"},
            "title": f"Promote {model} build {i}", "description": "", "author": random.choice(authors),
            "state": random.choices(states, weights=[10, 60, 10, 10, 10])[0], "state_reason": "",
            "challenger": {"name": model, "version": "1", "run_id": "r", "source": "s"}, "champion": None,
            "dedupe_key": f"bench-{i}", "created_at": stamp, "updated_at": stamp, "applied_at": None,
            "apply_result": "", "named_reviewers": [], "rule_name": "default",
        })  # fmt: skip
    from checkpoint.models import RequestRow

    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(RequestRow.__table__), rows[start : start + 5000])
    engine.dispose()


def serve(mlflow_url: str, database_url: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CHECKPOINT_REGISTRY_URL": mlflow_url, "CHECKPOINT_DATABASE_URL": database_url,
           "CHECKPOINT_DATA_DIR": str(data_dir), "CHECKPOINT_WORKERS": "1"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "checkpoint.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/checkpoint/healthz", timeout=60, process=process)
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 requests and 500 params/metrics")
    parser.add_argument("--postgres", help="also measure the list on this PostgreSQL URL (a scratch database)")
    args = parser.parse_args()
    n_requests = 10_000 if args.quick else 100_000
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
                process, base = serve(mlflow.url, url, tmp_path / label)
                processes.append(process)
                http = requests.Session()
                http.auth = ("alice", "x")
                if label == "SQLite":
                    opened = http.post(f"{base}/checkpoint/api/v1/requests", json={
                        "change": {"kind": "set_alias", "name": name, "alias": "champion", "version": "2"}})  # fmt: skip
                    opened.raise_for_status()
                    first, p50, worst = timed(http, f"{base}/checkpoint/requests/{opened.json()['id']}", runs)
                    rows.append((f"detail page, {width}+{width} params/metrics per version", first, p50, worst, "≤ 300 ms"))
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
                    cursor = http.get(f"{base}/checkpoint/api/v1/requests?state=applied&limit=25&cursor={cursor}",
                                      timeout=60).json()["next_cursor"]  # fmt: skip
                first, p50, worst = timed(http, f"{base}/checkpoint/requests?state=applied&cursor={cursor}", runs)
                rows.append((f"list: page 21 of applied ({label})", first, p50, worst, "≤ 50 ms"))
        finally:
            for process in processes:
                process.terminate()  # graceful: gunicorn lets requests in flight finish
                try:
                    process.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            mlflow.stop()
    script = ROOT / "frontend" / "static" / "panel.js"
    size = script.stat().st_size if script.exists() else 0
    print("| measurement | first view ms | p50 ms | max ms | target |")
    print("|---|---:|---:|---:|---|")
    for what, first, p50, worst, target in rows:
        print(f"| {what} | {first:.1f} | {p50:.1f} | {worst:.1f} | {target} |")
    print(f"| injected panel.js size | {size:,} bytes | | | ≤ 15 KB |")


if __name__ == "__main__":
    main()
