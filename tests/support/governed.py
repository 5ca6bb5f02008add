"""Helpers for governance tests: registry set-up straight on MLflow, calls through Checkpoint."""

from __future__ import annotations

import uuid

import requests
from mlflow import MlflowClient


def unique(prefix: str = "model") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_model(mlflow_url: str, name: str | None = None, versions: int = 2) -> tuple[str, list[str]]:
    """A registered model with ``versions`` versions, each from its own run (set up directly on MLflow)."""
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    name = name or unique()
    client.create_registered_model(name)
    experiment = client.get_experiment_by_name("governance-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("governance-tests")
    made = []
    for i in range(versions):
        run = client.create_run(experiment_id)
        client.log_param(run.info.run_id, "i", str(i))
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        made.append(version.version)
    return name, made


def api(base: str, method: str, path: str, user: str = "bob", **kwargs) -> requests.Response:
    """A call to Checkpoint's JSON API as ``user`` (claimed through Basic auth)."""
    return requests.request(method, f"{base}/checkpoint/api/v1{path}", auth=(user, "x"), timeout=30, **kwargs)
