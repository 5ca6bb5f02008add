"""Models run in their own environments (``CHECKPOINT_EVALUATOR_ENV=uv``, runtime/envs.py)
against a real MLflow, with real uv and real packages from the index: the model sees a package
Checkpoint's own Python lacks, the environment is built once and reused (also by two workers at
once), it is read-only to the model (which could otherwise change it for every model sharing it),
and a hostile requirements line is refused before anything is installed.

uv's download cache is kept across test runs (under ``~/.cache``), as an operator's would be:
only the first run on a machine downloads the wheels."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from checkpoint.registry import Registry
from checkpoint.runtime import sandbox
from checkpoint.services import services
from tests.support.apps import background_task
from tests.support.behaviour import _experiment, ask_alias, behaviour_of, frame, log_hostile
from tests.support.governed import unique
from tests.support.race import race

TASK = "behaviour"
UV_CACHE = Path.home() / ".cache" / "checkpoint-tests" / "uv-cache"
ONLY_THERE = "humanize==4.9.0"  # a small wheel Checkpoint's own environment does not hold
REQUIREMENTS = [f"mlflow=={mlflow.__version__}", ONLY_THERE]


@pytest.fixture
def checkpoint_config() -> dict:
    return {"background": False, "evaluator_env": "uv", "evaluator_env_cache": UV_CACHE}


@pytest.fixture(autouse=True)
def _isolated_here() -> None:
    if not sandbox.detect().isolated:
        pytest.fail(f"these tests need namespaces (root or user namespaces): {sandbox.detect().note}")
    assert importlib.util.find_spec("humanize") is None, "the test needs a package only the model's environment holds"


WRITER = """
import json, os, sys
report = {"prefix": sys.prefix, "writes": {}}
for path in (os.path.join(sys.prefix, "pyvenv.cfg"), os.path.join(sys.prefix, "planted.py")):
    try:
        with open(path, "a") as out:
            out.write("planted")
        report["writes"][path] = "written"
    except OSError as exc:
        report["writes"][path] = type(exc).__name__
