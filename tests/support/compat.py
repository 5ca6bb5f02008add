"""Which MLflow the session's server is. Checkpoint's answers must not depend on it; a few
expectations about MLflow's *own* answers do (2.x serves through gunicorn, 3.x through uvicorn)."""

from __future__ import annotations

from functools import cache

from checkpoint.demo.mlflow_server import MlflowServer


@cache
def _version(url: str) -> str:
    return MlflowServer.version_at(url)


def mlflow_version(server: MlflowServer) -> str:
    """The running ``server``'s MLflow version (asked once per server)."""
    return _version(server.url)


def mlflow_major(server: MlflowServer) -> int:
    return int(mlflow_version(server).split(".")[0])
