"""The training step of the demo's pipeline (scripts/demo-pipeline): train a new churn-model
version for real and register it through Checkpoint, as a nightly job would.

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python -m checkpoint.demo.pipeline

It talks to MLflow only through ``MLFLOW_TRACKING_URI`` (Checkpoint's address in the demo), with
the MLflow client's own credentials: Checkpoint's API tokens are for Checkpoint's API, and
registering a version is not a governed call. It prints ``version=N`` and ``val_auc=X`` on
standard output, shell assignments the pipeline reads (as a GitHub Actions step writes
``$GITHUB_OUTPUT``); the rest of the pipeline is the ``checkpoint`` CLI.
"""

from __future__ import annotations

import os
import sys

from checkpoint.demo.data import MODELS, PIPELINE_MODEL, PIPELINE_USER, DemoError, VersionSpec, synthetic_data
from checkpoint.demo.seed import log_version, quiet_mlflow

# Each run trains the same recipe on the same data: what changes from run to run is the version
# number MLflow gives it. Gradient boosting, as the churn-model's Staging candidate, a bit deeper.
NIGHTLY = VersionSpec(
    "churn-gbm-nightly",
    PIPELINE_USER,
    "boosting",
    {"n_estimators": 120, "learning_rate": 0.1, "max_depth": 3},
    "subscribers-2025-q4",
    "Nightly retrain by the pipeline (scripts/demo-pipeline).",
)


def train(tracking_uri: str) -> tuple[str, float]:
    """Train, log and register one churn-model version at ``tracking_uri``; (version, val_auc)."""
    from mlflow import MlflowClient

    (model,) = [m for m in MODELS if m.name == PIPELINE_MODEL]
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    with quiet_mlflow(tracking_uri):
        experiment = client.get_experiment_by_name(model.experiment)
        if experiment is None or not client.search_registered_models(f"name = '{model.name}'"):
            raise DemoError(f"{model.name} is not in the registry at {tracking_uri}: start the demo first (bash scripts/demo)")
        version = log_version(client, model, NIGHTLY, experiment.experiment_id, synthetic_data(model.name))
        run_id = client.get_model_version(model.name, version).run_id
        assert run_id is not None  # log_version registers the version from its run
        auc = client.get_run(run_id).data.metrics["val_auc"]
    return version, auc


def main() -> int:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        print("set MLFLOW_TRACKING_URI to Checkpoint's address, e.g. http://127.0.0.1:5000", file=sys.stderr)
        return 2
    try:
        version, auc = train(uri)
    except DemoError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"version={version}")
    print(f"val_auc={auc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
