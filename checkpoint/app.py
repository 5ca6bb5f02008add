"""The app factory: settings, database, proxy and views wired together, nothing at import time."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from flask import Flask, Response, current_app, g, request, session
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import sessionmaker

from checkpoint import identity
from checkpoint.edge.gateway import Gateway
from checkpoint.edge.proxy import Proxy
from checkpoint.errors import register_error_handlers, render_upstream_error
from checkpoint.events.audit import HEAD, Keyring
from checkpoint.events.webhooks import Sender
from checkpoint.registry import Registry
from checkpoint.review import visibility
from checkpoint.review.checks import CHECKS_INTERVAL
from checkpoint.review.reconcile import Reconciler
from checkpoint.review.workflow import Workflow
from checkpoint.runtime import logs, metrics
from checkpoint.runtime.background import Background
from checkpoint.settings import Settings
from checkpoint.storage import db
from checkpoint.storage.store import Store
from checkpoint.web.rendering import markdown


def frontend_dir() -> Path:
    """Templates and static files, in a checkout and in an installed package alike."""
    return Path(str(resources.files("checkpoint.web")))


def create_app(config: Mapping | Settings | None = None) -> Flask:
    """Build the WSGI application.

    ``config`` is a :class:`Settings`, or a mapping of setting overrides layered over
    the environment (tests pass ``{"registry_url": ..., "database_url": ...}``).
    """
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env(**dict(config or {}))
    settings = settings.with_secret().with_audit_key().with_policy()
    assert settings.policy is not None  # with_policy() read it
    logs.configure(settings.log_format, settings.log_level)
    if settings.audit_key_path is not None:
        logging.getLogger(__name__).warning(
            "no CHECKPOINT_AUDIT_KEY: the audit chain is keyed with %s, generated into the data directory; the "
            "chain is only as safe as that directory (anyone who can read it and write the database can rewrite "
            "the log). Set CHECKPOINT_AUDIT_KEY in production, the same on every replica",
            settings.audit_key_path,
        )

    frontend = frontend_dir()
    app = Flask(
        __name__,
        template_folder=str(frontend / "templates"),
        static_folder=str(frontend / "static"),
        static_url_path="/checkpoint/static",
    )
    https = bool(settings.public_url and settings.public_url.startswith("https://"))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        CHECKPOINT=settings,
        MAX_CONTENT_LENGTH=1024 * 1024,
        SESSION_COOKIE_NAME="checkpoint_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        PREFERRED_URL_SCHEME="https" if https else "http",
        WTF_CSRF_TIME_LIMIT=None,  # a form left open over lunch still submits; the token is per session
        WTF_CSRF_SSL_STRICT=False,  # Checkpoint's own origin check is the proxy's (see proxy.py)
    )

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
    auth = identity.from_settings(settings)
    app.extensions["checkpoint.auth"] = auth
    right = None
    if auth.mode == "mlflow":
        # MANAGE is asked in the request's MLflow workspace (grants there are per workspace).
        right = lambda user, model, workspace="": registry.in_workspace(workspace).can_manage(user.name, model)  # noqa: E731
    background = Background()
    app.extensions["checkpoint.background"] = background
    # Webhooks: each event's deliveries are queued in its transaction; the commit wakes the sender.
    webhooks = settings.policy.webhooks
    app.extensions["checkpoint.webhooks"] = webhooks
    keys = Keyring.of(settings.audit_key, *settings.audit_old_keys)
    store = Store(sessions, subscribers=webhooks.subscribers, on_commit=background.wake, keys=keys)
    store.seal_unkeyed()  # events from before the key get a keyed successor (audit.py)
    policy = settings.policy.rules
    workflow = Workflow(store, registry, settings.policy.protection, policy, review_right=right, checks_queued=background.wake,
                        public_url=settings.public_url, digest_max_bytes=settings.digest_max_bytes)  # fmt: skip
    app.extensions["checkpoint.workflow"] = workflow
    if policy.http_checks:  # evaluated off the request path; queuing one wakes the thread
        background.every(CHECKS_INTERVAL, "checks", workflow.run_pending_checks)
    if webhooks.subscribers(HEAD):  # a signed copy of the log's head, kept by the receivers
        every = settings.audit_head_interval
        background.every(every, "audit-head", lambda: store.publish_head(every))
    if webhooks:
        sender = Sender(store, webhooks, settings.public_url)
        app.extensions["checkpoint.sender"] = sender
        background.every(sender.interval, "webhooks", sender.run)
    # Applies a crash interrupted: settled once now, then a few times per lease.
    reconciler = Reconciler.for_settings(workflow.store, registry, settings)
    app.extensions["checkpoint.reconciler"] = reconciler
    reconciler.run_safely()
    background.every(reconciler.interval, "reconcile", reconciler.run)

    proxy = Proxy(
        settings.registry_url,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        pool_size=settings.upstream_pool_size,
        chunk_size=settings.chunk_size,
        public_url=settings.public_url,
        allowed_origins=settings.cors_allowed_origins,
        render_error=lambda environ, error: render_upstream_error(app, environ, error),
        on_upstream=metrics.observe_upstream,
    )
    app.extensions["checkpoint.proxy"] = proxy

    from checkpoint.web import api, audit, deliveries, ops, ui

    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(deliveries.pages)
    app.register_blueprint(deliveries.api)
    csrf = CSRFProtect(app)
    csrf.exempt(api.bp)  # the API checks CSRF itself, only for cookie-authenticated calls
    csrf.exempt(deliveries.api)
    app.extensions["checkpoint.csrf"] = csrf
    app.jinja_env.globals["markdown"] = markdown
    app.after_request(_security_headers)
    register_error_handlers(app)
    app.before_request(_resolve_user)
    app.wsgi_app = Gateway(  # type: ignore[method-assign]
        app.wsgi_app, proxy, workflow, settings.public_url, auth, settings.allowed_hosts
    )
    if settings.background:
        background.start()
    return app


_PUBLIC_ENDPOINTS = ("ops.healthz", "ops.readyz", "ops.metrics", "static")


def _resolve_user():
    """Every call to Checkpoint's own pages and API resolves its caller first (``g.user``)."""
    auth = current_app.extensions["checkpoint.auth"]
    try:
        g.user = auth.user(request.environ, session.get("user"))
        if not g.user.anonymous:
            request.environ[logs.USER_KEY] = g.user.name  # for the access line
    except identity.Unauthenticated as exc:
        if request.endpoint in _PUBLIC_ENDPOINTS:
            g.user = identity.User(identity.ANONYMOUS)
            g.reader = visibility.Reader(g.user, restricted=True)
            return None
        body = json.dumps({"error_code": "UNAUTHENTICATED", "message": f"Checkpoint: {exc.message}"})
        return Response(body, status=401, mimetype="application/json", headers=list(exc.headers))
    registry = current_app.extensions["checkpoint.workflow"].registry
    g.reader = visibility.reader_for(auth.mode, registry, g.user, request.environ)  # what the caller may see
    return None


# Checkpoint's own pages load nothing from elsewhere and run no inline script.
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; " \
       "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"


def _security_headers(response: Response) -> Response:
    """Headers for Checkpoint's own answers (proxied MLflow answers never pass through here)."""
    if request.path.startswith("/checkpoint"):
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
