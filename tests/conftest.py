"""Shared fixtures: a real MLflow server per session, databases on SQLite and PostgreSQL,
and Checkpoint served for real (in a thread, or as `checkpoint serve` runs it)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from checkpoint import create_app
from checkpoint.demo.mlflow_server import MlflowServer
from checkpoint.review.behaviour.runner import CHILD
from checkpoint.runtime import sandbox
from checkpoint.storage import db
from tests.support.apps import LiveCheckpoint, live
from tests.support.auth import start_auth_server
from tests.support.compat import mlflow_major, mlflow_version
from tests.support.databases import migrated_database, migrated_sqlite
from tests.support.proxy import CheckpointProcess, FakeUpstream, checkpoint_process
from tests.support.serving import close_app
from tests.support.smtp import Sink

# The MLflow client in these tests talks to loopback servers only.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
POSTGRES_ENV = "CHECKPOINT_TEST_POSTGRES_URL"
# Another installation's `mlflow` script to run the session's server from (scripts/test points it
# at the MLflow 2.22 venv for the compatibility run); the client side stays the pinned one.
MLFLOW_ENV = "CHECKPOINT_TEST_MLFLOW"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[MlflowServer]:
    """One real `mlflow server` (SQLite store, served artifacts) for the whole session."""
    executable = os.environ.get(MLFLOW_ENV) or None
    if executable and not os.access(executable, os.X_OK):
        pytest.fail(f"{MLFLOW_ENV}={executable} is not an executable `mlflow` script")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), workers=2, executable=executable).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_workspaces_server(tmp_path_factory) -> Iterator[MlflowServer]:
    """One real `mlflow server --enable-workspaces` (MLflow >= 3.10; SQLite store, served
    artifacts) for the session: the same model name can live in several workspaces."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-workspaces"), workers=2, enable_workspaces=True).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _mlflow3_only(request) -> None:
    """Tests marked ``mlflow3`` use what MLflow 2.x servers lack: skipped (with the reason) only
    when the session's server is 2.x, and run against every 3.x server."""
    marker = request.node.get_closest_marker("mlflow3")
    if marker is None:
        return
    server = request.getfixturevalue("mlflow_server")
    if mlflow_major(server) < 3:
        pytest.skip(f"needs an MLflow 3 server (this one is {mlflow_version(server)}): {marker.kwargs.get('reason', '')}")


@pytest.fixture(scope="module")
def auth_mlflow(tmp_path_factory) -> Iterator[MlflowServer]:
    """A real MLflow with its basic-auth app and the identity tests' users, one per test module
    that asks for it (tests/support/auth.py)."""
    server = start_auth_server(tmp_path_factory.mktemp("mlflow-auth"))
    yield server
    server.stop()


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: run the suite with `bash scripts/test`, which starts PostgreSQL "
            "and sets it (a run without PostgreSQL fails; it never skips)"
        )
    return url


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """An engine on the maintenance database, used to create one database per test."""
    engine = sa.create_engine(_postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {engine.url.render_as_string(hide_password=True)} is not reachable: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, migrated database on SQLite and on PostgreSQL."""
    yield from migrated_database(request.param, request, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A migrated SQLite database, for tests that need no PostgreSQL twin."""
    return migrated_sqlite(tmp_path)


@pytest.fixture
def engine_for() -> Iterator:
    """Make engines with :func:`db.make_engine` and dispose of them all at the end."""
    engines: list[sa.Engine] = []

    def make(url: str) -> sa.Engine:
        engines.append(db.make_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def checkpoint_config() -> dict:
    """Settings (by field name) that app, live_checkpoint and sqlite_checkpoint add to their own: a
    fixture requesting it may add keys, when a test lists it before the app's fixture."""
    return {}


def _settings_for(mlflow_server: MlflowServer, database_url: str, data_dir, checkpoint_config: dict) -> dict:
    """The settings app, live_checkpoint and sqlite_checkpoint build their Checkpoint with."""
    return {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": data_dir, **checkpoint_config}


@pytest.fixture
def checkpoint_clock():
    """The clock app, live_checkpoint and sqlite_checkpoint read time from: None, the system's. A
    module that moves time overrides this fixture with a ``tests.support.clock.MovableClock``."""
    return None


@pytest.fixture
def app(mlflow_server, sqlite_url, tmp_path, checkpoint_config, checkpoint_clock):
    """The Flask app in front of the session's MLflow, on a migrated SQLite database."""
    application = create_app(_settings_for(mlflow_server, sqlite_url, tmp_path, checkpoint_config), clock=checkpoint_clock)
    yield application
    close_app(application)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_checkpoint(mlflow_server, database_url, tmp_path, checkpoint_config, checkpoint_clock) -> Iterator[LiveCheckpoint]:
    """Checkpoint served in this process (so tests can look inside), on SQLite and PostgreSQL."""
    application = create_app(_settings_for(mlflow_server, database_url, tmp_path, checkpoint_config), clock=checkpoint_clock)
    with live(application, database_url) as served:
        yield served


@pytest.fixture(scope="session")
def served_checkpoint(mlflow_server, tmp_path_factory) -> Iterator[CheckpointProcess]:
    """One real gunicorn-served Checkpoint (`checkpoint serve`, as the Dockerfile starts it)
    in front of the session's MLflow."""
    with checkpoint_process(mlflow_server.url, tmp_path_factory.mktemp("checkpoint-served")) as served:
        yield served


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    """A scriptable fake MLflow on loopback, for failures a real server cannot produce on demand."""
    fake = FakeUpstream()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def module_db(tmp_path_factory) -> str:
    """A migrated SQLite database shared by one test module."""
    return migrated_sqlite(tmp_path_factory.mktemp("module-db"))


@pytest.fixture
def sqlite_checkpoint(mlflow_server, sqlite_url, tmp_path, checkpoint_config, checkpoint_clock) -> Iterator[LiveCheckpoint]:
    """Checkpoint served in this process on SQLite only, for tests the database does not affect."""
    application = create_app(_settings_for(mlflow_server, sqlite_url, tmp_path, checkpoint_config), clock=checkpoint_clock)
    with live(application, sqlite_url) as served:
        yield served


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real SMTP server (aiosmtpd) on loopback, keeping what it receives."""
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def model_runs(monkeypatch) -> list[list[str]]:
    """Every isolated model run (not the scorer's), as started: the real ``sandbox.run``, counted."""
    started: list[list[str]] = []
    real = sandbox.run

    def counting(argv, *args, **kwargs):
        if str(CHILD) in argv:
            started.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(sandbox, "run", counting)
    return started
