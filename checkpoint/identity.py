"""Who is calling. Without an identity provider configured, names are *claimed*, not
verified: the MLflow client's Basic-auth username (``MLFLOW_TRACKING_USERNAME``), or the
name a visitor picked in the browser; otherwise ``anonymous``."""

from __future__ import annotations

import base64
import binascii

ANONYMOUS = "anonymous"


def basic_username(header: str) -> str | None:
    """The username in an ``Authorization: Basic ...`` header, if well-formed."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0].strip()
    return user or None


def user_from_environ(environ: dict, cookie_user: str | None = None) -> str:
    """The caller's name for a WSGI request."""
    return basic_username(environ.get("HTTP_AUTHORIZATION", "")) or cookie_user or ANONYMOUS
