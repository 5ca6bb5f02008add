"""Real models for the behavioural diff's tests: scikit-learn models logged with their input
examples, and hostile pyfunc models (models from code) whose load does what a model author
should not be able to do."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression, LogisticRegression

from tests.support.governed import api


def frame(columns: list[str], rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.normal(size=rows) for c in columns})


def log_sklearn(
    mlflow_url: str,
    name: str,
    columns: list[str],
    c: float = 1.0,
    kind: str = "classifier",
    example_rows: int = 12,
    seed: int = 0,
    shift: float = 0.0,
):
    """Register a new version of ``name``: a model trained on ``columns``, logged with the first
    ``example_rows`` rows as its input example (a classifier's boundary moved by ``shift``).
    Returns (version, the fitted model, the example)."""
    X = frame(columns, seed=seed)
    target = X[columns[0]] + 0.5 * X[columns[-1]]
    if kind == "classifier":
        model = LogisticRegression(C=c).fit(X, (target > shift).astype(int))
    else:
        model = LinearRegression().fit(X, target * c)
    example = X.iloc[:example_rows]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        with mlflow.start_run(experiment_id=_experiment(mlflow_url)):
            info = mlflow.sklearn.log_model(model, name="model", input_example=example, registered_model_name=name)
    return str(info.registered_model_version), model, example


def log_hostile(mlflow_url: str, name: str, load_body: str, tmp: Path, requirements: list[str] | None = None) -> str:
    """Register a new version of ``name``: a pyfunc model from code whose ``load_context`` runs
    ``load_body``, logged without an input example and with its requirements (so that logging
    never runs it here; by default only ``mlflow``)."""
    code = tmp / f"hostile_{uuid.uuid4().hex[:8]}.py"
    body = textwrap.indent(textwrap.dedent(load_body).strip(), " " * 8)
    code.write_text(
        "import mlflow.pyfunc\n"
        "from mlflow.models import set_model\n\n\n"
        "class Hostile(mlflow.pyfunc.PythonModel):\n"
        "    def load_context(self, context):\n"
        f"{body}\n\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n\n\n"
        "set_model(Hostile())\n"
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        with mlflow.start_run(experiment_id=_experiment(mlflow_url)):
            # Requirements given: MLflow would otherwise load the model in a subprocess here to infer them.
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(code), registered_model_name=name, pip_requirements=requirements or ["mlflow"]
            )
    return str(info.registered_model_version)


def _experiment(mlflow_url: str) -> str:
    client = MlflowClient(tracking_uri=mlflow_url)
    found = client.get_experiment_by_name("behaviour-tests")
    return found.experiment_id if found else client.create_experiment("behaviour-tests")


def ask_alias(base: str, name: str, version: str, alias: str = "champion") -> int:
    """Open a request to point ``alias`` of ``name`` at ``version``; its id."""
    change = {"kind": "set_alias", "name": name, "alias": alias, "version": version}
    answer = api(base, "POST", "/requests", user="alice", json={"change": change})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


def behaviour_of(base: str, request_id: int) -> dict:
    answer = api(base, "GET", f"/requests/{request_id}", user="carol")
    assert answer.status_code == 200, answer.text
    return answer.json()["behaviour"]


def log_dataset(mlflow_url: str, data: pd.DataFrame | bytes, tmp: Path, name: str = "holdout.parquet") -> str:
    """Log ``data`` (a frame, written as parquet or CSV by ``name``'s suffix; or raw bytes) as an
    artifact of a new run under ``eval/``; its ``runs:/`` URI, as a policy's evaluation names it."""
    path = tmp / f"{uuid.uuid4().hex[:8]}" / name
    path.parent.mkdir(parents=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif name.endswith(".csv"):
        data.to_csv(path, index=False)
    else:
        data.to_parquet(path)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        with mlflow.start_run(experiment_id=_experiment(mlflow_url)) as run:
            mlflow.log_artifact(str(path), artifact_path="eval")
    return f"runs:/{run.info.run_id}/eval/{name}"
