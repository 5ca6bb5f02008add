"""`checkpoint serve`: gunicorn configured for a streaming proxy, migrations run first.

Measured choice (see README, Performance): the ``gthread`` worker. Each in-flight call
holds one thread while it streams, idle keep-alive connections wait in the worker's
poller without holding one, and no monkey-patching is needed for urllib3 or SQLAlchemy.
"""

from __future__ import annotations

import multiprocessing
import os

from gunicorn.app.base import BaseApplication

from checkpoint import db, governance, identity
from checkpoint.policy import Policy
from checkpoint.settings import Settings


def default_options(host: str, port: int, workers: int | None = None, threads: int | None = None) -> dict:
    """The gunicorn settings `checkpoint serve` uses; the Dockerfile runs exactly these."""
    return {
        "bind": f"{host}:{port}",
        "worker_class": "gthread",
        "workers": workers or int(os.environ.get("CHECKPOINT_WORKERS", min(4, multiprocessing.cpu_count()))),
        "threads": threads or int(os.environ.get("CHECKPOINT_THREADS", "32")),
        # Long enough for a client's keep-alive pool to be worth keeping.
        "keepalive": 30,
        # gthread's heartbeat comes from the main loop, so a long stream does not trip it.
        "timeout": 120,
        # Streams in flight get this long to finish on SIGTERM.
        "graceful_timeout": 60,
        "accesslog": os.environ.get("CHECKPOINT_ACCESS_LOG") or None,
        "errorlog": "-",
        "loglevel": os.environ.get("CHECKPOINT_LOG_LEVEL", "info").lower(),
        "proc_name": "checkpoint",
        "forwarded_allow_ips": os.environ.get("CHECKPOINT_FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
    }


class CheckpointServer(BaseApplication):
    """gunicorn driven from code, so its settings live next to the rest of ours."""

    def __init__(self, settings: Settings, options: dict) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self):
        from checkpoint import create_app

        return create_app(self.settings)


def serve(settings: Settings, host: str, port: int, workers: int | None = None, threads: int | None = None) -> None:
    """Migrate once in the master, then fork the workers."""
    settings = settings.with_secret()
    governance.load()  # fail in the master, with the key named, not in every worker
    Policy.from_env()
    identity.check_bind(identity.from_env(settings.registry_url), host)
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    engine.dispose()
    CheckpointServer(settings, default_options(host, port, workers, threads)).run()
