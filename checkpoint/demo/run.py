"""`checkpoint demo`: a real MLflow server, seeded with example models, with Checkpoint in front.

The demo is the first thing a newcomer runs, so it uses nothing fake: a real ``mlflow server``
(SQLite store, served artifacts), real runs with metric histories, real scikit-learn models
with signatures, and ``checkpoint serve`` exactly as it is deployed. The example models are
built so that a review has something to find: a challenger that is better, one that silently
drops an input column, and one that is clearly worse.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checkpoint.demo.mlflow_server import MlflowServer, wait_http

if TYPE_CHECKING:  # MLflow and scikit-learn load only when seeding: `checkpoint --help` stays fast
    from mlflow import MlflowClient

# --------------------------------------------------------------------------------------------
# The example models
# --------------------------------------------------------------------------------------------

FRAUD_FEATURES = ("amount", "merchant_risk", "hour", "distance_km", "card_age_days", "n_tx_24h")

# Pickle-free skops files refuse tree models unless their node storage is trusted; these
# models are trained right here, so trusting exactly that one reviewed type is safe.
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]


@dataclass(frozen=True)
class VersionSpec:
    """One training run that becomes one registered model version."""

    run_name: str
    author: str
    kind: str  # "linear" | "forest" | "boosting"
    params: dict[str, Any]
    dataset: str
    description: str
    features: tuple[str, ...] | None = None  # None: every feature of the model's data set
    train_rows: int | None = None  # None: the whole training split
    stage: str | None = None
    aliases: tuple[str, ...] = ()
    validation: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered model, the experiment its runs live in, and its versions in order."""

    name: str
    experiment: str
    task: str  # "classification" | "regression"
    description: str
    tags: dict[str, str]
    versions: tuple[VersionSpec, ...] = field(default_factory=tuple)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="fraud-detector",
        experiment="fraud-detection",
        task="classification",
        description="Scores card transactions for fraud; the payment service blocks scores above 0.8.",
        tags={"team": "risk-ml", "owner": "maria.chen", "tier": "critical"},
        versions=(
            VersionSpec(
                "rf-depth8", "maria.chen", "forest", {"n_estimators": 100, "max_depth": 8},
                "transactions-2025-09", "Random forest, 100 trees of depth 8. Serving since September.",
                stage="Production", aliases=("champion",), validation="passed",
            ),
            VersionSpec(
                "gbm-200", "sam.okafor", "boosting", {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 3},
                "transactions-2025-10", "Gradient boosting, 200 shallow trees, retrained on October data.",
                stage="Staging", aliases=("challenger",), validation="passed",
            ),
            VersionSpec(
                "gbm-no-geo", "sam.okafor", "boosting", {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 3},
                "transactions-2025-10", "Same as gbm-200 without distance_km (privacy review asked to drop geo).",
                features=tuple(f for f in FRAUD_FEATURES if f != "distance_km"),
            ),
            VersionSpec(
                "gbm-quick-retrain", "lee.park", "boosting", {"n_estimators": 20, "learning_rate": 0.1, "max_depth": 1},
                "transactions-2025-10-w4", "Quick retrain on the last week of October only.",
                train_rows=400,
            ),
        ),
    ),
    ModelSpec(
        name="churn-model",
        experiment="customer-churn",
        task="classification",
        description="Probability that a subscriber cancels within 30 days; feeds the retention campaign.",
        tags={"team": "growth-analytics", "owner": "ana.silva", "tier": "standard"},
        versions=(
            VersionSpec(
                "churn-logreg", "ana.silva", "linear", {"alpha": 1e-4, "epochs": 6},
                "subscribers-2025-q2", "Logistic regression on account features.", stage="Archived",
            ),
            VersionSpec(
                "churn-rf", "ana.silva", "forest", {"n_estimators": 80, "max_depth": 6},
                "subscribers-2025-q3", "Random forest; adds support tickets and last login.",
                stage="Production", validation="passed",
            ),
            VersionSpec(
                "churn-gbm", "ana.silva", "boosting", {"n_estimators": 150, "learning_rate": 0.08, "max_depth": 3},
                "subscribers-2025-q3", "Gradient boosting candidate.", stage="Staging",
            ),
        ),
    ),
    ModelSpec(
        name="demand-forecast",
        experiment="demand-forecasting",
        task="regression",
        description="Daily units sold per store and product family; drives replenishment orders.",
        tags={"team": "supply-chain-ds", "owner": "raj.iyer", "tier": "standard"},
        versions=(
            VersionSpec(
                "demand-linear", "raj.iyer", "linear", {"alpha": 1e-4, "epochs": 6},
                "sales-2025-h1", "Linear model on calendar, price and promo features.",
            ),
            VersionSpec(
                "demand-gbm", "raj.iyer", "boosting", {"n_estimators": 150, "learning_rate": 0.1, "max_depth": 3},
                "sales-2025-h1", "Gradient boosting; captures the promo x weekend effect.",
                aliases=("champion",), validation="passed",
            ),
            VersionSpec(
                "demand-rf", "lee.park", "forest", {"n_estimators": 100, "max_depth": 10},
                "sales-2025-q3", "Random forest on fresher data.", aliases=("challenger",),
            ),
        ),
    ),
)

