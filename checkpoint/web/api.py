"""The JSON API under ``/checkpoint/api/v1``: thin handlers over the workflow.

Errors use MLflow's shape ``{"error_code", "message"}``: 400 for a bad field, 404 for an
unknown id, 409 for the wrong state, 422 for a change that cannot be requested.
"""

from __future__ import annotations

from importlib import resources

import yaml
from flask import Blueprint, current_app, jsonify, request

from checkpoint import urls
from checkpoint.errors import CheckpointError
from checkpoint.review import batches, expiry, inbox
from checkpoint.review.changes import PARSE_KINDS, ChangeError, canonical_workspace, lone_surrogate, parse
from checkpoint.review.representation import request_fields, workspace_label
from checkpoint.review.statuses import Latest
from checkpoint.review.visibility import request_keys
from checkpoint.review.workflow import NAME_MAX, USER_MAX
from checkpoint.storage.entities import OPEN, STATES, WAITING, CheckResult, NotFound, PromoteRequest
from checkpoint.tokens import BREAK_GLASS, REQUEST, REVIEW
from checkpoint.web import panel
from checkpoint.web.context import (
    csrf_for_cookie_callers,
    current_services,
    current_user,
    make_request_cursor,
    public_base,
    reader,
    request_cursor,
    workflow,
)
from checkpoint.web.inbox import awaiting_count
from checkpoint.web.scopes import token_scope

bp = Blueprint("api", __name__, url_prefix="/checkpoint/api/v1")

# Wire names of change kinds: MLflow's route names plus the model-level tag variants.
API_KINDS = PARSE_KINDS
# ``?author=me`` and ``?awaiting=me`` name the caller (a token's owner for a token caller).
ME = "me"


def readable_request(request_id: int) -> PromoteRequest:
    """The request, if its model is one the caller may read; else exactly as if it did not exist."""
    item = workflow().store.get(request_id)
    if not reader().can_read_request(item):  # a batch: every model it changes
        raise NotFound(f"promote request #{request_id} does not exist")
    return item


def refuse_unreadable(change) -> None:
    """A caller who may not read the model gets MLflow's answer, not a request."""
    if not reader().can_read_change(change):
        raise CheckpointError(403, "PERMISSION_DENIED", "Permission denied: MLflow does not let you read this model")


@bp.before_request
def _readable_request():
    """Every route under ``/requests/<id>`` answers 404 for a request the caller may not read."""
    request_id = (request.view_args or {}).get("request_id")
    if request_id is not None:
        readable_request(request_id)


bp.before_request(csrf_for_cookie_callers)


def json_body(allowed: set[str]) -> dict:
    """The call's JSON object, refused with a clear 4xx unless it is one and names only ``allowed`` keys
    (the API's routes and the other API modules share it)."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(request.get_data(cache=True)) >= limit:
        # A chunked body is cut at the limit by werkzeug without an error: it would read as bad JSON.
        raise CheckpointError(413, "BAD_REQUEST", f"the request body is too large: at most {limit} bytes")
    try:
        data = request.get_json(silent=True)
    except RecursionError as exc:  # silent=True swallows only ValueError: this was a 500
        raise CheckpointError(400, "BAD_REQUEST", "the request body is JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise CheckpointError(400, "BAD_REQUEST", "the request body must be a JSON object (Content-Type: application/json)")
    bad = lone_surrogate(data)
    if bad is not None:  # no database stores one: it was a 500 at the insert
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"{bad!r} holds a lone surrogate escape (\\ud800-\\udfff)")
    unknown = set(data) - allowed
    if unknown:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"unknown field(s): {', '.join(sorted(unknown))}")
    return data


def _text(data: dict, key: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"{key} must be a string")
    return value


def workspace_arg(raw: str | None) -> str | None:
    """A ``workspace`` query or body field: None when absent, else canonical ("" = the default one);
    a name MLflow would refuse is a ``ChangeError`` (400)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "workspace must be a string")
    return canonical_workspace(raw)


