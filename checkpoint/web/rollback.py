"""The rollback form: ``/checkpoint/models/<name>/rollback?target=alias:champion[&to=3]``, reached
from the timeline page (each earlier period) and from an applied request's page.

It is the new-request form, pre-filled: the title and a description naming the request being
undone, the earlier holders to pick from. Posting it opens the request through
``Workflow.open_rollback``, which chooses and judges the version again from the log: nothing the
form sends but the target, the version asked for, the text and the reviewers is believed.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from checkpoint.events import timeline
from checkpoint.registry import RegistryError
from checkpoint.review.workflow import TITLE_MAX, WorkflowError
from checkpoint.web.context import current_services, current_user, form_message, reader, workflow
from checkpoint.web.timeline import lanes_of

pages = Blueprint("rollback", __name__, url_prefix="/checkpoint")


@pages.context_processor
def _user():
    return {"user": current_user().name, "auth_mode": current_services().auth.mode}


def _args(source) -> tuple[str, str, str | None, str]:
    """target, workspace ("" = the default one), the version asked for (None: the previous holder), reviewers."""
    from checkpoint.web.api import workspace_arg

    workspace = workspace_arg(source.get("workspace") or None) or ""
    return source.get("target", ""), workspace, (source.get("to") or "").strip() or None, source.get("reviewers", "")


def _form(name: str, target: str, workspace: str, to: str | None, title=None, description=None, reviewers="", errors=None):
    """The form for the plan (refused plans answer with their reason, as the API does)."""
    try:
        plan, change = workflow().rollback_plan(name, target, to, workspace)
    except (WorkflowError, RegistryError) as exc:
        abort(exc.status if isinstance(exc, WorkflowError) else 502, form_message(exc))
    lane = next((lane for lane in lanes_of(name, workspace) if lane.target == plan.target), None)
    earlier = [p for p in timeline.earlier_holders(lane) if p.version not in plan.replacing] if lane else []
    rule = workflow().policy.rule_for(name, plan.target, workspace)
    return render_template(
        "ui/rollback.html",
        name=name,
        plan=plan,
        change=change,
        earlier=earlier,
        workspace=workspace,
        title=plan.title() if title is None else title,
        description=workflow().rollback_description(plan) if description is None else description,
        reviewers=reviewers,
        errors=errors or {},
        rule=rule,
    )


@pages.get("/models/<path:name>/rollback")
def rollback_form(name: str):
    target, workspace, to, _ = _args(request.args)
    if not reader().can_read(name, workspace):
        abort(403, "Permission denied: MLflow does not let you read this model")
    return _form(name, target, workspace, to)


@pages.post("/models/<path:name>/rollback")
def open_rollback(name: str):
    target, workspace, to, reviewers = _args(request.form)
    if not reader().can_read(name, workspace):
        abort(403, "Permission denied: MLflow does not let you read this model")
    title, description = request.form.get("title", ""), request.form.get("description", "")
    errors = {}
    if not title.strip():
        errors["title"] = "Give the request a title."
    elif len(title) > TITLE_MAX:
        errors["title"] = f"At most {TITLE_MAX} characters ({len(title)} now)."
    if "\x00" in description or "\x00" in reviewers:
        errors["form"] = "The description or a reviewer name contains a NUL character."
    if not errors:
        named = tuple(r.strip() for r in reviewers.split(",") if r.strip())
        try:
            item, created = workflow().open_rollback(
                name, target, to, current_user(), title, description, workspace, reviewers=named
            )
        except (WorkflowError, RegistryError) as exc:
            errors["form"] = form_message(exc)
        else:
            if not created:
                flash(f"You already have request #{item.id} open for this rollback.")
            return redirect(url_for("ui.request_detail", request_id=item.id), 303)
    return _form(name, target, workspace, to, title, description, reviewers, errors), 400
