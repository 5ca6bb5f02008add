"""Model versions with something to compare (params, metrics, a signature, requirements), set up
straight on MLflow: the compare tests' story (tests/integration/test_compare*.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from mlflow import MlflowClient

MLMODEL = """artifact_path: model
flavors:
  python_function: {{loader_module: mlflow.sklearn}}
  sklearn: {{sklearn_version: 1.5.0}}
signature:
  inputs: '{inputs}'
  outputs: '[{{"type": "long", "required": true}}]'
"""


@dataclass(frozen=True)
class Logged:
    """What one version's run logged."""

    params: dict
    metrics: dict
    columns: tuple[str, ...]
    requirements: str


OLD_REQUIREMENTS = "scikit-learn==1.4.2\nnumpy\n"
V1 = Logged({"C": "1.0", "max_iter": "50"}, {"accuracy": 0.80, "loss": 0.50}, ("amount", "country"), OLD_REQUIREMENTS)
V2 = Logged({"C": "0.7", "max_iter": "50"}, {"accuracy": 0.82, "loss": 0.45}, ("amount", "country"), OLD_REQUIREMENTS)
# v3 drops an input column (breaking), logs a NaN metric and a new requirement.
V3 = Logged(
    {"C": "0.5", "max_iter": "80"},
    {"accuracy": 0.85, "loss": 0.55, "drift": float("nan")},
    ("amount",),
    "scikit-learn==1.5.0\nnumpy\nscipy>=1.11\n",
)


def register(mlflow_url: str, name: str, logged: Logged) -> str:
    """A version of ``name`` from a run that logged ``logged`` (with MLmodel and requirements.txt)."""
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    experiment = client.get_experiment_by_name("compare-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("compare-tests")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    for key, value in logged.params.items():
        client.log_param(run_id, key, value)
    for key, value in logged.metrics.items():
        client.log_metric(run_id, key, value)
    columns = json.dumps([{"type": "double", "name": c, "required": True} for c in logged.columns])
    client.log_text(run_id, MLMODEL.format(inputs=columns), "model/MLmodel")
    client.log_text(run_id, logged.requirements, "model/requirements.txt")
    client.set_terminated(run_id)
    return client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run_id).version


def fraud_model(mlflow_url: str) -> str:
    """v1 holds @champion and Production; v2 and v3 are candidates."""
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    for logged in (V1, V2, V3):
        register(mlflow_url, name, logged)
    client.transition_model_version_stage(name, "1", "Production")
    client.set_registered_model_alias(name, "champion", "1")
    return name