def request_json(
    item: PromoteRequest, full: bool = False, checks: list[CheckResult] | None = None, standing: list[Latest] | None = None
) -> dict:
    """The API's view of a request (the same data the pages show); ``checks`` and ``standing``
    (its statuses) when read already."""
    checks = workflow().check_results(item) if checks is None else checks
    standing = workflow().statuses_standing(item) if standing is None else standing
    status = workflow().status(item, checks, standing)
    rule = workflow().rule_of(item)
    base = public_base()
    links = {"url": urls.request_page(base, item.id), "api_url": urls.request_api(base, item.id)}
    out = request_fields(item, status, rule, links)
    waiting = item.waiting_for or workflow().soak_waiting(item, checks)  # approved and held, or open and soaking
    out |= {
        "applied_at": item.applied_at.isoformat() if item.applied_at else None,
        "apply_result": item.apply_result,
        "checks": [check_json(c) for c in checks],
        "blocked_by_checks": list(status.blocked_by),
        "statuses": [s.to_json() for s in standing],
        "blocked_by_statuses": list(status.blocked_by_statuses),
        "apply_at": item.apply_at.isoformat() if item.apply_at else None,
        "waiting_for": waiting.to_json() if waiting else None,
    }
    if full:
        at = current_services().clock.now()
        out["reviews"] = [
            {
                "id": r.id,
                "reviewer": r.reviewer,
                "verdict": r.verdict,
                "comment": r.comment,
                "created_at": r.created_at.isoformat(),
                "dismissed": r.dismissed_at is not None,
                "dismissed_reason": r.dismissed_reason,
                "digest": r.digest,
                **expiry.standing(r, rule, at).to_json(),
            }
            for r in item.reviews
        ]
        out["comments"] = [
            {"id": c.id, "author": c.author, "body": c.body, "created_at": c.created_at.isoformat()} for c in item.comments
        ]
        out["events"] = [
            {"id": e.id, "kind": e.kind, "actor": e.actor, "data": e.data, "created_at": e.created_at.isoformat()}
            for e in item.events
        ]
    return out


def check_json(check: CheckResult) -> dict:
    return {
        "name": check.name,
        "kind": check.kind,
        "required": check.required,
        "status": check.status,
        "reason": check.reason,
        "trigger": check.trigger or None,
        "evaluated_at": check.evaluated_at.isoformat() if check.evaluated_at else None,
    }


# -- routes ------------------------------------------------------------------------------


@bp.get("/requests")
def list_requests():
    """Newest first, filtered; ``next_cursor`` pages on."""
    args = request.args
    state = args.get("state") or None
    if state and state not in (*STATES, WAITING):  # waiting: approved, held by a freeze or apply_at
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"state must be one of {', '.join((*STATES, WAITING))}")
    limit_raw = args.get("limit", "50")
    # isdigit() alone lets "²" through, which int() then refuses (a 500).
    if not (limit_raw.isascii() and limit_raw.isdigit()) or not 1 <= int(limit_raw) <= 200:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "limit must be a whole number from 1 to 200")
    for key in ("model", "target", "author", "q"):
        if "\x00" in args.get(key, ""):  # PostgreSQL cannot even compare a text with NUL in it
            raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"{key} must not contain NUL characters")
    author = args.get("author") or None
    awaiting = args.get("awaiting")
    if awaiting is not None and awaiting != "me":
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "awaiting must be 'me' (the requests waiting for your review)")
    if (awaiting or author == ME) and current_user().anonymous:
        raise CheckpointError(401, "UNAUTHENTICATED", "sign in (or pick a name) to list your own requests or reviews")
    if author == ME:
        author = current_user().name
    if awaiting:
        if state and state != OPEN:
            raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "awaiting=me lists open requests: state must be open or absent")
        items, last = inbox.awaiting(
            workflow(),
            current_user(),
            can_read=lambda item: reader().can_read_request(item),
            before=request_cursor(args.get("cursor")),
            limit=int(limit_raw),
            workspace=workspace_arg(args.get("workspace")),
            model=args.get("model") or None,
            target=args.get("target") or None,
            author=author,
            search=args.get("q") or None,
        )
    else:
        items, last = reader().visible_page(
            lambda hidden: workflow().store.list_requests(
                state=state,
                model=args.get("model") or None,
                target=args.get("target") or None,
                author=author,
                search=args.get("q") or None,
                before=request_cursor(args.get("cursor")),
                limit=int(limit_raw),
                hidden=hidden,
                workspace=workspace_arg(args.get("workspace")),
            ),
            request_keys,
        )
    checks, standing = workflow().checks_of(items), workflow().statuses_of(items)
    return jsonify(
        requests=[request_json(i, checks=checks[i.id], standing=standing[i.id]) for i in items],
        next_cursor=make_request_cursor(last),
    )


