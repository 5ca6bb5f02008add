"""Operational endpoints: liveness and readiness for load balancers and orchestrators, and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from checkpoint.runtime import metrics as checkpoint_metrics
from checkpoint.web.context import current_services

bp = Blueprint("ops", __name__, url_prefix="/checkpoint")


@bp.get("/healthz")
def healthz():
    """The process is up and serving; says nothing of its dependencies."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when the database answers and MLflow's /health does."""
    problems = {}
    try:
        with current_services().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        problems["database"] = str(exc).splitlines()[0]
    proxy = current_services().proxy
    try:
        answer = proxy.pool.request("GET", proxy.base_path + "/health", retries=False, timeout=2.0)
        if answer.status != 200:
            problems["mlflow"] = f"{proxy.upstream}/health answered {answer.status}"
    except Exception as exc:  # noqa: BLE001
        problems["mlflow"] = f"{proxy.upstream} unreachable: {type(exc).__name__}"
    if problems:
        return jsonify(status="unavailable", problems=problems), 503
    return jsonify(status="ready")


@bp.get("/metrics")
def metrics():
    """Prometheus metrics, every worker's counts added up (see checkpoint/metrics.py)."""
    built = current_services().metrics_registry()
    return Response(
        checkpoint_metrics.exposition(built),
        mimetype=None,
        content_type=checkpoint_metrics.CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )
