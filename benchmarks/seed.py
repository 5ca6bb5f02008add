"""Data for the benchmarks: registry content in a real MLflow, and promote requests in bulk.

Requests are inserted with SQLAlchemy core into a migrated database (fast, not through the
API), so a list of 100,000 takes seconds to build; their models need not exist in MLflow.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from checkpoint.storage import db
from checkpoint.storage.change_index import index_rows
from checkpoint.storage.models import RequestChangeRow, RequestRow, ReviewRow

STATES = ["open", "applied", "rejected", "withdrawn", "failed"]
STATE_WEIGHTS = [10, 60, 10, 10, 10]
TARGETS = ["alias:champion", "stage:Production", "stage:Staging", "model:prod.x", "tag:validation_status"]
N_MODELS, N_AUTHORS = 200, 40


def seed_wide_versions(mlflow_url: str, n_params: int, n_metrics: int, name: str = "wide-model") -> str:
    """Two versions whose runs have n params and n metrics (with a short history each)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=mlflow_url)
    client.create_registered_model(name)
    experiment = client.create_experiment(name)
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


@dataclass
class Registry:
    """What seed_registry put into MLflow, for building calls against it."""

    models: list[str] = field(default_factory=list)
    versions: dict[str, list[str]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    experiment_id: str = ""
    metric_keys: list[str] = field(default_factory=list)
    artifact_dirs: list[str] = field(default_factory=list)  # "<experiment>/<run>/artifacts", the proxy's paths
    small_files: list[str] = field(default_factory=list)  # run-relative paths every run has


def seed_registry(mlflow_url: str, models: int = 4, versions: int = 3, history: int = 50, blob_kib: int = 64) -> Registry:
    """``models`` models of ``versions`` versions; each version's run has params, metrics with a
    ``history``-step history, a text note and a small binary artifact; version 1 is the champion."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=mlflow_url)
    out = Registry(metric_keys=["loss", "accuracy", "auc", "f1"], small_files=["notes/readme.txt", "data/blob.bin"])
    out.experiment_id = client.create_experiment(f"load-{int(time.time())}")
    rng = random.Random(0)
    stamp = int(time.time() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "blob.bin"
        blob.write_bytes(rng.randbytes(blob_kib * 1024))
        for m in range(models):
            name = f"load-model-{m}"
            client.create_registered_model(name, description=f"benchmark model {m}")
            out.models.append(name)
            for v in range(versions):
                run = client.create_run(out.experiment_id, run_name=f"{name}-v{v + 1}")
                rid = run.info.run_id
                params = [Param(f"p{i:02d}", str(rng.randint(0, 9))) for i in range(20)]
                metrics = [Metric(key, rng.random(), stamp + step, step) for key in out.metric_keys for step in range(history)]
                client.log_batch(rid, params=params, metrics=metrics)
                client.log_text(rid, f"{name} version {v + 1}\n" * 20, "notes/readme.txt")
                client.log_artifact(rid, str(blob), "data")
                client.set_terminated(rid)
                mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=rid)
                out.versions.setdefault(name, []).append(mv.version)
                out.runs.append(rid)
                out.artifact_dirs.append(f"{out.experiment_id}/{rid}/artifacts")
            client.set_registered_model_alias(name, "champion", "1")
    return out


def request_rows(count: int, seed: int = 0, start_id: int = 1) -> Iterator[dict]:
    """``count`` requests across 200 models, 5 targets, 40 authors and the states (60 % applied), one a minute."""
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(start_id, start_id + count):
        model = f"model-{rng.randrange(N_MODELS):03d}"
        stamp = base + timedelta(minutes=i)
        yield {
            "kind": "set_alias",
            "model_name": model,
            "version": str(i % 9 + 1),
            "target": rng.choice(TARGETS),
            "change": {"kind": "set_alias", "name": model, "alias": "champion", "version": "1"},
            "title": f"Promote {model} build {i}",
            "description": "",
            "author": f"user{rng.randrange(N_AUTHORS):02d}",
            "state": rng.choices(STATES, weights=STATE_WEIGHTS)[0],
            "state_reason": "",
            "challenger": {"name": model, "version": "1", "run_id": "r", "source": "s"},
            "champion": None,
            "dedupe_key": f"bench-{i}",
            "created_at": stamp,
            "updated_at": stamp,
            "applied_at": None,
            "apply_result": "",
            "named_reviewers": [],
            "rule_name": "default",
        }


def fill_requests(database_url: str, count: int, *, reviews: bool = False, batch: int = 5000) -> float:
    """Migrate the database and insert ``count`` requests in batches; with ``reviews``, every
    applied request gets an approval and every rejected one a rejection, as the list shows them.
    Returns the seconds it took."""
    started = time.monotonic()
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    rows = request_rows(count)
    try:
        with engine.begin() as conn:
            while chunk := [row for _, row in zip(range(batch), rows, strict=False)]:
                insert = sa.insert(RequestRow.__table__).returning(RequestRow.id, sort_by_parameter_order=True)
                ids = conn.execute(insert, chunk).scalars().all()
                conn.execute(sa.insert(RequestChangeRow.__table__), change_rows(zip(ids, chunk, strict=True)))
                if reviews:
                    verdicts = [
                        {
                            "request_id": rid,
                            "reviewer": f"user{(int(row['author'][4:]) + 1) % N_AUTHORS:02d}",
                            "verdict": "approve" if row["state"] == "applied" else "reject",
                            "comment": "",
                            "created_at": row["created_at"],
                            "dismissed_at": None,
                            "dismissed_reason": "",
                        }
                        for rid, row in zip(ids, chunk, strict=True)
                        if row["state"] in ("applied", "rejected")
                    ]
                    if verdicts:
                        conn.execute(sa.insert(ReviewRow.__table__), verdicts)
    finally:
        engine.dispose()
    if database_url.startswith("postgresql"):
        vacuum(database_url)
    return time.monotonic() - started


def vacuum(database_url: str) -> None:
    """``VACUUM ANALYZE``, as autovacuum would have left a list that grew over months: besides the
    statistics it merges the title index's GIN pending list, which a bulk load leaves long (every
    search scans it: 108 ms at 100,000 requests with ANALYZE alone)."""
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


def change_rows(requests: Iterable[tuple[int, dict]]) -> list[dict]:
    """The ``request_changes`` rows of (id, request row) pairs, as the store writes them: every
    model and target filter of the list reads these."""
    return [
        {"request_id": rid, **item}
        for rid, row in requests
        for item in index_rows(row.get("workspace"), row["model_name"], row["target"], row["challenger"], row.get("changes"))
    ]


REQUEST_COLUMNS = (
    "id",
    "kind",
    "model_name",
    "version",
    "target",
    "change",
    "title",
    "description",
    "author",
    "state",
    "state_reason",
    "challenger",
    "champion",
    "dedupe_key",
    "created_at",
    "updated_at",
    "applied_at",
    "apply_result",
    "named_reviewers",
    "rule_name",
)
REVIEW_COLUMNS = ("request_id", "reviewer", "verdict", "comment", "created_at", "dismissed_reason")
CHANGE_COLUMNS = ("request_id", "position", "workspace", "model_name", "target", "challenger_model", "challenger_version")
JSON_COLUMNS = {"change", "challenger", "champion", "named_reviewers"}


def copy_requests(database_url: str, count: int, start_id: int = 1) -> float:
    """The requests of :func:`fill_requests` (reviews included) with PostgreSQL's ``COPY``, ids
    ``start_id`` onwards, so a list of a million grows in steps in about a minute. The database
    must be migrated. Returns the seconds it took."""
    started = time.monotonic()
    engine = sa.create_engine(database_url)
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cursor:
            reviews, changes = [], []
            with cursor.copy(f"COPY promote_requests ({', '.join(REQUEST_COLUMNS)}) FROM STDIN") as copy:
                for request_id, row in enumerate(request_rows(count, seed=start_id, start_id=start_id), start_id):
                    row["id"] = request_id
                    copy.write_row(
                        [json.dumps(row[c]) if c in JSON_COLUMNS and row[c] is not None else row[c] for c in REQUEST_COLUMNS]
                    )
                    changes.extend(change_rows([(request_id, row)]))
                    if row["state"] in ("applied", "rejected"):
                        reviewer = f"user{(int(row['author'][4:]) + 1) % N_AUTHORS:02d}"
                        verdict = "approve" if row["state"] == "applied" else "reject"
                        reviews.append((request_id, reviewer, verdict, "", row["created_at"], ""))
            with cursor.copy(f"COPY reviews ({', '.join(REVIEW_COLUMNS)}) FROM STDIN") as copy:
                for review in reviews:
                    copy.write_row(review)
            with cursor.copy(f"COPY request_changes ({', '.join(CHANGE_COLUMNS)}) FROM STDIN") as copy:
                for change in changes:
                    copy.write_row([change[c] for c in CHANGE_COLUMNS])
            cursor.execute("SELECT setval(pg_get_serial_sequence('promote_requests', 'id'), %s)", (start_id + count - 1,))
        conn.commit()
    finally:
        raw.close()
        engine.dispose()
    return time.monotonic() - started
