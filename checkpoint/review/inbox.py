"""Who a request waits for: the inbox's "waiting for my review".

A user is awaited on a request when it is open, not blocked (every required check passing and
every required status success), they have no review standing on it, it is not their own (unless
its rule allows approving one's own), and either they are named on it (the author's
``reviewers`` or the rule's list, still short of approvals) or the rule in force now lets them
approve (``Policy.may_review``, with MLflow's MANAGE right in ``mlflow`` mode).

The rule in force is the policy file's *now* (it may have changed since the request opened), so
it cannot be a column: the database narrows the candidates (open, not the user's own when no rule
allows self-approval, no standing review by the user, the caller's readable models) and this
module decides on each, newest first, reading at most ``SCAN_MAX`` candidates per page. A page
that stops there is shorter and its cursor goes on from the last candidate read.
"""

from __future__ import annotations

from collections.abc import Callable

from checkpoint.identity import User
from checkpoint.review import batches, expiry, rollback
from checkpoint.review.policy import RightCheck
from checkpoint.storage.entities import OPEN, PromoteRequest

# Candidates read per page at most, and at most per database round trip.
SCAN_MAX = 1000
BATCH = 100


def candidate(workflow, user: User, request: PromoteRequest, right: RightCheck | None) -> bool:
    """The cheap half of :func:`awaits` (no check or status read): open, undecided by ``user``,
    not their own (unless allowed), and they are named on it or the rule lets them approve."""
    if request.state != OPEN or user.anonymous:
        return False
    rule = workflow.rule_of(request)
    at = workflow.clock.now()
    for review in request.reviews:
        if review.reviewer == user.name and review.dismissed_at is None and not expiry.expired(review, rule, at):
            return False  # decided: their approval or rejection stands
    if user.name == request.author and not rule.allow_self_approval:
        return False
    if batches.is_batch(request):
        # A batch's rule is its changes' combined (its reviewers, everyone any change lists):
        # only one whom every change's own rule lets approve is awaited.
        return all(_may_review(workflow, user, part, right) for part in batches.parts(request))
    if user.name in request.named_reviewers or user.name in rule.reviewers:
        return True
    return _may_review(workflow, user, request, right)


def _may_review(workflow, user: User, request: PromoteRequest, right: RightCheck | None) -> bool:
    refusal = workflow.policy.may_review(
        user,
        request.author,
        request.model_name,
        request.target,
        request.named_reviewers,
        right,
        request.workspace,
        rollback.verified(request),
    )
    return refusal is None


def awaits(workflow, user: User, request: PromoteRequest, checks, standing, right: RightCheck | None) -> bool:
    """Whether ``request`` waits for ``user``'s review now (``checks``, ``standing``: its check
    results and statuses, read for the page; ``right``: the MANAGE check, or None): a candidate,
    not blocked, and still short of approvals (or ``user`` still awaited by name)."""
    if not candidate(workflow, user, request, right):
        return False
    status = workflow.status(request, checks, standing)
    if status.blocked_by or status.blocked_by_statuses:
        return False
    return user.name in status.awaited or not status.met


def _memo(workflow) -> Callable[[str], RightCheck | None]:
    """The MANAGE check per workspace, each (workspace, user, model) asked once for one page."""
    seen: dict[tuple[str, str, str], bool] = {}

    def for_workspace(workspace: str) -> RightCheck | None:
        right = workflow._review_right(workspace)
        if right is None:
            return None

        def check(user: User, model: str) -> bool:
            key = (workspace, user.name, model)
            if key not in seen:
                seen[key] = bool(right(user, model))
            return seen[key]

        return check

    return for_workspace


def awaiting(
    workflow,
    user: User,
    *,
    can_read: Callable[[PromoteRequest], bool],
    before: int | None = None,
    limit: int = 50,
    workspace: str | None = None,
    scan: int = SCAN_MAX,
    **filters: str | None,
) -> tuple[list[PromoteRequest], int | None]:
    """A page of the requests awaiting ``user``, newest first, and the cursor for the next page
    (``filters``: the list's own, ``model``, ``target``, ``author``, ``search``)."""
    if user.anonymous:
        return [], None
    rules = (*workflow.policy.rules, workflow.policy.default)
    self_allowed = any(r.allow_self_approval or (r.rollback is not None and r.rollback.allow_self_approval) for r in rules)
    rights = _memo(workflow)
    found: list[PromoteRequest] = []
    read = 0
    cursor = before
    size = max(2 * limit, 20)  # a count to 10 reads 20 first, then twice as many each round
    while read < scan:
        raw, more = workflow.store.list_requests(
            state=OPEN,
            before=cursor,
            limit=min(BATCH, scan - read, size),
            workspace=workspace,
            undecided_by=user.name,
            not_author=None if self_allowed else user.name,
            **filters,
        )
        # The policy first (no database read), then what MLflow lets the caller read, then the
        # checks and statuses of the few left, in one query each.
        batch = [item for item in raw if candidate(workflow, user, item, rights(item.workspace)) and can_read(item)]
        checks, standing = workflow.checks_of(batch), workflow.statuses_of(batch)
        for item in batch:
            if awaits(workflow, user, item, checks[item.id], standing[item.id], rights(item.workspace)):
                found.append(item)
                if len(found) == limit:
                    return found, item.id
        read += len(raw)
        if more is None:
            return found, None
        cursor, size = more, size * 2
    return found, cursor


def awaited(
    workflow,
    user: User,
    requests: list[PromoteRequest],
    checks: dict[int, list],
    standing: dict[int, list],
) -> set[int]:
    """Which of ``requests`` (open ones, read for a page, with their ``checks`` and ``standing``
    statuses) wait for ``user``'s review now: the inbox's rule, asked of a few known requests."""
    rights = _memo(workflow)
    return {
        item.id
        for item in requests
        if awaits(workflow, user, item, checks.get(item.id, []), standing.get(item.id, []), rights(item.workspace))
    }
