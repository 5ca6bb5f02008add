"""Seeding a real MLflow server with the example models: runs, registered versions, stages,
aliases, and a copy into the production model. Once: a re-run finds them and changes nothing."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from checkpoint.demo.data import (
    DEMO_MODEL_NAMES,
    HOLDOUT_PATH,
    MODELS,
    PROD_COPY,
    PROD_COPY_SOURCE,
    DemoError,
    ModelSpec,
    VersionSpec,
    holdout_frame,
    synthetic_data,
)
from checkpoint.demo.training import commit_id, latency_ms, train

if TYPE_CHECKING:  # MLflow and scikit-learn load only when seeding: `checkpoint --help` stays fast
    from mlflow import MlflowClient

# Pickle-free skops files refuse tree models unless their node storage is trusted; these
# models are trained right here, so trusting exactly that one reviewed type is safe.
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]


@contextlib.contextmanager
def quiet_mlflow(tracking_uri: str) -> Iterator[None]:
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


def log_version(client: MlflowClient, model: ModelSpec, spec: VersionSpec, experiment_id: str, data) -> str:
    """Train, log the run and its model, register it; returns the new version number."""
    import mlflow
    import numpy as np
    import sklearn
    import skops
    from mlflow.data.pandas_dataset import from_pandas  # mlflow.data registers it at run time
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
        "mlflow.source.git.commit": commit_id(model.name, spec.run_name),
        "mlflow.source.git.branch": "main",
        "team": model.tags["team"],
        "dataset": spec.dataset,
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=spec.run_name, tags=tags) as run:
        estimator, history = train(model.task, spec, x, y, xv, yv)
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
        latency = latency_ms(estimator, xv.iloc[:1])
        metrics.append(Metric("latency_ms", latency, int(time.time() * 1000), len(history)))
        # One call for the whole history: each call is a round trip to the server.
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        training = x.assign(target=y)
        mlflow.log_input(from_pandas(training, name=spec.dataset, targets="target"), context="training")
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
    data = synthetic_data(model.name)
    for spec in model.versions:
        if stop.is_set():
            return
        version = log_version(client, model, spec, experiment_id, data)
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


def upload_holdout(tracking_uri: str) -> None:
    """Put fraud-detector's holdout where the demo's policy names it (``HOLDOUT_URI``), through
    MLflow's artifact proxy; the same bytes every time."""
    import urllib.request

    buffer = io.BytesIO()
    holdout_frame().to_parquet(buffer, index=False)
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{HOLDOUT_PATH}"
    put = urllib.request.Request(url, data=buffer.getvalue(), method="PUT")
    with urllib.request.urlopen(put, timeout=60) as answer:
        answer.read()


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
    upload_holdout(tracking_uri)
    with quiet_mlflow(tracking_uri):
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
            experiments[model.name] = (
                experiment.experiment_id
                if experiment
                else client.create_experiment(model.experiment, tags={"team": model.tags["team"]})
            )
            client.create_registered_model(model.name, tags=model.tags, description=model.description)
        stop = threading.Event()
        _in_threads(
            [(f"seed-{model.name}", partial(_seed_model, client, model, experiments[model.name], say, stop)) for model in MODELS],
            stop,
            say,
        )

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