@bp.post("/requests")
@token_scope(REQUEST)
def create_request():
    """Open a request explicitly (pipelines): a change (or ``changes``, a batch applied all or
    nothing, every one parsed before anything is stored), a title, a description."""
    data = json_body({"change", "changes", "title", "description", "reviewers", "apply_at"})
    reviewers = data.get("reviewers", [])
    if not isinstance(reviewers, list) or not all(isinstance(r, str) for r in reviewers):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "reviewers must be a list of user names")
    if any(len(r) > USER_MAX or "\x00" in r for r in reviewers):  # a name no user can have was stored as asked
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"reviewers: a name is at most {USER_MAX} characters, no NUL")
    if "changes" in data:
        return _create_batch(data, reviewers)
    change_data = data.get("change")
    if not isinstance(change_data, dict):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "change must be an object with a 'kind'")
    if change_data.get("kind") not in API_KINDS:
        raise CheckpointError(422, "INVALID_PARAMETER_VALUE", f"change.kind must be one of {', '.join(API_KINDS)}")
    try:
        change = parse(change_data)
    except ChangeError as exc:
        raise CheckpointError(422, "INVALID_PARAMETER_VALUE", f"change: {exc}") from exc
    refuse_unreadable(change)
    title, description = _text(data, "title", ""), _text(data, "description", "")
    item, created = workflow().open(
        change, current_user(), title or "", description or "", tuple(reviewers), apply_at=data.get("apply_at")
    )
    body = request_json(item, full=True)
    body["created"] = created
    return jsonify(body), 201 if created else 200


def _create_batch(data: dict, reviewers: list[str]):
    """A batch request: ``changes`` instead of ``change`` (batches.py says what a batch may hold)."""
    if "change" in data:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "give either change or changes, not both")
    if data.get("apply_at") is not None:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "apply_at: a batch request applies once approved")
    items = batches.parse_all(data.get("changes"))
    for change in items:
        refuse_unreadable(change)
    title, description = _text(data, "title", ""), _text(data, "description", "")
    item, created = workflow().open_batch(items, current_user(), title or "", description or "", tuple(reviewers))
    body = request_json(item, full=True)
    body["created"] = created
    return jsonify(body), 201 if created else 200


@bp.post("/models/<path:name>/rollback")
@token_scope(REQUEST)
def open_rollback(name: str):
    """Open the request that puts back an earlier holder of ``target`` (``to``, or the previous
    one): an ordinary promote request whose ``rollback`` record Checkpoint builds from its log."""
    data = json_body({"target", "to", "title", "description", "workspace"})
    target, to = _text(data, "target"), data.get("to")
    if not target:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "target is required: alias:NAME or stage:NAME")
    if isinstance(to, int) and not isinstance(to, bool):
        to = str(to)
    if to is not None and (not isinstance(to, str) or not to.strip()):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "to must be a version number (a string) or null")
    workspace = workspace_arg(data.get("workspace")) or ""
    if not reader().can_read(name, workspace):
        raise CheckpointError(403, "PERMISSION_DENIED", "Permission denied: MLflow does not let you read this model")
    title, description = _text(data, "title", ""), _text(data, "description", "")
    item, created = workflow().open_rollback(name, target, to, current_user(), title or "", description or "", workspace)
    body = request_json(item, full=True)
    body["created"] = created
    return jsonify(body), 201 if created else 200


@bp.get("/requests/<int:request_id>")
def get_request(request_id: int):
    item = readable_request(request_id)
    out = request_json(item, full=True)
    behaviours = current_services().behaviours
    out["behaviour"] = behaviours.for_request(item) if behaviours is not None else None
    return jsonify(out)


@bp.post("/requests/<int:request_id>/behaviour")
@token_scope(REQUEST)
def rerun_behaviour(request_id: int):
    """Run the request's behavioural diff again when it ended in an error, or read a finished
    one's datasets again (scored again only where a file changed; the same pair on the same
    bytes is never scored twice); answers its state now, never waits."""
    item = readable_request(request_id)
    behaviours = current_services().behaviours
    shown = behaviours.rerun(item) if behaviours is not None else None
    if shown is None:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"request #{request_id} is not about a model version")
    return jsonify(shown), 202 if shown["state"] in ("pending", "running") else 200


@bp.patch("/requests/<int:request_id>")
@token_scope(REQUEST)
def edit_request(request_id: int):
    data = json_body({"title", "description"})
    item = workflow().edit(request_id, current_user(), _text(data, "title"), _text(data, "description"))
    return jsonify(request_json(item, full=True))


@bp.post("/requests/<int:request_id>/withdraw")
@token_scope(REQUEST)
def withdraw_request(request_id: int):
    return jsonify(request_json(workflow().withdraw(request_id, current_user()), full=True))


@bp.post("/requests/<int:request_id>/reviews")
@token_scope(REVIEW)
def review_request(request_id: int):
    data = json_body({"verdict", "comment", "apply_at"})
    verdict = _text(data, "verdict")
    if verdict not in ("approve", "reject"):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "verdict must be 'approve' or 'reject'")
    comment = _text(data, "comment", "") or ""
    item = workflow().review(request_id, current_user(), verdict, comment, apply_at=data.get("apply_at"))
    return jsonify(request_json(item, full=True))


@bp.post("/requests/<int:request_id>/cancel")
@token_scope(REQUEST)
def cancel_request(request_id: int):
    """Call off a scheduled or waiting apply (the author, a reviewer of the request, an admin)."""
    return jsonify(request_json(workflow().cancel(request_id, current_user()), full=True))


