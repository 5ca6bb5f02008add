"""``/checkpoint/notifications``: each person chooses how Checkpoint emails them (every event,
an hourly or daily digest, or no email); ``/checkpoint/api/v1/notifications`` is the same choice
as JSON (GET and PUT, the caller's own only: no parameter names anyone else; a token may read it,
only a real login changes it). The address a sign-in carries is kept for email (``remember``,
called as each caller is resolved). Thin over the Store's ``people`` (storage/mail.py); who is
emailed about what is events/notifications'."""

from __future__ import annotations

import threading

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from checkpoint.errors import CheckpointError
from checkpoint.identity import User
from checkpoint.services import Services
from checkpoint.storage.mail import DIGESTS, MODES, OFF, Person
from checkpoint.web.api import json_body
from checkpoint.web.context import csrf_for_cookie_callers, current_services, current_user
from checkpoint.web.scopes import token_scope

pages = Blueprint("notifications", __name__, url_prefix="/checkpoint/notifications")
api = Blueprint("notifications_api", __name__, url_prefix="/checkpoint/api/v1/notifications")
api.before_request(csrf_for_cookie_callers)
CHOICES = {
    "each": "An email for every event",
    "hourly": "An hourly digest",
    "daily": "A daily digest",
    "off": "No email",
}
assert set(CHOICES) == set(MODES) and set(DIGESTS) <= set(CHOICES)

# (name, address) pairs this process already stored: one write per change, not per call.
_SEEN: set[tuple[str, str]] = set()
_SEEN_LOCK = threading.Lock()
_SEEN_MAX = 10_000


def remember(services: Services, user: User) -> None:
    """Keep the address a verified sign-in carried (header mode's email header), when email is on."""
    if services.mailer is None or not user.email or not user.verified or user.scopes is not None:
        return
    key = (user.name, user.email)
    with _SEEN_LOCK:
        if key in _SEEN:
            return
    services.store.remember_email(user.name, user.email)
    with _SEEN_LOCK:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN.add(key)


@pages.context_processor
def _user():
    return {"user": current_user().name, "auth_mode": current_services().auth.mode}


def _address(person: Person) -> str | None:
    """Where email to ``person`` goes: the address their sign-in carried, else the policy's ``people:``."""
    policy = current_services().settings.policy
    return person.email or (policy.people.address(person.name) if policy is not None else None)


def _page(status: int = 200, error: str = ""):
    user = current_user()
    services = current_services()
    person = None if user.anonymous else services.store.person(user.name)
    address = _address(person) if person is not None else None
    return (
        render_template(
            "ui/notifications.html",
            person=person,
            address=address,
            choices=CHOICES,
            email_on=services.mailer is not None,
            error=error,
        ),
        status,
    )


@pages.get("")
@token_scope(None)
def preferences_page():
    return _page()


@pages.post("")
@token_scope(None)
def save_preferences():
    user = current_user()
    if user.anonymous:
        return _page(403, "Sign in (or pick a name) to choose how you get email.")
    mode = request.form.get("mode", "")
    if mode not in CHOICES:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"mode must be one of {', '.join(CHOICES)}")
    current_services().store.set_mail_mode(user.name, mode)
    flash(f"Saved: {CHOICES[mode].lower()}.")
    return redirect(url_for("notifications.preferences_page"), 303)


def _signed_in() -> User:
    user = current_user()
    if user.anonymous:
        raise CheckpointError(401, "UNAUTHENTICATED", "sign in (or pick a name) to read or choose how you get email")
    if request.args:  # nobody else's choice is readable: a ?user= must not look as if it were obeyed
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "this call takes no parameters: it is always the caller's own")
    return user


def _as_json(person: Person):
    return jsonify(
        user=person.name,
        mode=person.mode,
        email=person.mode != OFF,
        digest=person.mode if person.mode in DIGESTS else None,
        address=_address(person),
        email_configured=current_services().mailer is not None,
    )


@api.get("")
@token_scope("read")
def get_preferences():
    """The caller's choice (a token reads its owner's)."""
    return _as_json(current_services().store.person(_signed_in().name))


@api.put("")
@token_scope(None)
def put_preferences():
    """Replace the caller's choice: ``{"mode": "each" | "hourly" | "daily" | "off"}``. A token is refused."""
    user = _signed_in()
    mode = json_body({"mode"}).get("mode")
    if not isinstance(mode, str) or mode not in CHOICES:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"mode must be one of {', '.join(CHOICES)}")
    return _as_json(current_services().store.set_mail_mode(user.name, mode))
