"""Which token scope each of Checkpoint's routes needs: rules as data on the views.

A call made with a token (``g.user.scopes`` is a set) reaches a view only if the view allows
it: ``@token_scope("status")`` on the view names the scope it needs; a view without one takes
tokens with ``read`` for GET/HEAD and refuses them for anything else (a new write route is
closed to tokens until it says which scope opens it); ``@token_scope(None)`` refuses tokens
outright (managing tokens needs a real login). A real login (``scopes`` None) is never
limited here: its rights are the workflow's. ``require_scope`` checks inside a view whose
scope depends on what it is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import current_app, g, request

from checkpoint.errors import CheckpointError

F = TypeVar("F", bound=Callable)
ATTR = "checkpoint_token_scope"
_UNSET = object()
READS = ("GET", "HEAD", "OPTIONS")


def token_scope(scope: str | None) -> Callable[[F], F]:
    """Declare the scope a token needs to call this view (None: tokens are refused)."""

    def mark(view: F) -> F:
        setattr(view, ATTR, scope)
        return view

    return mark


def require_scope(scope: str) -> None:
    """Refuse (403) a token caller whose token lacks ``scope``; a real login passes."""
    user = g.get("user")
    if user is not None and not user.may(scope):
        raise CheckpointError(
            403,
            "PERMISSION_DENIED",
            f"this token lacks the {scope!r} scope (it has: {', '.join(sorted(user.scopes)) or 'none'}): "
            "create a token with that scope",
        )


def scope_of(view: Callable | None, method: str) -> str | None | object:
    """The scope a token needs for ``view`` called with ``method``; None: tokens refused."""
    declared = getattr(view, ATTR, _UNSET) if view is not None else _UNSET
    if declared is _UNSET:
        return "read" if method in READS else None
    return declared


def check_token_route() -> None:
    """Before every view: a token caller must have the scope the view needs."""
    user = g.get("user")
    if user is None or user.scopes is None:
        return
    scope = scope_of(current_app.view_functions.get(request.endpoint or ""), request.method)
    if scope is None:
        raise CheckpointError(
            403, "PERMISSION_DENIED", f"{request.method} {request.path} does not take tokens: sign in to do this"
        )
    require_scope(str(scope))
