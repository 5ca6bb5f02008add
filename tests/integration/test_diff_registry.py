"""The diff against a real MLflow server: two real sklearn models, registered, loaded, compared."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from checkpoint.registry import Registry
from checkpoint.review.diff import compute_diff, load_diff, load_version_info

REQUIREMENTS_V1 = ["scikit-learn==1.4.2", "numpy>=1.24", "pandas"]
REQUIREMENTS_V2 = ["scikit-learn==1.5.0", "numpy>=1.24", "scipy>=1.11"]


@dataclass
class Logged:
    name: str
    v1: str
    v2: str
    run1: str
    run2: str


def _train(columns: list[str], c: float):
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(20, len(columns))), columns=columns)
    y = (X.iloc[:, 0] > 0).astype("int64").to_numpy()
    return X, y, LogisticRegression(C=c, max_iter=50).fit(X, y)


@pytest.fixture(scope="module")
def logged(mlflow_server) -> Logged:
    """Version 1 on features a, b, c; version 2 drops c, retrains with other params, logs a
    longer loss curve, a git commit and a training dataset."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        name = f"diff-{uuid.uuid4().hex[:8]}"
        # An explicit experiment id, not mlflow.set_experiment: no fluent global outlives the module.
        experiment = MlflowClient(tracking_uri=mlflow_server.url).create_experiment(name)
        runs = []
        for columns, c, losses, accuracy, reqs, commit in (
            (["a", "b", "c"], 1.0, [0.9, 0.6, 0.5], 0.80, REQUIREMENTS_V1, None),
            (["a", "b"], 0.5, [0.8, 0.5, 0.4, 0.3], 0.85, REQUIREMENTS_V2, "0123abcd" * 5),
        ):
            X, y, model = _train(columns, c)
            with mlflow.start_run(experiment_id=experiment) as run:
                mlflow.log_params({"C": c, "max_iter": 50, "features": ",".join(columns)})
                for step, loss in enumerate(losses):
                    mlflow.log_metric("train_loss", loss, step=step)
                mlflow.log_metric("accuracy", accuracy)
                if commit:
                    mlflow.set_tag("mlflow.source.git.commit", commit)
                    mlflow.log_input(mlflow.data.from_pandas(X, name="train-v2"), context="training")
                mlflow.sklearn.log_model(
                    model, name="model", signature=infer_signature(X, y), pip_requirements=reqs, registered_model_name=name
                )
            runs.append(run.info.run_id)
        return Logged(name, "1", "2", runs[0], runs[1])


@pytest.fixture
def registry(mlflow_server) -> Registry:
    return Registry(mlflow_server.url)


def test_two_real_models_diff_as_logged(logged, registry):
    champion = load_version_info(registry, logged.name, logged.v1)
    challenger = load_version_info(registry, logged.name, logged.v2)
    assert champion.problems == [] and challenger.problems == []
    assert challenger.source.startswith("models:/m-")  # an MLflow 3 logged model, read anyway
    assert challenger.metric_histories["train_loss"] == [(0, 0.8), (1, 0.5), (2, 0.4), (3, 0.3)]

    d = compute_diff(challenger, champion)

    assert d.breaking
    removed = [c for c in d.signature.changes if c.change == "removed"]
    assert [(c.section, c.key, c.breaking) for c in removed] == [("inputs", "c", True)]
    assert {(e.key, e.champion.full, e.challenger.full) for e in d.params.changed} == {
        ("C", "1.0", "0.5"),
        ("features", "a,b,c", "a,b"),
    }
    assert [e.key for e in d.params.unchanged] == ["max_iter"]
    metrics = {m.key: m for m in d.metrics.changes}
    assert (metrics["train_loss"].champion, metrics["train_loss"].challenger) == (0.5, 0.3)
    assert metrics["train_loss"].verdict == "better" and metrics["accuracy"].verdict == "better"
    assert len(metrics["train_loss"].champion_history) == 3 and len(metrics["train_loss"].challenger_history) == 4

    assert champion.requirements["scikit-learn"] == "==1.4.2"
    assert challenger.requirements["scipy"] == ">=1.11"
    assert [(e.key, e.challenger.full) for e in d.requirements.changed] == [("scikit-learn", "==1.5.0")]
    assert [e.key for e in d.requirements.added] == ["scipy"] and [e.key for e in d.requirements.removed] == ["pandas"]
    assert "sklearn" in d.flavors.common

    assert d.provenance.challenger.git_commit == "0123abcd" * 5 and d.provenance.champion.git_commit == ""
    assert "git_commit" in d.provenance.changed
    assert [ds.name for ds in d.provenance.datasets_added] == ["train-v2"]
    assert d.provenance.datasets_added[0].context == "training"
    assert d.provenance.challenger.run_id == logged.run2


def test_load_diff_fetches_histories_for_both_runs(logged, registry):
    d = load_diff(registry, registry.version(logged.name, logged.v2), registry.version(logged.name, logged.v1))
    loss = next(m for m in d.metrics.changes if m.key == "train_loss")
    assert loss.champion_history == ((0, 0.9), (1, 0.6), (2, 0.5))
    assert loss.challenger_history[-1] == (3, 0.3)
    assert d.signature.breaking and not d.first_promotion


def test_first_promotion_from_the_server(logged, registry):
    d = load_diff(registry, registry.version(logged.name, logged.v1), None)
    assert d.first_promotion and d.champion is None
    assert {e.key for e in d.params.added} == {"C", "max_iter", "features"}
    assert not d.signature.breaking and {c.key for c in d.signature.changes if c.section == "inputs"} == {"a", "b", "c"}


def test_history_calls_are_capped(logged, registry):
    info = load_version_info(registry, logged.name, logged.v2, max_histories=0)
    assert info.metric_histories == {} and info.metrics["train_loss"] == 0.3


def test_version_without_run_or_artifacts_still_loads(registry):
    name = f"diff-bare-{uuid.uuid4().hex[:8]}"
    registry.create_model(name)
    registry.create_version({"name": name, "source": "s3://nowhere/at/all"})
    info = load_version_info(registry, name, "1")
    assert info.run_id == "" and info.params == {} and info.requirements is None and not info.mlmodel_read
    assert any("no source run" in p for p in info.problems)
    assert any(p.startswith("MLmodel could not be read") for p in info.problems)
    assert any(p.startswith("requirements.txt could not be read") for p in info.problems)
    d = compute_diff(info, None)
    assert d.signature.challenger_state == "unknown" and d.requirements is None and d.challenger_problems


def test_runs_source_read_through_the_run_artifact_route(mlflow_server, registry, tmp_path, monkeypatch):
    """An MLflow 2 style ``runs:/<id>/model`` source: MLflow's version artifact route answers 500
    for it under served artifacts, so the adapter must read it from the run's artifacts."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (model_dir / "requirements.txt").write_text("pandas==2.2.0\n")
    name = f"diff-runs-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    with mlflow.start_run(experiment_id=client.create_experiment(name)) as run:
        mlflow.log_artifacts(str(model_dir), "model")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)

    info = load_version_info(registry, name, "1")
    assert info.problems == []
    assert info.requirements == {"pandas": "==2.2.0"} and info.flavors == ("python_function",)
    assert info.mlmodel_read and info.signature is None
