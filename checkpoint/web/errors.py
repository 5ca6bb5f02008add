"""The Flask renderer of :class:`~checkpoint.errors.CheckpointError`: MLflow-shaped JSON for
programs and the API, a page for people; werkzeug's own errors (404, 405, ...) in the same two
shapes. The WSGI gateway renders the same base for proxied calls (``edge/gateway.py``)."""

from __future__ import annotations

import json

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from checkpoint.edge.proxy import UpstreamError, wants_html
from checkpoint.errors import CheckpointError

_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "BAD_REQUEST",
    409: "INVALID_STATE",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",
}


def render(error: CheckpointError) -> Response:
    """A page for a browser outside the API, MLflow's JSON error shape for everyone else."""
    error = error.answer()
    if wants_html(request.environ) and not request.path.startswith("/checkpoint/api/"):
        html = render_template("error.html", status=error.status, error_code=error.error_code, message=error.message)
        return Response(html, status=error.status, mimetype="text/html")
    return Response(json.dumps(error.payload()), status=error.status, mimetype="application/json")


def register_error_handlers(app: Flask) -> None:
    """Map our own errors and werkzeug's (404, 405, ...) to the same two shapes."""

    @app.errorhandler(CheckpointError)
    def _own(error: CheckpointError) -> Response:
        return render(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        if status == 413:  # werkzeug's own words ("exceeds the capacity limit") do not say which limit
            message = f"the request body is too large: at most {app.config['MAX_CONTENT_LENGTH']} bytes"
        return render(CheckpointError(status, _CODES.get(status, "INTERNAL_ERROR"), message))


def render_upstream_error(app: Flask, environ: dict, error: UpstreamError) -> tuple[str, bytes]:
    """The proxy's 502/504: JSON for API paths and programs, a short page for browsers."""
    if wants_html(environ):
        with app.app_context():
            html = render_template("upstream_error.html", status=error.status, message=error.message)
        return "text/html; charset=utf-8", html.encode()
    return "application/json", json.dumps({"error_code": error.error_code, "message": error.message}).encode()
