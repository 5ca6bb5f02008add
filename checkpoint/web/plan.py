"""``POST /checkpoint/api/v1/plan``: what differs between a desired state and MLflow now.

Read-only (a POST only because the desired state is a document): it reads MLflow through the
registry adapter and the open requests from the store, and writes nothing. The body is
``{"desired": <the file's JSON form>}``; the answer is the plan (``review/desired/planning.py``,
its shape documented in docs/pipelines.md). A file Checkpoint cannot read is a 400 whose
``problems`` name each key.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from checkpoint import urls
from checkpoint.review import desired
from checkpoint.review.desired.planning import HOLDING
from checkpoint.storage.entities import PromoteRequest
from checkpoint.tokens import READ
from checkpoint.web.api import json_body
from checkpoint.web.context import csrf_for_cookie_callers, public_base, reader, workflow
from checkpoint.web.scopes import token_scope

api = Blueprint("plan_api", __name__, url_prefix="/checkpoint/api/v1")
api.before_request(csrf_for_cookie_callers)


def _holding(workspace: str, model: str, target: str) -> list[PromoteRequest]:
    store = workflow().store
    found: list[PromoteRequest] = []
    for state in HOLDING:
        found += store.list_requests(state=state, model=model, target=target, workspace=workspace, limit=200)[0]
    return found


@api.post("/plan")
@token_scope(READ)  # a read, posted only because the desired state is a document
def plan():
    """Compare ``desired`` with MLflow: one entry per declared target, with the changes that would
    make MLflow match and the requests still holding the target."""
    state = desired.from_json(json_body({"desired"}).get("desired"))
    flow, base = workflow(), public_base()
    reads = desired.Reads(
        registry_for=flow.registry_for,
        holding_requests=_holding,
        can_read=reader().can_read,
        request_url=lambda request_id: urls.request_page(base, request_id),
        digest_max_bytes=flow.digest_max_bytes,
    )
    return jsonify(desired.plan(state, reads).to_json())