@bp.post("/requests/<int:request_id>/comments")
@token_scope(REQUEST)
def comment_request(request_id: int):
    data = json_body({"body"})
    body = _text(data, "body")
    if body is None:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "body is required")
    return jsonify(request_json(workflow().comment(request_id, current_user(), body), full=True)), 201


@bp.post("/requests/<int:request_id>/checks")
@token_scope(REQUEST)
def rerun_checks(request_id: int):
    """Evaluate the request's checks again (local ones now, HTTP ones queued)."""
    return jsonify(request_json(workflow().rerun_checks(request_id, current_user()), full=True))


@bp.post("/requests/<int:request_id>/retry")
@token_scope(REVIEW)
def retry_request(request_id: int):
    return jsonify(request_json(workflow().retry(request_id, current_user()), full=True))


@bp.post("/requests/<int:request_id>/break-glass")
@token_scope(BREAK_GLASS)
def break_glass(request_id: int):
    """An admin applies the request now, without the approvals; the reason is required."""
    data = json_body({"reason"})
    reason = _text(data, "reason")
    if not reason or not reason.strip():
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "reason is required for break-glass")
    return jsonify(request_json(workflow().break_glass(request_id, current_user(), reason), full=True))


@bp.get("/summary")
def summary():
    """What the panel inside MLflow shows: open counts, and the open requests of one model.

    Answered with an ETag so the panel's periodic refresh is a cheap 304.
    """
    model = request.args.get("model") or None
    workspace = workspace_arg(request.args.get("workspace"))
    store = workflow().store
    hidden = reader().hidden(store.request_models(state="open"))  # counts leave out what the caller may not read
    items = store.list_requests(state="open", model=model, limit=20, hidden=hidden, workspace=workspace)[0] if model else []
    awaiting, more = awaiting_count()
    response = jsonify(
        awaiting_me=awaiting,
        awaiting_me_more=more,
        open=store.count(state="open", hidden=hidden),
        model=model,
        open_for_model=store.count(state="open", model=model, hidden=hidden, workspace=workspace) if model else None,
        requests=panel.items_json(items, model),
    )
    response.headers["Cache-Control"] = "no-cache"
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/which")
def which():
    """Which version holds a stage or an alias right now (for pipelines), in MLflow workspace
    ``workspace`` (the default one when absent)."""
    model, stage, alias = request.args.get("model"), request.args.get("stage"), request.args.get("alias")
    workspace = workspace_arg(request.args.get("workspace")) or ""
    if not model or bool(stage) == bool(alias):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "give model and exactly one of stage or alias")
    for key, value in (("model", model), ("alias", alias), ("stage", stage)):
        if value and ("\x00" in value or len(value) > NAME_MAX):  # no model or alias can hold such a name
            raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"{key} must be at most {NAME_MAX} characters without NUL")
    if not reader().can_read(model, workspace):
        raise CheckpointError(403, "PERMISSION_DENIED", "Permission denied: MLflow does not let you read this model")
    if request.args.get("at") is not None:  # a past moment: answered from the timeline, not MLflow
        return _which_at(model, workspace, stage, alias, request.args["at"])
    registry = workflow().registry_for(workspace)
    if alias:
        holder = registry.alias_holder(model, alias)
        holders = [holder] if holder else []
    else:
        from checkpoint.review.governance import STAGES, canonical_stage

        assert stage is not None  # exactly one of stage and alias was given (checked above)
        if canonical_stage(stage) not in STAGES:  # a typo must not read as "nobody holds it"
            raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"stage must be one of {', '.join(STAGES)}")
        holders = sorted(registry.stage_holders(model, canonical_stage(stage)), key=lambda v: -int(v.version))
    return jsonify(
        model=model,
        workspace=workspace_label(workspace),
        stage=stage,
        alias=alias,
        versions=[v.version for v in holders],
        version=holders[0].version if holders else None,
    )


def _which_at(model: str, workspace: str, stage: str | None, alias: str | None, at: str):
    from checkpoint.review.governance import STAGES, canonical_stage
    from checkpoint.web.timeline import which_at_json

    if stage is not None and canonical_stage(stage) not in STAGES:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"stage must be one of {', '.join(STAGES)}")
    target = f"stage:{canonical_stage(stage)}" if stage is not None else f"alias:{alias}"
    return jsonify(
        model=model, workspace=workspace or "default", stage=stage, alias=alias, **which_at_json(model, workspace, target, at)
    )


@bp.get("/openapi.json")
def openapi():
    """The API's OpenAPI document (kept next to the code, tested against the routes)."""
    spec = yaml.safe_load(resources.files("checkpoint").joinpath("openapi.yaml").read_text())
    return jsonify(spec)