raise RuntimeError("REPORT " + json.dumps(report))
"""


def log_where_am_i(mlflow_url: str, name: str, tmp: Path, requirements: list[str]) -> str:
    """Register a new version of ``name``: a pyfunc whose every prediction is ``sys.prefix`` and
    the version of humanize it can import."""
    code = tmp / f"where_{uuid.uuid4().hex[:8]}.py"
    code.write_text(
        textwrap.dedent(
            """
            import importlib.metadata
            import sys

            import mlflow.pyfunc
            from mlflow.models import set_model


            class WhereAmI(mlflow.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    try:
                        version = importlib.metadata.version("humanize")
                    except importlib.metadata.PackageNotFoundError:
                        version = "absent"
                    return [f"{sys.prefix}|{version}"] * len(model_input)


            set_model(WhereAmI())
            """
        )
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        with mlflow.start_run(experiment_id=_experiment(mlflow_url)):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                registered_model_name=name,
                pip_requirements=requirements,
                input_example=frame(["a", "b"], rows=3),
            )
    return str(info.registered_model_version)


def _messages(caplog, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "checkpoint.evaluator" and word in r.getMessage()]


def _envs_built(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "uv-cache" and not p.name.startswith("."))


def test_a_model_runs_in_its_own_read_only_environment_built_once_then_reused(sqlite_checkpoint, mlflow_server, tmp_path, caplog):
    base, app = sqlite_checkpoint.url, sqlite_checkpoint.app
    caplog.set_level(logging.INFO, logger="checkpoint.evaluator")
    runner = services(app).behaviours.runner
    assert runner is not None and runner.envs is not None
    name = unique("ownenv")
    v1 = log_where_am_i(mlflow_server.url, name, tmp_path, REQUIREMENTS)
    v2 = log_where_am_i(mlflow_server.url, name, tmp_path, [*reversed(REQUIREMENTS)])  # the same set
    registry = Registry(mlflow_server.url)

    first = runner.run(registry, {"champion": None, "challenger": registry.version(name, v1)})
    predictions = first["challenger"]["examples"]["challenger"]["predictions"]
    prefix, version = predictions[0].split("|")
    assert version == "4.9.0" and prefix.endswith("/run-challenger/env")  # its own, bound into its run
    assert len(_messages(caplog, " built in ")) == 1 and len(_envs_built(runner.envs.root)) == 1

    # Both versions, through the diff Checkpoint runs for a request: the one environment, no build.
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", v1)
    request_id = ask_alias(base, name, v2)
    assert _messages(caplog, "each model runs with its own environment built by uv")  # said at start
    assert background_task(app, TASK)() == 1
    shown = behaviour_of(base, request_id)
    assert shown["state"] == "done" and shown["examples"]["breaking"] == [], shown
    assert len(_messages(caplog, " built in ")) == 1 and len(_messages(caplog, "reused")) == 2
    assert len(_envs_built(runner.envs.root)) == 1

    # A model with the same requirements (so the same environment) cannot change it for the others.
    writer = unique("envwriter")
    request_id = ask_alias(base, writer, log_hostile(mlflow_server.url, writer, WRITER, tmp_path, requirements=REQUIREMENTS))
    assert background_task(app, TASK)() == 1
    error = behaviour_of(base, request_id)["examples"]["models"]["challenger"]["error"]
    found = re.search(r"REPORT (\{.*\})", error)
    assert found, error
    report = json.loads(found.group(1))
    assert report["prefix"].endswith("/run-challenger/env")
    assert len(report["writes"]) == 2 and "written" not in report["writes"].values(), report
    (built,) = _envs_built(runner.envs.root)
    env = runner.envs.root / built
    assert "planted" not in (env / "pyvenv.cfg").read_text() and not (env / "planted.py").exists()
    assert len(_messages(caplog, " built in ")) == 1


def test_two_workers_building_one_environment_build_it_once(sqlite_checkpoint, mlflow_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="checkpoint.evaluator")
    envs = services(sqlite_checkpoint.app).behaviours.runner.envs
    model = tmp_path / "model"
    model.mkdir()
    # mlflow-skinny (the evaluator's own needs then add only pyarrow): a smaller build than the full MLflow.
    (model / "requirements.txt").write_text(f"mlflow-skinny=={mlflow.__version__}\nhumanize==4.8.0\n")
    copies = [shutil.copytree(model, tmp_path / f"copy{i}") for i in range(2)]

    first, second = race(*(lambda m=m: envs.ensure(m) for m in copies))
    assert first == second and len(_messages(caplog, " built in ")) == 1 and len(_messages(caplog, "reused")) == 1
    assert _envs_built(envs.root) == [first.name]
    python = first / "bin" / "python"
    done = subprocess.run(
        [str(python), "-I", "-c", "import importlib.metadata as m; print(m.version('humanize'), m.version('mlflow-skinny'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["4.8.0", mlflow.__version__]


def test_a_hostile_requirement_is_refused_before_anything_is_installed(sqlite_checkpoint, mlflow_server, tmp_path):
    base, app = sqlite_checkpoint.url, sqlite_checkpoint.app
    name = unique("badreq")
    hostile = [f"mlflow=={mlflow.__version__}", "evil @ https://127.0.0.1:9/evil-1.0-py3-none-any.whl"]
    version = log_hostile(mlflow_server.url, name, "pass", tmp_path, requirements=hostile)
    request_id = ask_alias(base, name, version)
    assert background_task(app, TASK)() == 1

    shown = behaviour_of(base, request_id)
    assert shown["state"] == "error"
    error = shown["examples"]["models"]["challenger"]["error"]
    assert error.startswith("environment build failed: requirement line 2 not allowed: 'evil @ https://"), error
    root = services(app).behaviours.runner.envs.root
    assert not root.exists()  # refused before any directory was made, uv run or wheel fetched
