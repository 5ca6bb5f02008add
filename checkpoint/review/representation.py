"""A promote request as readers outside Checkpoint see it: one set of names and values for the
JSON API (``web/api.py``), the payload of an HTTP check (``checking.py``) and a webhook body
(``events/webhooks/payload.py``). Each adds only what is its own (the API its checks and
history, a check its diff summary, a webhook the event), so a field means the same everywhere.

Plain dictionaries: every caller serialises them its own way (Flask's JSON, ``json.dumps``
signed, with sorted keys), and the order below is the order an HTTP check receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from checkpoint.storage.entities import PromoteRequest

if TYPE_CHECKING:  # for the hints only: the webhooks import this module without the policy
    from checkpoint.review.policy import Rule, Status


def workspace_label(workspace: str | None) -> str:
    """The MLflow workspace as readers name it: ``""`` (the default one) is ``"default"``."""
    return workspace or "default"


def approvals(status: Status) -> dict:
    """Where the approvals stand: how many (counting now), how many needed, by whom, who is still
    awaited, and whose approval expired (its rule's ``approvals_expire_after``)."""
    return {
        "count": status.count,
        "required": status.required,
        "approvers": list(status.approvers),
        "awaited": list(status.awaited),
        "met": status.met,
        "expired": list(status.expired),
    }


def request_fields(request: PromoteRequest, status: Status, rule: Rule, links: Mapping[str, str | None]) -> dict:
    """The request now: what it changes, where it stands, and under which rule.

    ``links`` are the addresses the caller hands out (``url``, and the API's ``api_url``),
    placed right after the id.
    """
    return {
        "id": request.id,
        **links,
        "kind": request.kind,
        "model": request.model_name,
        "workspace": workspace_label(request.workspace),
        "version": request.version,
        "target": request.target,
        "change": request.change,
        "title": request.title,
        "description": request.description,
        "author": request.author,
        "state": request.state,
        "state_reason": request.state_reason,
        "challenger": request.challenger or None,
        "champion": request.champion,
        "approvals": approvals(status),
        "named_reviewers": list(request.named_reviewers),
        "rule": {"name": rule.name, "description": rule.describe()},
        "created_at": request.created_at.isoformat(),
        "updated_at": request.updated_at.isoformat(),
        "rollback": getattr(request, "rollback", None),  # a rollback's record (review/rollback.py); None for any other
    } | batch_fields(request)


def batch_fields(request: PromoteRequest) -> dict:
    """A batch request's ``changes`` (in the order they apply, each with its model, target,
    snapshots and rule), and ``change`` null: no one change speaks for a batch. {} for a
    single-change request, which keeps ``change`` as it always had."""
    if getattr(request, "changes", None) is None:
        return {}
    out = []
    for i, part in enumerate(request.changes or ()):
        change = part["change"]
        out.append(
            {
                "index": i,
                "kind": change.get("kind"),
                "model": change.get("name"),
                "workspace": workspace_label(change.get("workspace") or ""),
                "target": part.get("target"),
                "title": part.get("title"),
                "change": change,
                "challenger": part.get("challenger") or None,
                "champion": part.get("champion"),
                "rule": part.get("rule"),
            }
        )
    return {"change": None, "changes": out}


def event_fields(
    *,
    model: str,
    workspace: str | None,
    target: str | None,
    version: str | None,
    title: str | None,
    author: str | None,
    state: str | None,
) -> dict:
    """The request as one event saw it (a webhook body): the same names and values as
    :func:`request_fields`, taken from the stored event rather than the live request, since
    every attempt of one delivery must carry the same body. None where the event has no
    request (an outside change)."""
    return {
        "model": model,
        "workspace": workspace_label(workspace),
        "target": target,
        "version": version,
        "title": title,
        "author": author,
        "state": state,
    }
