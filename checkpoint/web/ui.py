"""Checkpoint's own pages: the requests list, a request with its diff and review thread, and a
model's promotion history (the new-request form is ``request_form.py``). Thin handlers over the
workflow; the templates in ``web/templates/ui/`` do the presenting. A little past 400 lines: the
request page's view gathers the most (summary, checks, statuses, a batch's parts, the kept diff and
its one line), and its helpers stay beside it."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from urllib.parse import urlencode

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from markupsafe import Markup

from checkpoint.events import history, request_timeline
from checkpoint.registry import RegistryError
from checkpoint.review import batches, expiry, schedule
from checkpoint.review.changes import ChangeError, canonical_workspace
from checkpoint.review.diff_snapshots import PageDiff
from checkpoint.review.inbox import SCAN_MAX as inbox_scan_max
from checkpoint.review.policy import Status
from checkpoint.review.visibility import request_keys
from checkpoint.review.workflow import WorkflowError
from checkpoint.storage.entities import APPLIED, OPEN, REJECTED, STATES, WAITING, WITHDRAWN, EventKind, NotFound
from checkpoint.web import behaviour_view
from checkpoint.web.context import (
    current_services,
    current_user,
    form_message,
    make_request_cursor,
    reader,
    request_cursor,
    workflow,
)
from checkpoint.web.fragments import Fragments
from checkpoint.web.inbox import awaiting_me
from checkpoint.web.rendering import TEMPLATE_GLOBALS, batch_headline, request_headline
from checkpoint.web.summary import diff_line, diff_parts, summarise

log = logging.getLogger("checkpoint.ui")  # the name operators filter the JSON logs on

bp = Blueprint("ui", __name__, url_prefix="/checkpoint")
PAGE = 25
_FRAGMENTS = Fragments()  # the request pages' rendered diffs, per process

for _helper in (*TEMPLATE_GLOBALS, diff_parts):  # the pages' formatting helpers (rendering.py), app-wide
    bp.add_app_template_global(_helper)


@bp.context_processor
def _user():
    # An error page can render before the caller is resolved (CSRF and the body limit are checked first).
    user = g.get("user")
    return {"user": user.name if user else "anonymous", "auth_mode": current_services().auth.mode}


@bp.app_template_global()
def waiting_line(waiting) -> str:
    """ "waiting for freeze 'weekend' to end at Mon 08:00 CET" (the freeze's own zone)."""
    return schedule.describe(workflow().policy, waiting)


@bp.before_request
def _readable_request():
    """A request whose model the caller may not read is, on every page and form, one that does not exist."""
    request_id = (request.view_args or {}).get("request_id")
    if request_id is None:
        return
    try:
        item = workflow().store.get(request_id)
    except NotFound:
        return  # the view answers its own 404
    if not reader().can_read_request(item):  # a batch: every model it changes
        abort(404, f"promote request #{request_id} does not exist")


@bp.get("/")
def index():
    return redirect(url_for("ui.requests_list"))


@bp.get("/requests")
def requests_list():
    args = request.args
    state = args.get("state", "open")
    if state not in ("all", WAITING, *STATES):  # waiting: approved, held by a freeze or apply_at
        abort(400, f"state must be all, waiting or one of {', '.join(STATES)}")
    filters: dict[str, str | None] = {
        "model": args.get("model") or None,
        "target": args.get("target") or None,
        "author": args.get("author") or None,
        "search": args.get("q") or None,
        "workspace": _workspace_arg(args.get("workspace") or None),
    }
    if filters["author"] == "me":  # the inbox's links: the caller
        filters["author"] = current_user().name
    awaiting = args.get("awaiting") == "me"
    if awaiting:  # open requests waiting for the caller's review (review/inbox.py)
        state = OPEN
        items, last = awaiting_me(PAGE, inbox_scan_max, request_cursor(args.get("cursor")), **filters)
    else:
        items, last = reader().visible_page(
            lambda hidden: workflow().store.list_requests(
                state=None if state == "all" else state,
                limit=PAGE,
                hidden=hidden,
                before=request_cursor(args.get("cursor")),
                **filters,
            ),
            request_keys,
        )
    workspace = None if filters["workspace"] is None else filters["workspace"] or "default"
    query = {
        k: v
        for k, v in {
            "state": state,
            "model": filters["model"],
            "target": filters["target"],
            "author": filters["author"],
            "q": filters["search"],
            "workspace": workspace,
            "awaiting": "me" if awaiting else None,
        }.items()
        if v
    }
    next_url = url_for("ui.requests_list") + "?" + urlencode({**query, "cursor": make_request_cursor(last)}) if last else None
    return render_template(
        "ui/list.html",
        items=items,
        state=state,
        filters=filters,
        states=STATES,
        next_url=next_url,
        status=workflow().status,
        checks=workflow().checks_of(items),
        first_page=not args.get("cursor"),
        awaiting=awaiting,
    )


def _workspace_arg(raw: str | None) -> str | None:
    """A ``workspace`` filter: None (every workspace) when absent, "" for the default one."""
    if raw is None:
        return None
    try:
        return canonical_workspace(raw)
    except ChangeError as exc:
        abort(400, str(exc))


@bp.get("/requests/<int:request_id>")
def request_detail(request_id: int):
    try:
        item = workflow().store.get(request_id)
    except NotFound:
        abort(404, f"promote request #{request_id} does not exist")
    parts = _batch_parts(item)
    shown = _diff_for(item) if not parts else PageDiff()
    user = current_user()
    refusal = workflow().refusal(user, item)
    rule = workflow().rule_of(item)
    checks = workflow().check_results(item)
    standing = workflow().statuses_standing(item)
    posted = {s.status.context for s in standing}
    missing = [s for s in rule.required_statuses if s.context not in posted]
    at = current_services().clock.now()
    champion = shown.champion if shown.champion_read else True
    status = _as_decided(item, workflow().status(item, checks, standing))
    may_review = item.state == "open" and refusal is None
    return render_template(
        "ui/detail.html",
        standing=standing,
        missing_statuses=missing,
        item=item,
        headline=batch_headline(item) if parts else request_headline(item, champion),
        parts=parts,
        summary=summarise(
            item,
            champion=champion,
            rule_name=rule.name,
            status=status,
            checks=checks,
            standing=standing,
            missing=missing,
            diff=_diff_line(shown),
            reader=user.name,
            may_review=may_review,
            parts=[part["item"] for part in parts],
        ),
        standings={r.id: expiry.standing(r, rule, at) for r in item.reviews},
        diff_html=_diff_html(item, shown),
        diff_error=shown.error,
        behaviour=_behaviour_for(item),
        checks=checks,
        status=status,
        rule=rule,
        may_review=may_review,
        review_refusal=refusal,
        is_author=user.name == item.author,
        is_admin=user.is_admin,
        break_glass=[e for e in item.events if e.kind == EventKind.BREAK_GLASS],
        timeline=request_timeline.lines(item.events),
        may_cancel=_may_cancel(item, user, refusal),
        freezes=[f for f in workflow().policy.freezes if any(f.covers(p.model_name, p.target) for p in batches.parts(item))],
    )


CLOSED = (APPLIED, REJECTED, WITHDRAWN)  # decided for good: nothing is awaited any more


def _as_decided(item, status: Status) -> Status:
    """A closed request's approvals as they stand, without what only an undecided one waits for:
    an applied, rejected or withdrawn request is not "awaiting" anyone nor "blocked by" a check."""
    if item.state not in CLOSED:
        return status
    return replace(status, awaited=(), awaited_required=(), blocked_by=(), blocked_by_statuses=(), expired=())


def _may_cancel(item, user, refusal: str | None) -> bool:
    """Whether to offer "cancel": a scheduled or waiting apply, to its author, a reviewer or an admin
    (``Workflow.cancel`` decides again)."""
    scheduled = (item.state == "open" and item.apply_at is not None) or item.waiting_for is not None
    return scheduled and (user.name == item.author or user.is_admin or refusal is None)


def _diff_for(item):
    """The challenger-vs-champion diff, from its snapshot or MLflow (``review/diff_snapshots.py``)."""
    snapshots = current_services().snapshots
    assert snapshots is not None  # Services.build makes one
    return snapshots.for_page(item)


def _behaviour_for(item) -> dict | None:
    """The behavioural diff's stored state (asked for when there is none; never waited for)."""
    behaviours = current_services().behaviours
    if behaviours is None:
        return None
    try:
        return behaviour_view.for_page(behaviours.for_request(item))
    except Exception:  # the page stands without it
        log.warning("behavioural diff of request #%s unavailable", item.id, exc_info=True)
        return {"state": "error", "reason": "the behavioural diff could not be read from the database"}


def _batch_parts(item) -> list[dict]:
    """A batch's sections, one per change in the order they apply: its headline, the view the
    change's rule, snapshots and diff are read from, and that diff (read now, ``read_now``). []
    for a single-change request."""
    if item.changes is None:
        return []
    snapshots = current_services().snapshots
    assert snapshots is not None  # Services.build makes one
    out = []
    for n, view in enumerate(batches.parts(item), 1):
        shown = snapshots.read_now(view)
        out.append(
            {
                "n": n,
                "item": view,
                "headline": request_headline(view, shown.champion if shown.champion_read else True),
                "rule": workflow().rule_of(view),
                "freezes": [f for f in workflow().policy.freezes if f.covers(view.model_name, view.target)],
                "diff_html": _diff_html(view, shown, diff_id=f"diff-h-{n}"),
                "diff_error": shown.error,
            }
        )
    return out


def _diff_html(item, shown, diff_id: str = "diff-h") -> Markup | None:
    """The diff section, rendered once per snapshot and page lines (``fragments.py``)."""
    if shown.error is not None and shown.diff is None:
        return None
    lines = (shown.moved, shown.refreshing, shown.note, json.dumps(item.rollback, sort_keys=True))
    name = None if shown.source is None else (*shown.source, *lines)

    def render() -> str:
        if shown.diff is None:
            return ""
        return render_template(
            "ui/_diff.html",
            item=item,
            diff=shown.diff,
            moved=shown.moved,
            diff_as_of=shown.as_of,
            diff_refreshing=shown.refreshing,
            diff_note=shown.note,
            diff_id=diff_id,
        )

    return _FRAGMENTS.get(name, render)


def _diff_line(shown) -> str | None:
    """The summary's one line about the diff, kept beside the rendered diff under its snapshot's
    name: a page whose diff is kept does not compute a 4,000-row diff again for one line."""
    if shown.compute is None:  # no diff for this request (an error, or a kind without a challenger)
        return None
    name = None if shown.source is None else ("summary", *shown.source)
    return str(_FRAGMENTS.get(name, lambda: diff_line(shown.diff) or "")) or None  # escaped by the template


def _act(request_id: int, action) -> object:
    try:
        action()
    except NotFound:
        abort(404, f"promote request #{request_id} does not exist")
    except (WorkflowError, RegistryError) as exc:
        flash(form_message(exc), "error")
    return redirect(url_for("ui.request_detail", request_id=request_id), 303)


@bp.post("/requests/<int:request_id>/review")
def review(request_id: int):
    """The one review box: its text goes with the button pressed (approve, reject or comment)."""
    form = request.form
    verdict, apply_at = form.get("verdict", ""), (form.get("apply_at") or "").strip() or None
    if verdict == "comment":
        return _act(request_id, lambda: workflow().comment(request_id, current_user(), form.get("comment", "")))
    return _act(request_id, lambda: workflow().review(request_id, current_user(), verdict, form.get("comment", ""), apply_at))


@bp.post("/requests/<int:request_id>/comment")
def comment(request_id: int):
    return _act(request_id, lambda: workflow().comment(request_id, current_user(), request.form.get("body", "")))


@bp.post("/requests/<int:request_id>/edit")
def edit(request_id: int):
    form = request.form
    return _act(request_id, lambda: workflow().edit(request_id, current_user(), form.get("title"), form.get("description")))


@bp.post("/requests/<int:request_id>/withdraw")
def withdraw(request_id: int):
    return _act(request_id, lambda: workflow().withdraw(request_id, current_user()))


@bp.post("/requests/<int:request_id>/break-glass")
def break_glass(request_id: int):
    reason = request.form.get("reason", "")
    return _act(request_id, lambda: workflow().break_glass(request_id, current_user(), reason))


@bp.post("/requests/<int:request_id>/checks")
def rerun_checks(request_id: int):
    return _act(request_id, lambda: workflow().rerun_checks(request_id, current_user()))


@bp.post("/requests/<int:request_id>/cancel")
def cancel(request_id: int):
    return _act(request_id, lambda: workflow().cancel(request_id, current_user()))


@bp.post("/requests/<int:request_id>/retry")
def retry(request_id: int):
    return _act(request_id, lambda: workflow().retry(request_id, current_user()))


@bp.get("/models/<path:name>/history")
def model_history(name: str):
    """Every promotion applied to a model (of that name in MLflow workspace ``?workspace=``, the
    default one when absent): what held which stage or alias, from when to when."""
    workspace = _workspace_arg(request.args.get("workspace") or None) or ""
    if not reader().can_read(name, workspace):
        abort(403, "Permission denied: MLflow does not let you read this model")
    entries = history.for_model(workflow().store, name, workspace)
    return render_template("ui/history.html", name=name, entries=entries, workspace=workspace)


@bp.route("/whoami", methods=["GET", "POST"])
def whoami():
    """No authentication configured: a visitor says who they are (kept in a signed cookie)."""
    if current_services().auth.mode != "none":
        abort(404, "names come from your sign-in here")
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        if not name or len(name) > 64 or any(ch in name for ch in "\x00\r\n"):
            flash("A name is 1 to 64 characters on one line.", "error")
        else:
            session["user"] = name
        target = request.form.get("next", "")
        return redirect(target if target.startswith("/checkpoint/") else url_for("ui.requests_list"), 303)
    return render_template("ui/whoami.html", next=request.args.get("next", ""))
