"""The new-request form a governed action in MLflow's UI lands on, pre-filled with that action.

Before the author opens anything it shows what reviewers will see: the rule's checks judged now
and the diff in one line (``review/preview.py``, nothing stored); "Check again" judges the typed
title and description. The comment typed in MLflow's stage-transition dialog arrives as
``?description=`` (the injected panel.js carries it). Without authentication (``none`` mode) a
visitor who has not said who they are gives a name here: no request is authored by "anonymous".
"""

from __future__ import annotations

import base64
import binascii
import json

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from checkpoint import urls
from checkpoint.registry import RegistryError
from checkpoint.review import batches, preview
from checkpoint.review.changes import Change, ChangeError, lone_surrogate, parse
from checkpoint.review.workflow import DESCRIPTION_MAX, TITLE_MAX, WorkflowError
from checkpoint.review.workflow_base import as_actor
from checkpoint.web import adding
from checkpoint.web.context import current_services, current_user, form_message, reader, workflow

pages = Blueprint("request_form", __name__, url_prefix="/checkpoint")
NAME_MAX = 64  # as /checkpoint/whoami takes it


@pages.context_processor
def _who() -> dict:
    """The header's "You are ..." (as on the other pages, ``ui.py``); an error page can render
    before the caller is resolved (CSRF and the body limit are checked first)."""
    user = g.get("user")
    return {"user": user.name if user else "anonymous", "auth_mode": current_services().auth.mode}


