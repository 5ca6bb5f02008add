"""The operator's paths: `checkpoint db ...`, and gunicorn started directly with their own flags."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from checkpoint.demo.mlflow_server import free_port, wait_http
from checkpoint.storage import db
from tests.support.databases import drop_database
from tests.support.waiting import poll

BIN = Path(sys.executable).parent
HEAD = db.head_revision(db.make_engine("sqlite://"))


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The caller's environment without any CHECKPOINT_* of its own, HOME and data in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINT_")}
    env.update(HOME=str(tmp_path / "home"), CHECKPOINT_DATA_DIR=str(tmp_path / "data"))
    env.update(values)
    return env


def checkpoint(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run([str(BIN / "checkpoint"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"checkpoint {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.strip()


@pytest.fixture(params=["sqlite-default", "postgresql"])
def database_env(request, tmp_path) -> Iterator[dict[str, str]]:
    """Settings for an empty database: the default SQLite file in the data dir, or a new PostgreSQL one."""
    if request.param == "sqlite-default":
        yield {}
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"cp_cli_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield {"CHECKPOINT_DATABASE_URL": admin.url.set(database=name).render_as_string(hide_password=False)}
    drop_database(admin, name)


def test_db_upgrade_then_current_prints_head(database_env, tmp_path):
    env = clean_env(tmp_path, CHECKPOINT_REGISTRY_URL="http://127.0.0.1:9", **database_env)
    url = sa.engine.make_url(database_env.get("CHECKPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'checkpoint.db'}"))
    shown = url.render_as_string(hide_password=True)

    assert checkpoint("db", "current", env=env, cwd=tmp_path) == f"current: none  head: {HEAD}"
    assert checkpoint("db", "upgrade", env=env, cwd=tmp_path) == f"database {shown} is at revision {HEAD}"
    assert checkpoint("db", "current", env=env, cwd=tmp_path) == f"current: {HEAD}  head: {HEAD}"
    # Every deploy runs it again: a no-op with the same answer.
    assert checkpoint("db", "upgrade", env=env, cwd=tmp_path) == f"database {shown} is at revision {HEAD}"
    if url.password:
        assert f":{url.password}@" not in shown
    if url.get_backend_name() == "sqlite":
        assert (tmp_path / "data" / "checkpoint.db").is_file()  # the default database lives in the data dir


def test_checkpoint_serve_migrated_its_database(served_checkpoint):
    """`checkpoint serve` (the Docker command) migrates before serving: its fresh data dir is at head."""
    engine = db.make_engine(f"sqlite:///{served_checkpoint.data_dir / 'checkpoint.db'}")
    try:
        assert db.current_revision(engine) == HEAD
    finally:
        engine.dispose()
    assert requests.get(f"{served_checkpoint.url}/checkpoint/healthz", timeout=10).json() == {"status": "ok"}


# --- gunicorn started directly: `checkpoint db upgrade`, then the platform's own flags ------------


def start_gunicorn(env: dict[str, str], cwd: Path, port: int, log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "checkpoint:create_app()",
                "-w",
                "2",
                "-k",
                "gthread",
                "--threads",
                "8",
                "-b",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "10",
            ],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> int:
    """SIGTERM to the gunicorn master we started (it stops its workers); its group is killed on a hang."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=10)


def test_gunicorn_started_directly_serves_and_proxies(mlflow_server, tmp_path):
    env = clean_env(tmp_path, CHECKPOINT_REGISTRY_URL=mlflow_server.url)
    checkpoint("db", "upgrade", env=env, cwd=tmp_path)
    port, log_path = free_port(), tmp_path / "gunicorn.log"
    process = start_gunicorn(env, tmp_path, port, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/checkpoint/healthz", timeout=60, process=process, log=log_path)
        assert requests.get(f"{url}/checkpoint/healthz", timeout=10).json() == {"status": "ok"}
        health = requests.get(f"{url}/health", timeout=10)  # not ours: MLflow's own, through the proxy
        assert (health.status_code, health.text) == (200, "OK")
        search = requests.get(f"{url}/api/2.0/mlflow/registered-models/search", timeout=30)
        assert search.status_code == 200
        assert isinstance(search.json(), dict)
        # The platform's flags were honoured: two gthread workers booted.
        booted = poll(lambda: log_path.read_text().count("Booting worker with pid") >= 2, timeout=30, step=0.1)
        assert booted, log_path.read_text()
        assert "Using worker: gthread" in log_path.read_text()
    finally:
        code = stop(process)
    assert code == 0, log_path.read_text()[-3000:]


def test_gunicorn_without_upgrade_refuses_to_start(tmp_path):
    env = clean_env(tmp_path, CHECKPOINT_REGISTRY_URL="http://127.0.0.1:9")
    port, log_path = free_port(), tmp_path / "gunicorn.log"
    process = start_gunicorn(env, tmp_path, port, log_path)
    try:
        code = process.wait(timeout=90)
    finally:
        stop(process)
    log = log_path.read_text()
    assert code != 0, log
    assert "run `checkpoint db upgrade` first" in log, log
    assert "is at schema nothing (empty)" in log, log
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/checkpoint/healthz", timeout=5)
