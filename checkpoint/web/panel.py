"""What the panel inside MLflow's UI says of each open request of the model in view (the
``requests`` of ``/summary``): where its checks stand, its approvals, and whether it waits for
the viewer's review, so a reviewer sees on MLflow's own page what needs them and why.

Read for at most one page of requests (``/summary`` lists 20): checks and statuses in one query
each, "awaits the viewer" by the inbox's own rule (``review/inbox.py``).
"""

from __future__ import annotations

from checkpoint import urls
from checkpoint.review import batches, inbox
from checkpoint.review.checks import PASS, PENDING
from checkpoint.storage.entities import PromoteRequest
from checkpoint.web.context import current_user, public_base, workflow


def items_json(requests: list[PromoteRequest], model: str | None = None) -> list[dict]:
    """The panel's view of ``requests`` (open ones), in their order; a batch's target and version
    are those of its change about ``model`` (the model in view)."""
    flow = workflow()
    checks, standing = flow.checks_of(requests), flow.statuses_of(requests)
    mine = inbox.awaited(flow, current_user(), requests, checks, standing)
    base = public_base()
    out = []
    for item in requests:
        results = checks[item.id]
        status = flow.status(item, results, standing[item.id])
        shown = next((p for p in batches.parts(item) if p.model_name == model), item)
        out.append(
            {
                "id": item.id,
                "title": item.title,
                "author": item.author,
                "target": shown.target,
                "version": shown.version,
                "url": urls.request_page(base, item.id),
                "checks": {
                    "total": len(results),
                    "passing": sum(1 for c in results if c.status == PASS),
                    "failing": [c.name for c in results if c.status not in (PASS, PENDING)],
                    "pending": [c.name for c in results if c.status == PENDING],
                },
                "approvals": {"count": status.count, "required": status.required, "awaited": list(status.awaited)},
                "blocked_by": [*status.blocked_by, *status.blocked_by_statuses],
                "awaiting_me": item.id in mine,
            }
        )
    return out
