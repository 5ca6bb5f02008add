"""The app factory: configuration, blueprints and middleware over the process's services
(``services.py``), nothing at import time.

Building an app opens its database (and refuses one whose schema is not current) and contacts
nothing else, so tests and tools build one freely. The start-up work (settling interrupted
applies against MLflow, then the background thread) runs when the app is first served: the
gateway's first call runs :meth:`Services.start`. That is the one hook every WSGI server
calls (``gunicorn 'checkpoint:create_app()'``, werkzeug, a load balancer's first probe), and
it runs after gunicorn forks its workers, so no master starts a thread only to fork.
Under ``checkpoint serve`` (and any gunicorn run with its worker class, as
``deploy/gunicorn.conf.py`` does) each worker starts them at boot instead, before serving
(``edge/serving.py``, ``start_at_boot``), as every worker did before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from flask import Flask, Response, g, request, session

from checkpoint import identity
from checkpoint.clock import Clock
from checkpoint.edge.gateway import Gateway
from checkpoint.review import visibility
from checkpoint.runtime import logs
from checkpoint.services import Services
from checkpoint.settings import Settings
from checkpoint.web import notifications
from checkpoint.web.context import csrf, current_services
from checkpoint.web.errors import register_error_handlers, render_upstream_error
from checkpoint.web.rendering import markdown


def frontend_dir() -> Path:
    """Templates and static files, in a checkout and in an installed package alike."""
    return Path(str(resources.files("checkpoint.web")))


def create_app(config: Mapping | Settings | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the WSGI application.

    ``config`` is a :class:`Settings`, or a mapping of setting overrides layered over
    the environment (tests pass ``{"registry_url": ..., "database_url": ...}``). ``clock``:
    the time every part reads (``checkpoint.clock``); the system clock unless a test moves one.
    """
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env(**dict(config or {}))
    settings = settings.with_secret().with_audit_key().with_policy()
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

    services = Services.build(settings, lambda environ, error: render_upstream_error(app, environ, error), clock)
    services.attach(app)

    from checkpoint.web import (
        api,
        audit,
        compare,
        deliveries,
        inbox,
        notifications,
        ops,
        plan,
        rollback,
        scopes,
        statuses,
        timeline,
        tokens,
        ui,
    )
    from checkpoint.web.request_form import pages as request_form_pages  # the new-request form

    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(statuses.api)
    app.register_blueprint(plan.api)
    app.register_blueprint(audit.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(request_form_pages)
    app.register_blueprint(deliveries.pages)
    app.register_blueprint(notifications.pages)
    app.register_blueprint(notifications.api)
    app.register_blueprint(deliveries.api)
    app.register_blueprint(timeline.api)
    app.register_blueprint(timeline.pages)
    app.register_blueprint(rollback.pages)
    app.register_blueprint(tokens.api)
    app.register_blueprint(tokens.pages)
    app.register_blueprint(inbox.pages)
    app.register_blueprint(compare.api)
    app.register_blueprint(compare.pages)
    csrf.init_app(app)
    csrf.exempt(api.bp)  # the API checks CSRF itself, only for cookie-authenticated calls
    csrf.exempt(deliveries.api)
    csrf.exempt(tokens.api)
    csrf.exempt(statuses.api)
    csrf.exempt(plan.api)
    csrf.exempt(notifications.api)
    app.jinja_env.globals["markdown"] = markdown
    app.after_request(_security_headers)
    register_error_handlers(app)
    app.before_request(_resolve_user)
    app.before_request(scopes.check_token_route)  # a token reaches only the views its scopes open
    # The first call this process serves runs its start-up work (Services.start): see the module's top.
    app.wsgi_app = Gateway(  # type: ignore[method-assign]
        app.wsgi_app,
        services.proxy,
        services.workflow,
        settings.public_url,
        services.auth,
        settings.allowed_hosts,
        on_first_call=services.start,
    )
    return app


def compile_templates(app: Flask) -> int:
    """Compile every page template now, in a worker before it serves (``edge/serving.py``):
    Jinja compiles a template on its first use, and that was most of a request page's first
    view (detail.html and _diff.html: ~250 ms of ~380 ms). Returns how many were compiled."""
    names = app.jinja_env.list_templates(extensions=["html"])
    for name in names:
        app.jinja_env.get_template(name)
    return len(names)


_PUBLIC_ENDPOINTS = ("ops.healthz", "ops.readyz", "ops.metrics", "static")


def _resolve_user():
    """Every call to Checkpoint's own pages and API resolves its caller first (``g.user``)."""
    services = current_services()
    auth = services.auth
    try:
        token = identity.bearer_token(request.environ)
        if token is not None:  # a token is its own proof, in every mode (tokens.py)
            g.user = services.tokens.authenticate(token)
        else:
            g.user = auth.user(request.environ, session.get("user"))
        if not g.user.anonymous:
            request.environ[logs.USER_KEY] = g.user.name  # for the access line
            notifications.remember(services, g.user)  # the address a sign-in carries, for email
    except identity.Unauthenticated as exc:
        if request.endpoint in _PUBLIC_ENDPOINTS:
            g.user = identity.User(identity.ANONYMOUS)
            g.reader = visibility.Reader(g.user, restricted=True)
            return None
        body = json.dumps({"error_code": "UNAUTHENTICATED", "message": f"Checkpoint: {exc.message}"})
        return Response(body, status=401, mimetype="application/json", headers=list(exc.headers))
    registry = services.registry
    g.reader = visibility.reader_for(auth.mode, registry, g.user, request.environ)  # what the caller may see
    return None


# Checkpoint's own pages load nothing from elsewhere and run no inline script.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)


def _security_headers(response: Response) -> Response:
    """Headers for Checkpoint's own answers (proxied MLflow answers never pass through here)."""
    if request.path.startswith("/checkpoint"):
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
