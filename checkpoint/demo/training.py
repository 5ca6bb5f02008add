"""Training the example models for real (numpy + scikit-learn only, no downloads, fixed seeds),
with a metric history per run so the charts show a learning curve."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from checkpoint.demo.data import VersionSpec


def _scores(task: str, y_true, predict) -> dict[str, float]:
    """Validation metrics for one point of a training history."""
    import numpy as np
    from sklearn import metrics

    if task == "classification":
        proba = np.clip(predict(), 1e-6, 1 - 1e-6)
        return {
            "val_auc": float(metrics.roc_auc_score(y_true, proba)),
            "val_loss": float(metrics.log_loss(y_true, proba)),
            "precision": float(metrics.precision_score(y_true, proba >= 0.5, zero_division=0)),
        }
    predicted = predict()
    return {
        "val_rmse": float(np.sqrt(metrics.mean_squared_error(y_true, predicted))),
        "val_mae": float(metrics.mean_absolute_error(y_true, predicted)),
        "val_r2": float(metrics.r2_score(y_true, predicted)),
    }


def train(task: str, spec: VersionSpec, x, y, xv, yv) -> tuple[Any, list[tuple[int, dict[str, float]]]]:
    """Fit the estimator for real, scoring on validation data as it grows.

    Returns the model and its metric history: (time in ms, metrics) per step, so the run's
    charts show a real learning curve rather than a single point.
    """
    from sklearn import ensemble, linear_model
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    classify = task == "classification"
    history: list[tuple[int, dict[str, float]]] = []
    p = spec.params
    if spec.kind == "linear":
        scaler = StandardScaler().fit(x)
        xs, xvs = scaler.transform(x), scaler.transform(xv)
        if classify:
            est = linear_model.SGDClassifier(loss="log_loss", alpha=p["alpha"], random_state=0)
        else:
            est = linear_model.SGDRegressor(alpha=p["alpha"], random_state=0)
        for _ in range(p["epochs"]):
            est.partial_fit(xs, y, **({"classes": [0, 1]} if classify else {}))
            history.append(_point(task, yv, (lambda: est.predict_proba(xvs)[:, 1]) if classify else (lambda: est.predict(xvs))))
        # Steps fitted above are already fitted; the pipeline only chains them for serving.
        return Pipeline([("scale", scaler), ("model", est)]), history
    if spec.kind == "forest":
        cls = ensemble.RandomForestClassifier if classify else ensemble.RandomForestRegressor
        est = cls(n_estimators=0, max_depth=p["max_depth"], warm_start=True, random_state=0, n_jobs=1)
        grow = max(1, p["n_estimators"] // 4)  # four points on the learning curve
        for trees in range(grow, p["n_estimators"] + 1, grow):
            est.set_params(n_estimators=trees).fit(x, y)
            history.append(_point(task, yv, (lambda: est.predict_proba(xv)[:, 1]) if classify else (lambda: est.predict(xv))))
        # warm_start only served the learning curve; the logged model should read as a plain forest.
        return est.set_params(warm_start=False), history
    cls = ensemble.GradientBoostingClassifier if classify else ensemble.GradientBoostingRegressor
    est = cls(random_state=0, **p).fit(x, y)
    every = max(1, p["n_estimators"] // 8)
    staged = est.staged_predict_proba(xv) if classify else est.staged_predict(xv)
    for stage, predicted in enumerate(staged, start=1):
        if stage % every == 0 or stage == p["n_estimators"]:
            history.append(_point(task, yv, (lambda pr=predicted: pr[:, 1]) if classify else (lambda pr=predicted: pr)))
    return est, history


def _point(task: str, y_true, predict) -> tuple[int, dict[str, float]]:
    """One step of a metric history, stamped with when it was measured."""
    return int(time.time() * 1000), _scores(task, y_true, predict)


def latency_ms(model, row) -> float:
    """Median wall time of a one-row prediction, the figure a serving SLO is written against."""
    import statistics

    samples = []
    for _ in range(10):
        start = time.perf_counter()
        model.predict(row)
        samples.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(samples), 3)


def commit_id(model: str, run_name: str) -> str:
    """A stable, git-shaped commit id per training run (the demo has no training repository)."""
    return hashlib.sha1(f"{model}/{run_name}".encode()).hexdigest()
