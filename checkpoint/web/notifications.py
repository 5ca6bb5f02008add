"""``/checkpoint/notifications``: each person chooses how Checkpoint emails them (every event,
an hourly or daily digest, or no email); and the address a sign-in carries is kept for email
(``remember``, called as each caller is resolved). Thin over the Store's ``people``
(storage/mail.py); who is emailed about what is events/notifications'."""

from __future__ import annotations

import threading

from flask import Blueprint, flash, redirect, render_template, request, url_for

from checkpoint.errors import CheckpointError
from checkpoint.identity import User
from checkpoint.services import Services
from checkpoint.storage.mail import DIGESTS, MODES
from checkpoint.web.context import current_services, current_user
from checkpoint.web.scopes import token_scope

pages = Blueprint("notifications", __name__, url_prefix="/checkpoint/notifications")
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


def _page(status: int = 200, error: str = ""):
    user = current_user()
    services = current_services()
    person = None if user.anonymous else services.store.person(user.name)
    policy = services.settings.policy
    address = None
    if person is not None:
        address = person.email or (policy.people.address(user.name) if policy is not None else None)
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
