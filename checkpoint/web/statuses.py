"""The statuses API: CI posts ``{context, state, target_url, description}`` on a request or on a
model version, and reads their history. Thin handlers over ``Workflow.post_*_status``.

Who may post is decided in one place, :func:`may_post_status`.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from checkpoint.errors import CheckpointError
from checkpoint.identity import User
from checkpoint.storage.entities import PostedStatus
from checkpoint.tokens import STATUS
from checkpoint.web.api import json_body, readable_request, request_json, workspace_arg
from checkpoint.web.context import csrf_for_cookie_callers, current_user, reader, workflow
from checkpoint.web.scopes import token_scope

api = Blueprint("statuses", __name__, url_prefix="/checkpoint/api/v1")
api.before_request(csrf_for_cookie_callers)

FIELDS = {"context", "state", "target_url", "description"}


# ==== THE PERMISSION OF THE STATUS ROUTES ==========================================================
# Posting a status is the author's side of a request, not a reviewer's power: whoever may open a
# request for the model may post one (signed in, and MLflow lets them read the model; a copy's
# request also needs its source readable, which ``readable_request`` already asks). Whether a
# status *counts* for a rule's ``required_statuses: [{context, from}]`` is the policy's business
# (``review/statuses.py``), not this function's.
# API tokens (issue 16 §1): a token must carry the ``status`` scope, which ``@token_scope(STATUS)``
# on each posting route asks before the view runs (web/scopes.py).
def may_post_status(user: User, model: str, workspace: str) -> str | None:
    """Why ``user`` may not post a status about ``model`` in ``workspace``, or None."""
    if user.anonymous:
        return "sign in (or use a token) to post a status"
    if not reader().can_read(model, workspace):
        return "Permission denied: MLflow does not let you read this model"
    return None


# ==================================================================================================


def _refuse(user: User, model: str, workspace: str) -> None:
    why = may_post_status(user, model, workspace)
    if why is not None:
        raise CheckpointError(403, "PERMISSION_DENIED", why)


def status_json(status: PostedStatus) -> dict:
    """One posted status, as the history lists it."""
    return {
        "id": status.id,
        "context": status.context,
        "state": status.state,
        "target_url": status.target_url or None,
        "description": status.description,
        "posted_by": status.actor,
        "created_at": status.created_at.isoformat(),
        "scope": status.scope,
        "model": status.model_name,
        "version": status.version,
        "digest": status.digest,
        "request_id": status.request_id,
    }


@api.post("/requests/<int:request_id>/statuses")
@token_scope(STATUS)
def post_request_status(request_id: int):
    item = readable_request(request_id)  # 404 for a request the caller may not read
    data = json_body(FIELDS)
    user = current_user()
    _refuse(user, item.model_name, item.workspace)
    posted = workflow().post_request_status(
        request_id, user, data.get("context"), data.get("state"), data.get("target_url"), data.get("description")
    )
    return jsonify(status=status_json(posted), request=request_json(workflow().store.get(request_id))), 201


@api.get("/requests/<int:request_id>/statuses")
def request_statuses(request_id: int):
    item = readable_request(request_id)
    standing = workflow().statuses_standing(item)
    history = workflow().request_status_history(request_id)
    return jsonify(
        statuses=[s.to_json() for s in standing],
        blocked_by_statuses=list(workflow().status(item, standing=standing).blocked_by_statuses),
        history=[status_json(s) for s in history],
    )


def _version_args(source) -> str:
    return workspace_arg(source.get("workspace")) or ""


@api.post("/models/<path:name>/versions/<version>/statuses")
@token_scope(STATUS)
def post_version_status(name: str, version: str):
    data = json_body(FIELDS | {"workspace"})
    workspace = _version_args(data) if "workspace" in data else _version_args(request.args)
    user = current_user()
    _refuse(user, name, workspace)
    posted = workflow().post_version_status(
        workspace, name, version, user, data.get("context"), data.get("state"), data.get("target_url"), data.get("description")
    )
    return jsonify(status=status_json(posted)), 201


@api.get("/models/<path:name>/versions/<version>/statuses")
def version_statuses(name: str, version: str):
    workspace = _version_args(request.args)
    if not reader().can_read(name, workspace):
        raise CheckpointError(403, "PERMISSION_DENIED", "Permission denied: MLflow does not let you read this model")
    history = workflow().store.version_statuses(workspace, name, version)
    latest: dict[str, PostedStatus] = {}
    for s in history:  # newest first: the first of each context stands (for the version's current files or not)
        latest.setdefault(s.context, s)
    return jsonify(statuses=[status_json(latest[c]) for c in sorted(latest)], history=[status_json(s) for s in history])
