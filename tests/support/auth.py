"""A real MLflow server running its basic-auth app, with the users the identity tests need."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from checkpoint.demo.mlflow_server import MlflowServer

ADMIN = ("admin", "admin-password-123")
PASSWORDS = {u: f"{u}-password-123" for u in ("alice", "bob", "dave", "carol")}


def as_user(user: str) -> tuple[str, str]:
    """The basic-auth credentials of one of the users above (anyone else: the admin's)."""
    return (user, PASSWORDS[user]) if user in PASSWORDS else ADMIN


def mlflow_mode(server: MlflowServer, database_url: str, data_dir: Path, **settings: Any) -> dict[str, Any]:
    """Settings for Checkpoint in ``mlflow`` identity mode in front of ``server``, reading and
    applying with the admin account; ``settings`` adds to them (a policy file, no background...)."""
    return {
        "registry_url": server.url,
        "database_url": database_url,
        "data_dir": data_dir,
        "registry_username": ADMIN[0],
        "registry_password": ADMIN[1],
        "auth": "mlflow",
        **settings,
    }


def start_auth_server(root) -> MlflowServer:
    """``mlflow server --app-name basic-auth`` with an admin password and its own user store."""
    root.mkdir(parents=True, exist_ok=True)
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
    )
    server = MlflowServer(
        root,
        workers=1,
        extra_args=["--app-name", "basic-auth"],
        env={"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key"},
        executable=os.environ.get("CHECKPOINT_TEST_MLFLOW") or None,  # the same MLflow as the session's server
    )
    server.start()
    try:
        for user, password in PASSWORDS.items():
            answer = requests.post(
                f"{server.url}/api/2.0/mlflow/users/create", auth=ADMIN, timeout=30, json={"username": user, "password": password}
            )
            assert answer.status_code == 200, answer.text
    except BaseException:
        server.stop()  # a half-set-up server must not outlive the test run
        raise
    return server


def grant(server_url: str, user: str, model: str, permission: str) -> None:
    """Give ``user`` a permission on a registered model (as the admin)."""
    answer = requests.post(
        f"{server_url}/api/3.0/mlflow/users/permissions/grant",
        auth=ADMIN,
        timeout=30,
        json={"username": user, "resource_type": "registered_model", "resource_id": model, "permission": permission},
    )
    if answer.status_code == 404 and "error_code" not in answer.text:  # MLflow 2.x: per-model grants, /api/2.0 only
        answer = requests.post(
            f"{server_url}/api/2.0/mlflow/registered-models/permissions/create",
            auth=ADMIN,
            timeout=30,
            json={"name": model, "username": user, "permission": permission},
        )
    assert answer.status_code == 200, answer.text


# The workflow's own tables, for "a refusal changes nothing" assertions.
TABLES = ("promote_requests", "reviews", "comments", "events")


def dump(database_url: str) -> dict:
    """Every row of the workflow's tables, by id: equal before and after a refused call."""
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        out = {t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))] for t in TABLES}
    engine.dispose()
    return out
