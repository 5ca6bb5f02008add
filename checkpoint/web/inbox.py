"""The inbox ``/checkpoint/inbox``: what waits for my review, my requests, and my recently decided
ones on one page, each a short list with a link to the full filtered list; and the count of what
waits for me in every page's header.

"Waiting for my review" is ``review/inbox.py``'s (the policy's rule in force now decides, per
candidate). The header's count reads at most ``COUNT_SCAN`` candidates and counts to
``COUNT_MAX`` ("10+"): a bounded cost on every page view.
"""

from __future__ import annotations

from flask import Blueprint, g, render_template

from checkpoint.review import inbox
from checkpoint.review.visibility import request_keys
from checkpoint.storage.entities import APPLIED, FAILED, OPEN, REJECTED, WITHDRAWN, PromoteRequest
from checkpoint.web.context import current_services, current_user, reader, workflow

pages = Blueprint("inbox", __name__, url_prefix="/checkpoint/inbox")
SHOWN = 10  # rows per section; the section links to its full list
COUNT_MAX, COUNT_SCAN = 10, 200
DECIDED = (APPLIED, REJECTED, WITHDRAWN, FAILED)


def _readable(item: PromoteRequest) -> bool:
    return reader().can_read_request(item)


def awaiting_me(
    limit: int, scan: int = inbox.SCAN_MAX, before: int | None = None, **filters: str | None
) -> tuple[list[PromoteRequest], int | None]:
    """A page of the requests waiting for the caller's review, and its cursor."""
    return inbox.awaiting(workflow(), current_user(), can_read=_readable, before=before, limit=limit, scan=scan, **filters)


def _mine(states: tuple[str, ...] | None) -> list[PromoteRequest]:
    """The caller's newest requests (in one of ``states``), readable ones only."""
    name = current_user().name
    found: list[PromoteRequest] = []
    for state in states or (None,):

        def fetch(hidden: frozenset, state: str | None = state) -> tuple[list[PromoteRequest], int | None]:
            return workflow().store.list_requests(state=state, author=name, limit=SHOWN, hidden=hidden)

        found.extend(reader().visible_page(fetch, request_keys)[0])
    return sorted(found, key=lambda i: i.id, reverse=True)[:SHOWN]


def awaiting_count() -> tuple[int, bool]:
    """How many requests wait for the caller's review, counted to ``COUNT_MAX`` (reading at most
    ``COUNT_SCAN`` candidates), and whether there may be more: once per call to Checkpoint."""
    if "inbox_count" not in g:
        user = g.get("user")
        if user is None or user.anonymous:
            g.inbox_count = (0, False)
        else:
            found, more = awaiting_me(COUNT_MAX, COUNT_SCAN)
            g.inbox_count = (len(found), more is not None and len(found) == COUNT_MAX)
    return g.inbox_count


@pages.app_context_processor
def _header_count():
    def inbox_count() -> str:
        """ "3", "10+" or "" (anonymous, or nothing waits), for the header; computed when shown."""
        count, more = awaiting_count()
        return f"{count}+" if more else (str(count) if count else "")

    return {"inbox_count": inbox_count}


@pages.context_processor
def _user():
    return {"user": current_user().name, "auth_mode": current_services().auth.mode}


@pages.get("")
def inbox_page():
    user = current_user()
    if user.anonymous:
        sections: list[dict] = []
    else:
        waiting, more = awaiting_me(SHOWN)
        sections = [
            {"key": "waiting", "title": "Waiting for my review", "items": waiting, "more": more is not None,
             "full": {"awaiting": "me"}, "empty": "Nothing waits for your review."},
            {"key": "mine", "title": "My requests", "items": _mine((OPEN,)), "more": True,
             "full": {"author": "me", "state": OPEN}, "empty": "You have no open requests."},
            {"key": "decided", "title": "Recently decided", "items": _mine(DECIDED), "more": True,
             "full": {"author": "me", "state": "all"}, "empty": "None of your requests has been decided yet."},
        ]  # fmt: skip
    shown = [i for s in sections for i in s["items"]]
    return render_template(
        "ui/inbox.html",
        sections=sections,
        status=workflow().status,
        checks=workflow().checks_of(shown),
        anonymous=user.anonymous,
    )
