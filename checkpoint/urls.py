"""Checkpoint's public address and the links it hands out, in one place every layer may import.

A link leaves Checkpoint in many shapes (the gateway's 403 for a governed call, the API's ``url``,
an HTTP check's payload, a webhook body, the deliveries list, a redirect MLflow answered), and
a person follows it from somewhere else: all of them must agree on the base and the paths.
Plain functions over strings and a WSGI environ: no Flask, no settings object.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit


def public_origin(environ: Mapping, configured: str | None) -> str:
    """Checkpoint's own origin (scheme and host, lower-cased, no path): configured, or what the
    request shows. What a browser's ``Origin`` header is compared with."""
    if configured:
        parts = urlsplit(configured)
        return f"{parts.scheme}://{parts.netloc}".lower()
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}".lower()


def public_base(environ: Mapping, configured: str | None) -> str:
    """The base every link starts with: the configured public URL (its path kept: Checkpoint may
    sit under a prefix), or the request's origin; never a trailing slash."""
    return (configured or public_origin(environ, None)).rstrip("/")


def link(base: str | None, path: str) -> str:
    """``path`` under ``base``; the bare path when no base is known (a webhook sent with no
    public URL configured: the receiver knows where Checkpoint is)."""
    return f"{base.rstrip('/')}{path}" if base else path


def request_page(base: str | None, request_id: int) -> str:
    """The request's page, where a person reviews it."""
    return link(base, f"/checkpoint/requests/{request_id}")


def request_api(base: str | None, request_id: int) -> str:
    """The request in the JSON API."""
    return link(base, f"/checkpoint/api/v1/requests/{request_id}")


def change_token(change: Mapping) -> str:
    """A change (``Change.to_json()``) as the new-request form's ``change`` parameter: URL-safe
    base64 of its JSON, unpadded. The form parses it like any other input (``web/ui.py``)."""
    return base64.urlsafe_b64encode(json.dumps(change).encode()).decode().rstrip("=")


def new_request_page(base: str | None, token: str) -> str:
    """The form that opens a request, pre-filled with an encoded change."""
    return link(base, f"/checkpoint/requests/new?change={token}")


def compare_page(base: str | None, model: str, a: str, b: str, b_model: str = "", workspace: str = "") -> str:
    """Two versions compared (``web/compare.py``): ``b`` against ``a``, ``b`` of ``b_model`` when given."""
    query = {"a": a, "b": b, **({"b_model": b_model} if b_model else {}), **({"workspace": workspace} if workspace else {})}
    return link(base, f"/checkpoint/models/{quote(model, safe='')}/compare?{urlencode(query)}")


def model_history(base: str | None, model: str, workspace: str = "") -> str:
    """A model's history (what happened to its stages and aliases), in its MLflow workspace."""
    path = f"/checkpoint/models/{quote(model, safe='')}/history"
    if workspace:
        path += f"?workspace={quote(workspace, safe='')}"
    return link(base, path)


def request_url(base: str | None, request_id: int | None, model: str, workspace: str = "") -> str:
    """The page a person opens about an event: the request, or the model's history for an
    outside change (no request)."""
    return request_page(base, request_id) if request_id else model_history(base, model, workspace)


def audit_verify(base: str | None, head: str) -> str:
    """The API call that checks an audit-log head against the log."""
    return link(base, f"/checkpoint/api/v1/audit/verify?expect={quote(head)}")