# MLflow's recommended environment separation: one registered model per environment, filled by
# copying a reviewed version across (``copy_model_version`` = the UI's "Promote model").
PROD_COPY = "prod.fraud-detector"
PROD_COPY_SOURCE = "models:/fraud-detector@champion"
DEMO_MODEL_NAMES = (*(m.name for m in MODELS), PROD_COPY)


# The demo's policy: promoting fraud-detector is gated on its validation AUC against the champion
# and on a signature the payment service can still call, so version 2 passes, version 3 (drops an
# input column) fails the signature check and version 4 (worse) fails the metric gate.
DEMO_POLICY = """\
# Written by `checkpoint demo` at every start (edits are overwritten). See README, "Checks".
rules:
  - name: fraud-detector to production
    models: ["fraud-detector"]
    targets: ["alias:champion", "stage:Production"]
    required_approvals: 1
    checks:
      - {name: auc-gate, kind: metric, expression: "val_auc >= champion - 0.005"}
      - {name: signature, kind: signature}
      - {name: validated, kind: tags, tags: {validation_status: passed}, required: false}
"""


def write_policy(directory: Path) -> Path:
    """The demo's policy file (``CHECKPOINT_POLICY_FILE`` of the Checkpoint it starts)."""
    path = directory / "policy.yaml"
    path.write_text(DEMO_POLICY)
    return path


class DemoError(RuntimeError):
    """The demo cannot start; the message says what to do about it."""


# --------------------------------------------------------------------------------------------
# Synthetic data and training (numpy + scikit-learn only, no downloads, fixed seeds)
# --------------------------------------------------------------------------------------------


