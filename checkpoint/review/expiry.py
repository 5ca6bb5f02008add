"""Approvals that expire (a rule's ``approvals_expire_after``).

Whether an approval counts is decided from the clock wherever approvals are counted (the
status line, open → approved, the apply), so it is right at once and after any restart,
whether or not the background work has looked yet. The background work only *records* each
expiry, once: the ``reviews.expired_at`` stamp and its ``approval_expired`` event are written
by one conditional UPDATE's winner (``Store.expire_approval``), in every worker of every
replica without a leader.

Only requests still undecided are looked at (open, approved and waiting to apply, failed and
waiting for a retry): an approval on an applied, rejected or withdrawn request is history, and
its age means nothing. A recorded expiry stands even if the rule later allows longer, as the
log already says so; an approval the rule no longer limits, but whose expiry was not recorded
yet, counts again.

The rule for an approved request whose approvals expire before it applies (it may wait for a
freeze or a scheduled time): the approvals are counted again when its apply claims it, and if
the ones still counting no longer meet the rule, the apply does not happen and the request
goes back to open ("approvals expired before it applied"), for reviewers to approve again.
A break-glass apply is not counted again: it never needed the approvals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from checkpoint.clock import SYSTEM, Clock
from checkpoint.review import batches
from checkpoint.review.durations import format_duration
from checkpoint.review.policy import Policy, Rule
from checkpoint.storage.entities import APPROVED, FAILED, OPEN, PromoteRequest, Review
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on

# The states whose approvals may still matter: undecided, or decided but not yet applied.
UNDECIDED = (OPEN, APPROVED, FAILED)
# How often the background work looks (an expiry is a matter of minutes at the shortest).
INTERVAL = 30.0
# Candidates read per query; a round reads at most this many pages.
PAGE, PAGES = 200, 50


def counting(request: PromoteRequest, rule: Rule, at: datetime) -> tuple[Review, ...]:
    """The approvals of ``request`` that count at ``at`` under ``rule``."""
    return tuple(r for r in request.approvals if not rule.expired(r.created_at, at))


def expired(review: Review, rule: Rule, at: datetime) -> bool:
    """Whether an approval no longer counts because of its age: recorded expired, or past the
    rule's limit at ``at`` (a dismissed approval is dismissed, not expired)."""
    if review.verdict != "approve" or review.dismissed_at is not None:
        return False
    return review.expired_at is not None or rule.expired(review.created_at, at)


@dataclass(frozen=True)
class Standing:
    """An approval's age against its rule, as the request page and the API show it."""

    expired: bool
    expires_at: datetime | None  # when it stops (or stopped) counting; None: it never expires

    def to_json(self) -> dict:
        """The API's fields for one review (additive: ``expired``, ``expires_at``)."""
        return {"expired": self.expired, "expires_at": self.expires_at.isoformat() if self.expires_at else None}


def standing(review: Review, rule: Rule, at: datetime) -> Standing:
    """Whether ``review`` (an approval) has expired at ``at``, and when it does (nothing for a
    rejection or a dismissed approval: those never counted, or stopped for another reason)."""
    if review.verdict != "approve" or review.dismissed_at is not None:
        return Standing(False, None)
    ends = rule.expires_at(review.created_at)
    if review.expired_at is not None and (ends is None or review.expired_at < ends):
        ends = review.expired_at  # recorded under a shorter limit than the rule's now
    return Standing(expired(review, rule, at), ends)


@dataclass
class Expiry:
    """The background task: record every approval that expired, once."""

    store: Store
    policy: Policy
    clock: Clock = SYSTEM

    def run(self) -> list[int]:
        """One round: the ids of the approvals whose expiry this round recorded."""
        limits = [r.approvals_expire_after for r in self.policy.expiring if r.approvals_expire_after is not None]
        if not limits:
            return []
        now = self.clock.now()
        oldest_allowed = now - min(limits)  # nothing younger than the shortest limit can have expired
        done: list[int] = []
        after = 0
        for _ in range(PAGES):
            page = self.store.approvals_before(oldest_allowed, UNDECIDED, after=after, limit=PAGE)
            for request, review in page:
                rule = batches.strictest(  # a batch: the shortest expiry of its changes' rules
                    [self.policy.rule_for(p.model_name, p.target, p.workspace) for p in batches.parts(request)]
                )
                done.extend(record(self.store, request, (review,), rule, now, UNDECIDED))
            if len(page) < PAGE:
                break
            after = page[-1][1].id
        return done


def record(
    store: Store, request: PromoteRequest, approvals: tuple[Review, ...], rule: Rule, at: datetime, states: tuple[str, ...]
) -> list[int]:
    """Record the expiry of those of ``approvals`` (of ``request``) too old at ``at`` under
    ``rule``, each only if no one else has and the request is in one of ``states``; the ids
    this call recorded."""
    limit = rule.approvals_expire_after
    if limit is None:
        return []
    data = {"rule": rule.name, "expire_after": format_duration(limit)}
    done = []
    for review in approvals:
        if not rule.expired(review.created_at, at):
            continue
        if store.expire_approval(review.id, approved_before=at - limit, states=states, data=data):
            done.append(review.id)
            log.info("approval by %s of request #%s expired (older than %s)", review.reviewer, request.id, data["expire_after"])
    return done
