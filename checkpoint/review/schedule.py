"""When an approved request applies: at once, or later because a freeze holds its target
(``freezes.py``) or its ``apply_at`` is ahead; and the background task that applies it then.

The later of the two wins: a request scheduled for Saturday 10:00 under a weekend freeze
waits for the freeze's end, and one scheduled for after the freeze waits for its time. A
request held back stays ``approved`` with what it waits for recorded (``waiting_for``,
``Store.wait``); :class:`Release` (every worker of every replica runs it, no leader) looks at
the waiting ones each round, and for one whose time has come claims it with one conditional
UPDATE (approved → applying, ``Store.release``): the winner applies it, exactly once. All of
it is in the database, so a restart changes nothing: the next round finds the same rows.

Break-glass is the only way past a freeze or a schedule (``Workflow.break_glass``: the
override is written into its event).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from checkpoint.clock import SYSTEM, Clock
from checkpoint.review import batches
from checkpoint.review.freezes import MAX_CHAIN, Hold
from checkpoint.review.policy import Policy
from checkpoint.review.workflow_base import WorkflowError
from checkpoint.storage.entities import PromoteRequest, Waiting

if TYPE_CHECKING:  # the task drives the workflow, which imports this module
    from checkpoint.review.applying import Applying

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on

FREEZE, SCHEDULE = "freeze", "schedule"
ACTOR = "checkpoint"
# How often the background work looks (a freeze ends on the minute; a schedule is to the minute).
INTERVAL = 20.0
PAGE, PAGES = 200, 50
# apply_at further ahead than this is a typo (a year, not a day).
FURTHEST = timedelta(days=366)


def check_apply_at(value: object, at: datetime) -> datetime | None:
    """``apply_at`` as a caller sent it (None, or an ISO timestamp with its offset) as a UTC time
    after ``at``; a 400 naming the field otherwise."""
    if value is None:
        return None

    def bad(why: str) -> WorkflowError:
        return WorkflowError(400, "INVALID_PARAMETER_VALUE", f"apply_at: {why}")

    if not isinstance(value, str):
        raise bad(f"expected an ISO timestamp such as 2026-12-07T08:00:00Z, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise bad(f"{value!r} is not an ISO timestamp such as 2026-12-07T08:00:00Z") from exc
    if moment.tzinfo is None:
        raise bad(f"{value!r} has no offset; say which time it is (2026-12-07T08:00:00Z, or +01:00)")
    moment = moment.astimezone(UTC)
    if moment <= at:
        raise bad(f"{value!r} is in the past (it is {at.isoformat()} now)")
    if moment - at > FURTHEST:
        raise bad(f"{value!r} is more than a year ahead")
    return moment


def waiting_for(policy: Policy, request: PromoteRequest, at: datetime) -> Waiting | None:
    """What holds ``request``'s apply back at ``at`` (the later of its apply_at and the end of
    any freeze then), or None when it may apply now. A batch applies all at once, so a freeze on
    any of its changes holds the whole of it, until no freeze holds any."""
    start = max(at, request.apply_at) if request.apply_at else at
    hold = _frozen(policy, request, start)
    if hold is not None:
        return Waiting(FREEZE, hold[1].until, hold[1].freeze.name)
    if request.apply_at is not None and request.apply_at > at:
        return Waiting(SCHEDULE, request.apply_at, None)
    return None


def _frozen(policy: Policy, request: PromoteRequest, start: datetime) -> tuple[str, Hold] | None:
    """The last freeze (and the target it holds) between ``start`` and the first instant no
    freeze holds any of the request's changes, or None when none holds one at ``start``."""
    found = None
    for _ in range(MAX_CHAIN):
        holds = [(part.target, h) for part in batches.parts(request) if (h := policy.frozen(part.model_name, part.target, start))]
        if not holds:
            break
        found = max(holds, key=lambda pair: pair[1].until)
        start = found[1].until
    return found


def describe(policy: Policy, waiting: Waiting) -> str:
    """ "waiting for freeze 'weekend' to end at Mon 08:00 CET", or "scheduled to apply at ..."."""
    freeze = next((f for f in policy.freezes if f.name == waiting.name), None)
    if waiting.kind == FREEZE:
        when = freeze.ends_local(waiting.until) if freeze else f"{waiting.until.astimezone(UTC):%a %H:%M} UTC"
        return f"waiting for freeze '{waiting.name}' to end at {when}"
    return f"scheduled to apply at {waiting.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def freeze_note(policy: Policy, request: PromoteRequest, at: datetime) -> str | None:
    """For the refusal an MLflow client reads: when the request would apply, if a freeze (or its
    schedule) holds it; None when it would apply as soon as it is approved."""
    waiting = waiting_for(policy, request, at)
    if waiting is None:
        return None
    until = waiting.until.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if waiting.kind == FREEZE:
        freeze = next(f for f in policy.freezes if f.name == waiting.name)
        reason = f" ({freeze.reason})" if freeze.reason else ""
        start = max(at, request.apply_at) if request.apply_at else at
        target = (_frozen(policy, request, start) or (request.target, None))[0]
        return f"freeze '{waiting.name}'{reason} holds {target}: once approved it applies at {until}"
    return f"once approved it applies at {until} (its apply_at)"


@dataclass
class Release:
    """The background task: apply each waiting request whose freeze ended or whose time came,
    once; bring up to date what the others wait for (a freeze added or changed since)."""

    workflow: Applying
    clock: Clock = SYSTEM

    def run(self) -> list[int]:
        """One round: the ids of the requests this round claimed and applied."""
        store, policy = self.workflow.store, self.workflow.policy
        now = self.clock.now()
        released: list[int] = []
        after = 0
        for _ in range(PAGES):
            page = store.waiting_requests(after=after, limit=PAGE)
            for request in page:
                waiting = waiting_for(policy, request, now)
                if waiting is not None:
                    if waiting != request.waiting_for:
                        store.wait(request.id, waiting, actor=ACTOR, data={"reason": describe(policy, waiting)})
                    continue
                assert request.waiting_for is not None  # waiting_requests reads only those
                if store.release(request.id, actor=ACTOR, data={}):
                    log.info("request #%s released (%s ended); applying", request.id, request.waiting_for.kind)
                    self.workflow.apply_claimed(request.id, ACTOR)
                    released.append(request.id)
            if len(page) < PAGE:
                break
            after = page[-1].id
        return released
