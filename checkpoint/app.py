"""The app factory: settings, database, proxy and views wired together, nothing at import time."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from flask import Flask
from sqlalchemy.orm import sessionmaker

from checkpoint import db, governance
from checkpoint.errors import register_error_handlers, render_upstream_error
from checkpoint.policy import Policy
from checkpoint.proxy import Proxy
from checkpoint.registry import Registry
from checkpoint.settings import Settings
from checkpoint.store import Store
from checkpoint.views.gateway import Gateway
from checkpoint.workflow import Workflow


def frontend_dir() -> Path:
    """Templates and static files, in a checkout and in an installed package alike."""
    return Path(str(resources.files("checkpoint.frontend")))


def create_app(config: Mapping | Settings | None = None) -> Flask:
    """Build the WSGI application.

    ``config`` is a :class:`Settings`, or a mapping of setting overrides layered over
    the environment (tests pass ``{"registry_url": ..., "database_url": ...}``).
    """
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env(**dict(config or {}))
    settings = settings.with_secret()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    frontend = frontend_dir()
    app = Flask(
        __name__,
        template_folder=str(frontend / "templates"),
        static_folder=str(frontend / "static"),
        static_url_path="/checkpoint/static",
    )
    app.config.update(SECRET_KEY=settings.secret_key, CHECKPOINT=settings, MAX_CONTENT_LENGTH=1024 * 1024)
    if settings.public_url:
        parts = settings.public_url.split("://", 1)
        app.config.update(PREFERRED_URL_SCHEME=parts[0])

    engine = db.make_engine(settings.database_url)
    db.check_current(engine)
    app.extensions["checkpoint.engine"] = engine
    sessions = sessionmaker(engine, expire_on_commit=False)
    app.extensions["checkpoint.sessions"] = sessions
    registry = Registry(
        settings.registry_url,
        username=settings.registry_username,
        password=settings.registry_password,
        token=settings.registry_token,
        timeout=min(settings.upstream_read_timeout, 60.0),
    )
    workflow = Workflow(Store(sessions), registry, governance.load(), Policy.from_env())
    app.extensions["checkpoint.workflow"] = workflow

    proxy = Proxy(
        settings.registry_url,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        pool_size=settings.upstream_pool_size,
        chunk_size=settings.chunk_size,
        public_url=settings.public_url,
        allowed_origins=settings.cors_allowed_origins,
        render_error=lambda environ, error: render_upstream_error(app, environ, error),
    )
    app.extensions["checkpoint.proxy"] = proxy

    from checkpoint.views import api, ops

    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    register_error_handlers(app)
    app.wsgi_app = Gateway(app.wsgi_app, proxy, workflow, settings.public_url)  # type: ignore[method-assign]
    return app