def _data(model: str) -> tuple[Any, Any, Any, Any]:
    """A deterministic (train, validation) split of plausible tabular data for ``model``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(sum(map(ord, model)))  # stable across runs, unlike hash()
    n = 5000
    if model == "fraud-detector":
        x = pd.DataFrame({
            "amount": rng.lognormal(3.6, 1.1, n).round(2),
            "merchant_risk": rng.beta(2, 5, n).round(3),
            "hour": rng.integers(0, 24, n).astype(float),
            "distance_km": rng.exponential(25, n).round(1),
            "card_age_days": rng.integers(1, 3650, n).astype(float),
            "n_tx_24h": rng.poisson(3, n).astype(float),
        })  # fmt: skip
        night = ((x.hour < 5) | (x.hour > 22)).astype(float)
        score = (
            0.5 * np.log1p(x.amount) + 5.0 * x.merchant_risk + 2.2 * night + 3.2 * np.tanh(x.distance_km / 40)
            + 1.8 * (x.card_age_days < 120) + 0.3 * x.n_tx_24h + 2.0 * (x.merchant_risk > 0.45) * night
        )  # fmt: skip
        y = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * score - 15.5)))).astype(int)
    elif model == "churn-model":
        x = pd.DataFrame({
            "tenure_months": rng.integers(1, 72, n).astype(float),
            "monthly_charges": rng.normal(65, 25, n).clip(15, 150).round(2),
            "support_tickets": rng.poisson(1.2, n).astype(float),
            "contract_months": rng.choice([1.0, 12.0, 24.0], n, p=[0.5, 0.3, 0.2]),
            "last_login_days": rng.exponential(10, n).round(0),
        })  # fmt: skip
        score = (
            -0.05 * x.tenure_months + 0.02 * x.monthly_charges + 0.6 * x.support_tickets
            - 1.5 * (x.contract_months > 1) + 1.2 * np.tanh(x.last_login_days / 15)
            + 0.8 * (x.support_tickets > 2) * (x.contract_months == 1)
        )  # fmt: skip
        y = (rng.random(n) < 1 / (1 + np.exp(-(1.6 * score - 1.0)))).astype(int)
    else:
        x = pd.DataFrame({
            "day_of_week": rng.integers(0, 7, n).astype(float),
            "week_of_year": rng.integers(1, 53, n).astype(float),
            "price": rng.uniform(1.5, 9.5, n).round(2),
            "promo": (rng.random(n) < 0.2).astype(float),
            "store_size": rng.choice([800.0, 1500.0, 3000.0], n),
            "temp_c": rng.normal(14, 8, n).round(1),
        })  # fmt: skip
        weekend = (x.day_of_week >= 5).astype(float)
        y = (
            40 + 0.02 * x.store_size - 4.0 * x.price + 25 * x.promo + 15 * weekend + 20 * x.promo * weekend
            + 10 * np.sin(2 * np.pi * x.week_of_year / 52) + 0.6 * x.temp_c + rng.normal(0, 6, n)
        ).clip(0).round(0)  # fmt: skip
    cut = 4000
    return x.iloc[:cut], y[:cut], x.iloc[cut:], y[cut:]


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


def _train(task: str, spec: VersionSpec, x, y, xv, yv) -> tuple[Any, list[tuple[int, dict[str, float]]]]:
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


def _latency_ms(model, row) -> float:
    """Median wall time of a one-row prediction, the figure a serving SLO is written against."""
    import statistics

    samples = []
    for _ in range(10):
        start = time.perf_counter()
        model.predict(row)
        samples.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(samples), 3)


def _commit(model: str, run_name: str) -> str:
    """A stable, git-shaped commit id per training run (the demo has no training repository)."""
    return hashlib.sha1(f"{model}/{run_name}".encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_mlflow(tracking_uri: str) -> Iterator[None]:
    """Point the fluent API at ``tracking_uri`` and keep MLflow's chatter out of the demo's output.

    MLflow prints a "View run at <server>" line per run; those links would lead users around
    Checkpoint, straight to the upstream server. Everything is restored on the way out, so a
    test process that seeds keeps its own MLflow settings.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # what mlflow uses itself

    saved_env = os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
    logger = logging.getLogger("mlflow")
    saved_level = logger.level
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    logger.setLevel(logging.WARNING)
    try:
        with _use_tracking_uri(tracking_uri), warnings.catch_warnings():
            # Stages are deprecated in favour of aliases; the demo shows both on purpose.
            warnings.simplefilter("ignore", FutureWarning)
            # Raised inside MLflow about MLflow's own code or generic hints (integer columns may
            # lack NaN, pandas 4 deprecations, Any type hints): nothing a demo user can act on.
            for category in (UserWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=r"mlflow\.")
            yield
    finally:
        logger.setLevel(saved_level)
        if saved_env is None:
            os.environ.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)
        else:
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = saved_env


def _log_version(client: MlflowClient, model: ModelSpec, spec: VersionSpec, experiment_id: str, data) -> str:
    """Train, log the run and its model, register it; returns the new version number."""
    import mlflow
    import numpy as np
    import sklearn
    import skops
    from mlflow.entities import Metric, Param
    from mlflow.models import infer_signature

    x, y, xv, yv = data
    if spec.features:
        x, xv = x[list(spec.features)], xv[list(spec.features)]
    if spec.train_rows:
        x, y = x.iloc[-spec.train_rows :], y[-spec.train_rows :]

    tags = {
        "mlflow.user": spec.author,
        "mlflow.source.name": f"pipelines/{model.experiment}/train.py",
        "mlflow.source.type": "JOB",
        "mlflow.source.git.commit": _commit(model.name, spec.run_name),
        "mlflow.source.git.branch": "main",
        "team": model.tags["team"],
        "dataset": spec.dataset,
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=spec.run_name, tags=tags) as run:
        estimator, history = _train(model.task, spec, x, y, xv, yv)
        params = {
            "model_type": type(estimator[-1] if hasattr(estimator, "steps") else estimator).__name__,
            **spec.params,
            "n_features": x.shape[1],
            "train_rows": len(x),
        }
        metrics = [
            Metric(key, value, stamp, step)
            for step, (stamp, values) in enumerate(history, start=1)
            for key, value in values.items()
        ]
        latency = _latency_ms(estimator, xv.iloc[:1])
        metrics.append(Metric("latency_ms", latency, int(time.time() * 1000), len(history)))
        # One call for the whole history: each call is a round trip to the server.
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        training = x.assign(target=y)
        mlflow.log_input(mlflow.data.from_pandas(training, name=spec.dataset, targets="target"), context="training")
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(xv, estimator.predict(xv)),
            input_example=xv.head(3),
            # Explicit requirements: inferring them imports and probes the model (slow).
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"scikit-learn=={sklearn.__version__}",
                f"numpy=={np.__version__}",
                f"skops=={skops.__version__}",
            ],
            skops_trusted_types=SKOPS_TRUSTED,
        )
    version = client.create_model_version(
        model.name,
        source=info.model_uri,
        run_id=run.info.run_id,
        model_id=info.model_id,
        description=spec.description,
        tags={"validation_status": spec.validation} if spec.validation else None,
    )
    return version.version


