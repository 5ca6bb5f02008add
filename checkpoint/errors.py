"""One error type, answered as MLflow-shaped JSON to programs and as a page to people."""

from __future__ import annotations

import json

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from checkpoint.edge.proxy import UpstreamError, wants_html


class CheckpointError(Exception):
    """An error a caller should see, with its HTTP status and MLflow-style error code."""

    def __init__(self, status: int, error_code: str, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.extra = extra

    def payload(self) -> dict:
        return {"error_code": self.error_code, "message": self.message, **self.extra}


_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST",
          405: "BAD_REQUEST", 409: "INVALID_STATE", 413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE"}


def _answer(error: CheckpointError) -> Response:
    if wants_html(request.environ) and not request.path.startswith("/checkpoint/api/"):
        html = render_template("error.html", status=error.status, error_code=error.error_code, message=error.message)
        return Response(html, status=error.status, mimetype="text/html")
    return Response(json.dumps(error.payload()), status=error.status, mimetype="application/json")


def register_error_handlers(app: Flask) -> None:
    """Map our own errors and werkzeug's (404, 405, ...) to the same two shapes."""

    @app.errorhandler(CheckpointError)
    def _own(error: CheckpointError) -> Response:
        return _answer(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        if status == 413:  # werkzeug's own words ("exceeds the capacity limit") do not say which limit
            message = f"the request body is too large: at most {app.config['MAX_CONTENT_LENGTH']} bytes"
        return _answer(CheckpointError(status, _CODES.get(status, "INTERNAL_ERROR"), message))


def render_upstream_error(app: Flask, environ: dict, error: UpstreamError) -> tuple[str, bytes]:
    """The proxy's 502/504: JSON for API paths and programs, a short page for browsers."""
    if wants_html(environ):
        with app.app_context():
            html = render_template("upstream_error.html", status=error.status, message=error.message)
        return "text/html; charset=utf-8", html.encode()
    return "application/json", json.dumps({"error_code": error.error_code, "message": error.message}).encode()


class ConfigError(CheckpointError, ValueError):
    """A configuration value is missing or malformed: a ``CHECKPOINT_*`` variable, or a key of the
    policy file named by its path (``rules[0] (fraud production).checks[0] (auc-gate).expression``).

    Start-up stops with the message, which shows a good value; a ValueError too, as the four
    errors it replaces were (``SettingsError``, ``IdentityError``, ``GovernanceError``, ``PolicyError``).
    """

    def __init__(self, message: str) -> None:
        super().__init__(500, "INTERNAL_ERROR", message)
