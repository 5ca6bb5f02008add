"""What every view reads about the request it serves: the process's services, the caller, what
the caller may see, Checkpoint's public address, CSRF, and the API's page cursors.

One home for the helpers the blueprints share, so no view imports another's privates.
"""

from __future__ import annotations

import base64
import binascii

from flask import current_app, g, request
from flask_wtf.csrf import CSRFProtect

from checkpoint import urls
from checkpoint.errors import CheckpointError
from checkpoint.identity import User
from checkpoint.registry import RegistryError
from checkpoint.review.visibility import Reader
from checkpoint.review.workflow import Workflow
from checkpoint.services import Services
from checkpoint.storage.store import Store

# One CSRF guard for every app (``create_app`` initialises it on each): the API asks it itself.
csrf = CSRFProtect()


def current_services() -> Services:
    """The services of the app serving this request."""
    return Services.of(current_app)


def workflow() -> Workflow:
    return current_services().workflow


def store() -> Store:
    return current_services().store


def current_user() -> User:
    """The caller, resolved before every request (see ``app._resolve_user``)."""
    return g.user


def reader() -> Reader:
    """What the caller may read (``visibility.py``), resolved with the caller."""
    return g.reader


def public_base() -> str:
    """Checkpoint's address as people reach it: configured, or what this request shows."""
    return urls.public_base(request.environ, current_app.config["CHECKPOINT"].public_url)


def csrf_for_cookie_callers() -> None:
    """A browser calling with only its session cookie must show the CSRF token; programs
    sending an Authorization header cannot be driven cross-site and need none."""
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and "Authorization" not in request.headers:
        csrf.protect()


def form_message(error: CheckpointError) -> str:
    """An error as a page's form or flash message says it: MLflow's refusals say they are MLflow's."""
    return f"MLflow: {error.message}" if isinstance(error, RegistryError) else error.message


# -- page cursors over requests (the API and the list page) ------------------------------


def request_cursor(raw: str | None) -> int | None:
    """The request id a ``cursor`` this API issued pages on from; a 400 for any other."""
    if not raw:
        return None
    try:
        value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        if not value.startswith("id:") or not value[3:].isdigit():
            raise ValueError(raw)
        return int(value[3:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"cursor {raw[:64]!r} is not one this API issued") from exc


def make_request_cursor(request_id: int | None) -> str | None:
    return base64.urlsafe_b64encode(f"id:{request_id}".encode()).decode().rstrip("=") if request_id else None