def _seed_model(
    client: MlflowClient, model: ModelSpec, experiment_id: str, say: Callable[[str], None], stop: threading.Event
) -> None:
    """Log, register and place (stage, aliases) every version of one model, in version order."""
    say(f"training {model.name} ({len(model.versions)} versions)")
    data = _data(model.name)
    for spec in model.versions:
        if stop.is_set():
            return
        version = _log_version(client, model, spec, experiment_id, data)
        if spec.stage:
            client.transition_model_version_stage(model.name, version, spec.stage)
        for alias in spec.aliases:
            client.set_registered_model_alias(model.name, alias, version)
    say(f"{model.name} done")


def _in_threads(jobs: list[tuple[str, Callable[[], None]]], stop: threading.Event, say: Callable[[str], None]) -> None:
    """Run ``jobs`` side by side; the first failure or a Ctrl-C sets ``stop`` and is re-raised.

    One thread per model: a model's versions must be numbered in order, but one model can
    train while another waits on the server (MLflow keeps the active run per thread). The
    threads are daemons that check ``stop`` between versions, so Ctrl-C waits at most for the
    step in flight, and never for a thread talking to a server that is already stopped.
    """
    errors: list[BaseException] = []
    finished: list[threading.Event] = []

    def work(job: Callable[[], None], done: threading.Event) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
            errors.append(exc)
            stop.set()
        finally:
            done.set()

    for name, job in jobs:
        finished.append(threading.Event())
        threading.Thread(target=work, args=(job, finished[-1]), name=name, daemon=True).start()
    # Waiting on events rather than Thread.join(): a join interrupted by Ctrl-C marks the
    # thread as finished while it is still running (CPython 3.11), and the wait below would
    # then return at once.
    try:
        for done in finished:
            done.wait()
    except BaseException:
        stop.set()
        say("interrupted: finishing the steps in flight ...")
        for done in finished:
            done.wait(timeout=30)
        raise
    if errors:
        raise errors[0]


def _summary(client: MlflowClient, created: bool, seconds: float) -> dict[str, Any]:
    """What the registry holds for the demo models, read back from the server."""
    models: dict[str, Any] = {}
    for name in DEMO_MODEL_NAMES:
        aliases = dict(sorted(client.get_registered_model(name).aliases.items()))
        versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
        models[name] = {
            "aliases": aliases,
            "versions": {
                v.version: {
                    "stage": v.current_stage,
                    # search_model_versions leaves ModelVersion.aliases empty; the model's map is complete.
                    "aliases": sorted(alias for alias, number in aliases.items() if number == v.version),
                    "validation_status": v.tags.get("validation_status"),
                    "run_id": v.run_id,
                }
                for v in versions
            },
        }
    stages = {
        name: {v: info["stage"] for v, info in model["versions"].items() if info["stage"] != "None"}
        for name, model in models.items()
    }
    return {"created": created, "seconds": round(seconds, 1), "models": models, "stages": stages}


