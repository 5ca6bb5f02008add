"""Webhook deliveries: the outbox as a page and as JSON, and an admin's re-send.

A re-send makes the same delivery (same id, so receivers still dedupe) due now, with a fresh
attempt count; the background sender picks it up at once.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from checkpoint import urls
from checkpoint.errors import CheckpointError
from checkpoint.events.webhooks import Webhooks
from checkpoint.storage.entities import DELIVERY_STATES, MAX_ID, Delivery, NotFound
from checkpoint.web.context import csrf_for_cookie_callers, current_services, current_user, public_base, reader, store
from checkpoint.web.scopes import token_scope

pages = Blueprint("deliveries", __name__, url_prefix="/checkpoint")
api = Blueprint("deliveries_api", __name__, url_prefix="/checkpoint/api/v1")
api.before_request(csrf_for_cookie_callers)
PAGE = 50


def webhooks() -> Webhooks:
    return current_services().webhooks


@pages.context_processor
def _user():
    return {"user": current_user().name, "auth_mode": current_services().auth.mode}


# -- shared ------------------------------------------------------------------------------


def _filters(args) -> dict:
    """``status``, ``webhook`` and ``request_id`` from the query string, checked."""
    status = args.get("status") or None
    if status and status not in DELIVERY_STATES:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"status must be one of {', '.join(DELIVERY_STATES)}")
    webhook = args.get("webhook") or None
    if webhook and ("\x00" in webhook or len(webhook) > 200):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "webhook must be a webhook's name (at most 200 characters)")
    raw = (args.get("request_id") or "").strip().lstrip("#")
    if raw and not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_ID):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "request_id must be a request's number")
    return {"status": status, "webhook": webhook, "request_id": int(raw) if raw else None}


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    try:
        kind, event_id, delivery_id = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        if kind != "d" or not event_id.isdigit():
            raise ValueError(raw)
        return int(event_id), str(uuid.UUID(delivery_id))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"cursor {raw[:64]!r} is not one this API issued") from exc


def _make_cursor(last: tuple[int, str] | None) -> str | None:
    return base64.urlsafe_b64encode(f"d:{last[0]}:{last[1]}".encode()).decode().rstrip("=") if last else None


def _delivery_id(raw: str) -> str:
    """Delivery ids are uuid4 strings; anything else names no delivery."""
    try:
        return str(uuid.UUID(raw))
    except ValueError as exc:
        raise NotFound(f"delivery {raw[:64]!r} does not exist") from exc


def _visible_deliveries(filters: dict, before: tuple[int, str] | None, limit: int):
    """A page of deliveries without those about models the caller may not read."""
    return reader().visible_page(
        lambda hidden: store().list_deliveries(**filters, before=before, limit=limit, hidden_models={m for _, m in hidden}),
        lambda item: [("", item.model)],
    )


def _resend(raw_id: str) -> Delivery:
    user = current_user()
    if not user.is_admin:
        raise CheckpointError(403, "PERMISSION_DENIED", f"{user.name} is not an admin: re-sending deliveries is for admins")
    delivery = store().resend_delivery(_delivery_id(raw_id))  # DeliveryBusy: 409 INVALID_STATE
    current_app.logger.info("delivery %s re-sent by %s", delivery.id, user.name)
    current_services().background.wake()
    return delivery


def delivery_json(item: Delivery) -> dict:
    hook = webhooks().get(item.webhook)
    stamp = lambda value: value.isoformat() if value else None  # noqa: E731 - a one-line formatter
    return {
        "id": item.id,
        "event_id": item.event_id,
        "event": item.event,
        "webhook": item.webhook,
        "webhook_configured": hook is not None,
        "request_id": item.request_id,
        "request_url": urls.request_page(public_base(), item.request_id) if item.request_id else None,
        "status": item.status,
        "attempts": item.attempts,
        "max_attempts": hook.max_attempts if hook else None,
        "next_attempt_at": stamp(item.next_attempt_at) if item.status in ("pending", "sending") else None,
        "last_status": item.last_status,
        "last_error": item.last_error,
        "created_at": stamp(item.created_at),
        "delivered_at": stamp(item.delivered_at),
    }


# -- the API -----------------------------------------------------------------------------


@api.get("/deliveries")
def list_deliveries():
    """Newest first, filtered by status, webhook and request; ``next_cursor`` pages on."""
    args = request.args
    limit = args.get("limit", "50")
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 200:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "limit must be a whole number from 1 to 200")
    items, last = _visible_deliveries(_filters(args), _cursor(args.get("cursor")), int(limit))
    return jsonify(deliveries=[delivery_json(i) for i in items], next_cursor=_make_cursor(last))


@api.post("/deliveries/<delivery_id>/resend")
@token_scope(None)  # an admin's chore, done signed in
def resend(delivery_id: str):
    """An admin sends a delivery again (same id), now."""
    return jsonify(delivery_json(_resend(delivery_id)))


# -- the page ----------------------------------------------------------------------------


@pages.get("/deliveries")
def deliveries_page():
    args = request.args
    try:
        filters = _filters(args)
        items, last = _visible_deliveries(filters, _cursor(args.get("cursor")), PAGE)
    except CheckpointError as exc:
        abort(400, exc.message)
    query = {k: v for k, v in filters.items() if v}
    next_url = url_for("deliveries.deliveries_page") + "?" + urlencode({**query, "cursor": _make_cursor(last)}) if last else None
    return render_template(
        "ui/deliveries.html",
        items=items,
        filters=filters,
        states=DELIVERY_STATES,
        next_url=next_url,
        hooks=webhooks().hooks,
        is_admin=current_user().is_admin,
        backlog=store().delivery_backlog(),
        first_page=not args.get("cursor"),
        query=query,
    )


@pages.post("/deliveries/<delivery_id>/resend")
def resend_form(delivery_id: str):
    try:
        delivery = _resend(delivery_id)
    except NotFound:
        abort(404, f"delivery {delivery_id[:64]!r} does not exist")
    except CheckpointError as exc:
        if exc.status == 403:
            abort(403, exc.message)
        flash(exc.message, "error")
    else:
        flash(f"Delivery {delivery.id} is queued to be sent again.")
    back = request.form.get("next", "")
    return redirect(back if back.startswith("/checkpoint/deliveries") else url_for("deliveries.deliveries_page"), 303)