def decode_change(token: str) -> Change:
    """The change in the form's link: user input like any other, so parsed and canonicalised
    by the same :func:`checkpoint.review.changes.parse` as the API and the proxied calls."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if lone_surrogate(data) is not None:
            raise ValueError("it holds a lone surrogate escape")
        return parse(data)
    except (ValueError, TypeError, binascii.Error, ChangeError, RecursionError) as exc:
        abort(400, f"the change in this link is not readable ({exc}); go back to MLflow and try again")


def _refuse_unreadable(change: Change) -> None:
    if not reader().can_read_change(change):
        abort(403, "Permission denied: MLflow does not let you read this model")


def _asks_name() -> bool:
    """Whether the form must ask who the visitor is: no authentication, and no name given yet."""
    return current_services().auth.mode == "none" and current_user().anonymous


def name_problem(name: str) -> str | None:
    if not name or len(name) > NAME_MAX or any(ch in name for ch in "\x00\r\n"):
        return f"Give your name: 1 to {NAME_MAX} characters on one line."
    if name == "anonymous":
        return 'Give your own name: requests are never authored by "anonymous".'
    return None


@pages.get("/requests/new")
def new_request():
    """The form, pre-filled with the refused action (and the dialog's comment, if any); several
    ``change`` parameters make it a batch's form (one request, all or nothing)."""
    tokens, changes = _changes(request.args)
    description = request.args.get("description", "")[:DESCRIPTION_MAX].replace("\x00", "")
    return _render(tokens, changes, _default_title(changes), description, "", "", "", {})


@pages.post("/requests/new")
def create_request():
    form = request.form
    tokens, changes = _changes(form)
    title, description = form.get("title", ""), form.get("description", "")
    reviewers, apply_at = form.get("reviewers", ""), form.get("apply_at", "").strip()
    name = form.get("name", "").strip()
    errors: dict[str, str] = {}
    author = current_user()
    if _asks_name():
        problem = name_problem(name)
        if problem:
            errors["name"] = problem
        else:
            session["user"] = name  # as /checkpoint/whoami keeps it, for the next pages too
            author = current_services().auth.user(request.environ, name)
    action = form.get("action")
    if action == "add":  # one more change: the form again, as a batch's
        try:
            added = adding.change_from(form, changes[0].workspace)
        except (ChangeError, ValueError) as exc:
            return _render(tokens, changes, title, description, reviewers, apply_at, name, {"add": str(exc)}), 400
        _refuse_unreadable(added)
        if title == _default_title(changes):
            title = _default_title([*changes, added])
        return _render(
            [*tokens, urls.change_token(added.to_json())], [*changes, added], title, description, reviewers, apply_at, name, {}
        )
    if action == "preview":  # only judging: the name is asked for when opening
        return _render(tokens, changes, title, description, reviewers, apply_at, name, {})
    status = 400
    if not title.strip():
        errors["title"] = "Give the request a title."
    elif len(title) > TITLE_MAX:
        errors["title"] = f"At most {TITLE_MAX} characters ({len(title)} now)."
    if "\x00" in description:
        errors["description"] = "The description contains a NUL character."
    if "\x00" in reviewers:  # a name no user can have; it was stored as given
        errors["form"] = "A reviewer name contains a NUL character."
    if len(changes) > 1 and apply_at:
        errors["form"] = "A batch request applies once approved: leave “Apply at” empty."
    if not errors:
        try:
            named = tuple(r.strip() for r in reviewers.split(",") if r.strip())
            if len(changes) == 1:
                item, created = workflow().open(changes[0], author, title, description, named, apply_at or None)
            else:
                items = batches.parse_all([c.to_json() for c in changes])  # as the JSON API reads them
                workflow().refuse_held(items, as_actor(author).name)
                item, created = workflow().open_batch(items, author, title, description, named)
        except (WorkflowError, RegistryError) as exc:
            errors["form"] = form_message(exc)
            status = 409 if isinstance(exc, WorkflowError) and exc.status == 409 else 400  # e.g. "already true"
        else:
            if not created:
                flash(f"You already have request #{item.id} open for {'this change' if len(changes) == 1 else 'these changes'}.")
            return redirect(url_for("ui.request_detail", request_id=item.id), 303)
    return _render(tokens, changes, title, description, reviewers, apply_at, name, errors), status


def _changes(source) -> tuple[list[str], list[Change]]:
    """The changes a link or the form carries (``change``, once per change), each readable by the caller."""
    tokens = [t for t in source.getlist("change") if t]
    if not tokens:
        abort(400, "no change given: open this form from MLflow, or use the API")
    if len(tokens) > batches.MAX_CHANGES:
        abort(400, f"at most {batches.MAX_CHANGES} changes in one request")
    changes = [decode_change(t) for t in tokens]
    for change in changes:
        _refuse_unreadable(change)
    return tokens, changes


def _default_title(changes: list[Change]) -> str:
    if len(changes) == 1:
        return changes[0].title()
    models = ", ".join(dict.fromkeys(c.model_name for c in changes))
    return f"{len(changes)} changes to {models}"[:TITLE_MAX]


def _render(tokens: list[str], changes: list[Change], title: str, description: str, reviewers: str, apply_at: str,
            name: str, errors: dict):  # fmt: skip
    if len(changes) == 1:
        return _form(tokens[0], changes[0], title, description, reviewers, apply_at, name, errors)
    flow, clock = workflow(), current_services().clock
    text = description.replace("\x00", "")
    try:
        batches.parse_all([c.to_json() for c in changes])
        problem = None
    except WorkflowError as exc:  # shown before the author submits; opening refuses it again
        problem = exc.message
    parts = [
        {
            "n": n,
            "change": change,
            "rule": flow.policy.rule_for(change.model_name, change.target(), change.workspace),
            "frozen": _frozen(change),
            "preview": preview.preview(flow, change, title, text, clock.now()),
            "remove_url": url_for("request_form.new_request", change=[t for i, t in enumerate(tokens) if i != n - 1]),
        }
        for n, change in enumerate(changes, 1)
    ]
    return render_template(
        "ui/new_batch.html",
        tokens=tokens,
        parts=parts,
        problem=problem,
        **_typed(title, description, reviewers, name, errors),
    )


def _typed(title: str, description: str, reviewers: str, name: str, errors: dict) -> dict:
    """What both forms show back as typed, and what they offer to add."""
    return {
        "title": title,
        "description": description,
        "reviewers": reviewers,
        "name": name,
        "ask_name": _asks_name(),
        "errors": errors,
        "kinds": adding.KINDS,
        "form_values": request.form,
    }


def _frozen(change: Change) -> str | None:
    hold = workflow().policy.frozen(change.model_name, change.target(), current_services().clock.now())
    return None if hold is None else f"freeze '{hold.freeze.name}' holds this target until {hold.freeze.ends_local(hold.until)}"


def _form(token: str, change: Change, title: str, description: str, reviewers: str, apply_at: str, name: str, errors: dict):
    flow = workflow()
    clock = current_services().clock
    return render_template(
        "ui/new.html",
        token=token,
        change=change,
        apply_at=apply_at,
        rule=flow.policy.rule_for(change.model_name, change.target(), change.workspace),
        frozen=_frozen(change),
        preview=preview.preview(flow, change, title, description.replace("\x00", ""), clock.now()),
        **_typed(title, description, reviewers, name, errors),
    )
