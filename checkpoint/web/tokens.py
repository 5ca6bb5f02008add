"""API tokens, for pipelines: ``/checkpoint/api/v1/tokens`` (JSON) and ``/checkpoint/tokens`` (the
page). Thin over ``checkpoint/tokens.py``; every route refuses tokens (``token_scope(None)``):
only a real login manages its own tokens, so a leaked token cannot mint a longer-lived one.
The page's forms carry the CSRF token like every other form; the secret is shown once, in the
answer to the create form, never put in the session or a redirect."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from checkpoint.errors import CheckpointError
from checkpoint.tokens import SCOPES, TokenService
from checkpoint.web.context import csrf_for_cookie_callers, current_services, current_user, form_message
from checkpoint.web.scopes import token_scope

api = Blueprint("tokens_api", __name__, url_prefix="/checkpoint/api/v1/tokens")
pages = Blueprint("tokens", __name__, url_prefix="/checkpoint/tokens")
api.before_request(csrf_for_cookie_callers)
FIELDS = {"name", "scopes", "expires_in_days"}


def service() -> TokenService:
    return current_services().tokens


@pages.context_processor
def _user():
    return {"user": current_user().name, "auth_mode": current_services().auth.mode}


@api.post("")
@token_scope(None)
def create_token():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise CheckpointError(400, "BAD_REQUEST", "the request body must be a JSON object (Content-Type: application/json)")
    unknown = set(data) - FIELDS
    if unknown:  # an "owner" or "user" field is refused: a token is always its creator's
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"unknown field(s): {', '.join(sorted(unknown))}")
    token, secret = service().create(current_user(), data.get("name"), data.get("scopes"), data.get("expires_in_days"))
    return jsonify(token.to_json() | {"token": secret}), 201


@api.get("")
@token_scope(None)
def list_tokens():
    return jsonify({"tokens": [t.to_json() for t in service().list(current_user())]})


@api.delete("/<int:token_id>")
@token_scope(None)
def revoke_token(token_id: int):
    return jsonify(service().revoke(current_user(), token_id).to_json())


def _page(created=None, secret=None, errors=None, form=None, status=200):
    user = current_user()
    now = current_services().clock.now()
    return (
        render_template(
            "ui/tokens.html",
            tokens=service().list(user),
            allowed=service().allowed_scopes(user),
            scopes=SCOPES,
            max_days=service().max_days,
            created=created,
            secret=secret,
            errors=errors or {},
            form=form or {"name": "", "scopes": ["read"], "days": "30"},
            now=now,
        ),
        status,
    )


@pages.get("")
@token_scope(None)
def tokens_page():
    return _page()


@pages.post("")
@token_scope(None)
def create_from_form():
    days = request.form.get("days", "").strip()
    form = {"name": request.form.get("name", ""), "scopes": request.form.getlist("scopes"), "days": days}
    try:
        token, secret = service().create(current_user(), form["name"], form["scopes"], int(days) if days.isdigit() else days)
    except CheckpointError as exc:
        return _page(errors={"form": form_message(exc)}, form=form, status=exc.status if exc.status < 500 else 400)
    return _page(created=token, secret=secret)


@pages.post("/<int:token_id>/revoke")
@token_scope(None)
def revoke_from_form(token_id: int):
    try:
        token = service().revoke(current_user(), token_id)
    except CheckpointError as exc:
        return _page(errors={"form": form_message(exc)}, status=exc.status)
    flash(f"Token {token.name!r} is revoked: calls with it are refused from now on.")
    return redirect(url_for("tokens.tokens_page"), 303)