def seed(tracking_uri: str, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fill the MLflow server at ``tracking_uri`` with the example models, once.

    Re-running the demo on an existing data directory finds the models and changes nothing.
    A half-seeded registry (an interrupted first run) is refused rather than patched up, since
    the version numbers the demo talks about would no longer hold.
    """
    from mlflow import MlflowClient

    started = time.monotonic()
    say = progress or (lambda _message: None)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    with _quiet_mlflow(tracking_uri):
        present = {name for name in DEMO_MODEL_NAMES if client.search_registered_models(f"name = '{name}'")}
        if present == set(DEMO_MODEL_NAMES):
            return _summary(client, created=False, seconds=time.monotonic() - started)
        if present:
            raise DemoError(
                f"the registry at {tracking_uri} already holds {', '.join(sorted(present))} but not the "
                "rest of the demo models (an interrupted first run?); start over with `checkpoint demo --reset`"
            )
        experiments = {}
        for model in MODELS:  # in order, so experiment ids come out the same on every seed
            experiment = client.get_experiment_by_name(model.experiment)
            experiments[model.name] = experiment.experiment_id if experiment else client.create_experiment(
                model.experiment, tags={"team": model.tags["team"]}
            )  # fmt: skip
            client.create_registered_model(model.name, tags=model.tags, description=model.description)
        stop = threading.Event()
        _in_threads([
            (f"seed-{model.name}", lambda model=model: _seed_model(client, model, experiments[model.name], say, stop))
            for model in MODELS
        ], stop, say)  # fmt: skip

        say(f"copying the fraud-detector champion into {PROD_COPY}")
        client.create_registered_model(
            PROD_COPY,
            tags={"team": "risk-ml", "environment": "prod"},
            description="The production environment's fraud model. Versions arrive only by copying a reviewed "
            "fraud-detector version (MLflow's recommended one-model-per-environment layout).",
        )
        with contextlib.redirect_stderr(io.StringIO()):  # its "Copied version ..." notice
            copied = client.copy_model_version(PROD_COPY_SOURCE, PROD_COPY)
        client.set_registered_model_alias(PROD_COPY, "champion", copied.version)
        client.set_model_version_tag(PROD_COPY, copied.version, "validation_status", "passed")
        return _summary(client, created=True, seconds=time.monotonic() - started)


# --------------------------------------------------------------------------------------------
# Running the demo
# --------------------------------------------------------------------------------------------


# Knobs that tune the Checkpoint process carry over from the caller's environment; anything that
# points at a real deployment (its database, public URL, secret) does not.
_PASSTHROUGH = frozenset({"CHECKPOINT_WORKERS", "CHECKPOINT_THREADS", "CHECKPOINT_LOG_LEVEL", "CHECKPOINT_LOG_FORMAT",
                          "CHECKPOINT_ACCESS_LOG"})


class _Stop(Exception):
    """SIGTERM arrived: unwind like Ctrl-C does."""


def _demo_webhook(env: dict[str, str], checkpoint_dir: Path, url: str) -> dict[str, str]:
    """With ``CHECKPOINT_DEMO_WEBHOOK=<url>``, every event is also sent, signed with
    ``CHECKPOINT_WEBHOOK_SECRET`` (default ``demo-secret``), to that receiver (scripts/webhook_receiver.py):
    the demo's policy file, if any, plus one ``webhooks`` entry."""
    target = os.environ.get("CHECKPOINT_DEMO_WEBHOOK", "").strip()
    if not target:
        return env
    import yaml

    base = env.get("CHECKPOINT_POLICY_FILE")
    policy = (yaml.safe_load(Path(base).read_text()) or {}) if base and Path(base).is_file() else {}
    policy["webhooks"] = [{"name": "demo-receiver", "url": target, "events": ["*"], "secret_env": "CHECKPOINT_WEBHOOK_SECRET"}]
    path = checkpoint_dir / "policy-with-webhook.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    secret = os.environ.get("CHECKPOINT_WEBHOOK_SECRET") or "demo-secret"
    print(f"checkpoint demo: webhook deliveries go to {target} (see {url}/checkpoint/deliveries)", flush=True)
    return {**env, "CHECKPOINT_POLICY_FILE": str(path), "CHECKPOINT_WEBHOOK_SECRET": secret}


def _port_problem(port: int, option: str) -> str | None:
    """Why ``port`` cannot be used on 127.0.0.1, naming the option that changes it; None if free."""
    if not 0 < port < 65536:
        return f"{option} {port} is not a TCP port (1-65535)"
    with socket.socket() as sock:
        # As the servers do, so a port left in TIME_WAIT by a previous demo still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on 127.0.0.1 is already in use; pick another with {option} <port>"
            return f"cannot use port {port} on 127.0.0.1 ({exc.strerror}); pick another with {option} <port>"
    return None


def _released(port: int, timeout: float = 15.0) -> bool:
    """Wait until nothing accepts connections on 127.0.0.1:``port``.

    Stopping a server's process group returns when its leader exits; a worker that holds the
    listening socket may take a moment longer, and "stopped" should mean the port is free.
    """
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _tail(path: Path, size: int = 3000) -> str:
    """The end of a log file, for an error message."""
    if not path.exists():
        return "(no log written)"
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", "replace")


def _stop_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the process group we started (gunicorn and its workers) as Ctrl-C would, then SIGKILL.

    SIGINT is gunicorn's quick shutdown. Its graceful one (SIGTERM) waits for connections it
    still counts as open, up to the graceful timeout: measured with gunicorn 26's gthread, 60 s
    after one page view from a client process that was still running. Right for a deployment,
    wrong for a demo being closed.
    Once the leader has exited and been reaped its id may be reused, so a dead leader's group
    is left alone (gunicorn workers shut themselves down when their master goes).
    """
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"checkpoint demo: pid {process.pid} ignored Ctrl-C for {timeout:.0f} s; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def _python_for_banner() -> str:
    """The interpreter to suggest: it has MLflow installed, unlike whatever `python` is on PATH."""
    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable


def _banner(url: str, mlflow_url: str, data_dir: Path, summary: dict[str, Any], log: Path, mlflow_log: Path) -> str:
    """What the user reads once everything is up: where to go and what to try."""
    python = _python_for_banner()
    fraud = summary["models"]["fraud-detector"]
    champion = fraud["aliases"].get("champion", "?")
    challenger = fraud["aliases"].get("challenger", "?")
    # Read back rather than assumed: on a re-run, earlier approvals may have moved things.
    champion_stage = fraud["versions"].get(champion, {}).get("stage", "?")
    challenger_stage = fraud["versions"].get(challenger, {}).get("stage", "?")
    seeded = "seeded just now" if summary["created"] else "found from an earlier run"
    specs = next(m for m in MODELS if m.name == "fraud-detector").versions
    breaking = next(number for number, spec in enumerate(specs, start=1) if spec.features)
    worse = next(number for number, spec in enumerate(specs, start=1) if spec.train_rows)
    move = (
        "from mlflow import MlflowClient; "
        f"MlflowClient().set_registered_model_alias('fraud-detector', 'champion', '{challenger}')"
    )
    load = "import mlflow; print(mlflow.sklearn.load_model('models:/fraud-detector@champion'))"
    rule = "=" * 78
    return f"""
{rule}
  Checkpoint demo is running. Open:

      {url}/

  That is MLflow's own UI with Checkpoint in front. Promote requests: {url}/checkpoint/requests
  MLflow itself (behind Checkpoint): {mlflow_url} (changes made there directly skip review).

  Example models ({seeded}): {", ".join(DEMO_MODEL_NAMES)}

  Things to try:
   1. Open the fraud-detector model: {url}/#/models/fraud-detector
      Version {champion} is the champion ({champion_stage}); version {challenger} is the challenger ({challenger_stage}).
      Move the `champion` alias to version {challenger}: Checkpoint opens a promote request for
      review instead of changing production. (Version {breaking} drops an input column, version {worse} is
      clearly worse on val_auc: try promoting those too. The request page's Checks show the
      policy's metric gate and signature check passing for {challenger} and failing for those.)
   2. Do the same from code, through Checkpoint:
      MLFLOW_TRACKING_URI={url} {python} -c \\
        "{move}"
   3. Reads pass straight through:
      MLFLOW_TRACKING_URI={url} {python} -c \\
        "{load}"

  Data: {data_dir} (kept between runs; --reset starts over).
  Audit key: generated into {data_dir / "checkpoint" / "audit_key"}; the audit chain is only as
  safe as that directory (production sets CHECKPOINT_AUDIT_KEY; see docs/deploy.md).
  Logs: {log} and {mlflow_log}
  Press Ctrl-C to stop both servers.
{rule}
"""


def _supervise(children: dict[str, tuple[subprocess.Popen, Path]]) -> str:
    """Block until a child exits on its own, and say which, with the end of its log.

    Ctrl-C and SIGTERM end the wait too, as exceptions, for the caller's cleanup.
    """
    while True:
        for name, (process, log) in children.items():
            if process.poll() is not None:
                return f"checkpoint demo: {name} exited unexpectedly (code {process.returncode}). End of {log}:\n{_tail(log)}"
        time.sleep(0.5)


def run(port: int, mlflow_port: int, data_dir: str | os.PathLike, reset: bool = False) -> int:
    """Start MLflow, seed it, put Checkpoint in front, and keep both up until Ctrl-C or SIGTERM."""
    for problem in (
        _port_problem(port, "--port"),
        _port_problem(mlflow_port, "--mlflow-port"),
        "--port and --mlflow-port must differ" if port == mlflow_port else None,
    ):
        if problem:
            print(f"checkpoint demo: {problem}", file=sys.stderr, flush=True)
            return 2

    root = Path(data_dir).expanduser().resolve()
    mlflow_root, checkpoint_dir, checkpoint_log = root / "mlflow", root / "checkpoint", root / "checkpoint.log"
    if reset:
        # Only the demo's own files: the data directory may be shared with other things.
        for path in (mlflow_root, checkpoint_dir):
            shutil.rmtree(path, ignore_errors=True)
        checkpoint_log.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    # MLflow phones home by default; the demo only ever talks to loopback. A user's choice wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    if in_main_thread:
        # Explicitly, because a shell starting us in the background (`demo &`) hands us SIGINT
        # already ignored, and Python then never turns it into KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_stop)

    server = MlflowServer(mlflow_root, port=mlflow_port, workers=1)
    checkpoint: subprocess.Popen | None = None
    url = f"http://127.0.0.1:{port}"
    code = 1
    failure = ""  # printed last, after the shutdown lines, so it is what the user reads
    listening: list[tuple[str, int]] = []  # (option, port) of the servers that came up
    try:
        print(f"checkpoint demo: starting MLflow on {server.url} (data in {mlflow_root}) ...", flush=True)
        server.start()
        listening.append(("--mlflow-port", mlflow_port))
        print("checkpoint demo: seeding example models ...", flush=True)
        summary = seed(server.url, progress=lambda message: print(f"checkpoint demo:   {message}", flush=True))
        note = "seeded" if summary["created"] else "already seeded, left as they were"
        print(f"checkpoint demo: example models {note} ({summary['seconds']} s)", flush=True)

        print(f"checkpoint demo: starting Checkpoint on {url} ...", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINT_") or k in _PASSTHROUGH}
        env.update({
            "CHECKPOINT_REGISTRY_URL": server.url,
            "CHECKPOINT_DATA_DIR": str(checkpoint_dir),
            "CHECKPOINT_DATABASE_URL": f"sqlite:///{checkpoint_dir / 'checkpoint.db'}",
        })  # fmt: skip
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        env["CHECKPOINT_POLICY_FILE"] = str(write_policy(checkpoint_dir))
        env = _demo_webhook(env, checkpoint_dir, url)
        with checkpoint_log.open("ab") as log:
            checkpoint = subprocess.Popen(
                [sys.executable, "-m", "checkpoint.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{url}/checkpoint/healthz", timeout=60, process=checkpoint, log=checkpoint_log)
        listening.append(("--port", port))
        print(_banner(url, server.url, root, summary, checkpoint_log, server.log_path), flush=True)
        failure = _supervise({
            "checkpoint serve": (checkpoint, checkpoint_log),
            "mlflow server": (server.process, server.log_path),
        })  # fmt: skip
    except (KeyboardInterrupt, _Stop):
        code = 0
    except (DemoError, RuntimeError, TimeoutError) as exc:
        # RuntimeError/TimeoutError: a server did not come up; the message carries its log's tail.
        failure = f"checkpoint demo: {exc}"
    finally:
        # A second Ctrl-C while stopping must not leave a server running without its parent.
        if in_main_thread:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\ncheckpoint demo: stopping ...", flush=True)
        if checkpoint is not None:
            _stop_group(checkpoint)
        server.stop()
        lingering = [f"{option} {number}" for option, number in listening if not _released(number)]
        if lingering:
            print(f"checkpoint demo: still listening after stop: {', '.join(lingering)}", file=sys.stderr, flush=True)
        print("checkpoint demo: stopped", flush=True)
        if in_main_thread:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if failure:
        print(failure, file=sys.stderr, flush=True)
    return code


def _raise_stop(_signum: int, _frame: object) -> None:
    """SIGTERM handler: leave the wait loop through the same cleanup as Ctrl-C."""
    raise _Stop()

