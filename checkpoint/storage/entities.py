"""What the store hands out: plain, frozen entities (no session, no lazy loading), the states a
request and a delivery move through, and the kinds of event the log records.

Nothing here touches the database; the workflow, the views and the webhooks import their
states and entities from here, not from the persistence adapter (``store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from checkpoint.clock import SYSTEM
from checkpoint.errors import CheckpointError

OPEN, APPROVED, APPLYING, APPLIED, FAILED, REJECTED, WITHDRAWN = (
    "open",
    "approved",
    "applying",
    "applied",
    "failed",
    "rejected",
    "withdrawn",
)
STATES = (OPEN, APPROVED, APPLYING, APPLIED, FAILED, REJECTED, WITHDRAWN)
# Not a state of its own: an approved request that waits for a freeze or its apply_at (the list filter).
WAITING = "waiting"
ACTIVE = (OPEN, APPROVED, APPLYING, FAILED)

# Ids are INTEGER columns (32-bit on PostgreSQL). An id from a URL or a cursor outside
# 1..MAX_ID names no request; sent to the database it would fail (out of range on
# PostgreSQL, OverflowError in SQLite's driver) and answer 500 instead of 404.
MAX_ID = 2**31 - 1

# A pending check's reason: waiting for the background thread, or being evaluated by one
# (then ``evaluated_at`` is when it was claimed; the claim lapses after the caller's lease).
CHECK_QUEUED, CHECK_RUNNING = "queued", "running"

# A webhook delivery's states (``failed``: given up on after the last retry).
PENDING, SENDING, DELIVERED, GAVE_UP = "pending", "sending", "delivered", "failed"
DELIVERY_STATES = (PENDING, SENDING, DELIVERED, GAVE_UP)
UNSENT = (PENDING, SENDING)


class EventKind(StrEnum):
    """The kinds of event in the log. The values are what is stored, signed into the chain,
    sent to webhooks and answered by the API: never change one."""

    OPENED = "opened"
    EDITED = "edited"
    COMMENTED = "commented"
    REVIEW_APPROVED = "review_approved"
    REVIEW_REJECTED = "review_rejected"
    APPROVALS_DISMISSED = "approvals_dismissed"
    SNAPSHOTS_REFRESHED = "snapshots_refreshed"
    CHECK_FAILED = "check_failed"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    BREAK_GLASS = "break_glass"
    RETRIED = "retried"
    APPLYING = "applying"
    APPLIED = "applied"
    APPLY_FAILED = "apply_failed"
    REOPENED = "reopened"
    APPROVAL_EXPIRED = "approval_expired"  # one approval grew older than its rule's approvals_expire_after
    SCHEDULED = "scheduled"  # its author or a reviewer set apply_at: the time it is to apply
    WAITING = "waiting"  # approved, but a freeze or its apply_at holds the apply back
    RELEASED = "released"  # the freeze ended or apply_at came: the background work applies it now
    CANCELLED = "cancelled"  # a scheduled or waiting apply was called off (the request is withdrawn)
    STATUS_CHANGED = "status_changed"  # CI posted a status on the request or on the version it promotes
    BEHAVIOUR_FINISHED = "behaviour_finished"  # its behavioural diff finished (done or error): the summary
    # A batch request's apply, one change at a time (review/batching.py):
    CHANGE_APPLIED = "change_applied"  # one of its changes applied (or found already true)
    CHANGE_FAILED = "change_failed"  # one of its changes failed: the applied ones are undone
    CHANGE_REVERTED = "change_reverted"  # a compensating change put one applied change back
    REVERT_FAILED = "revert_failed"  # a compensation failed: MLflow is left partly changed
    # Not about one request:
    OUTSIDE_CHANGE = "outside_change"  # a stage or alias (or a version's files) moved without Checkpoint
    AUDIT_KEY_ADOPTED = "audit_key_adopted"  # a keyed Checkpoint sealed the unkeyed log before it
    AUDIT_HEAD = "audit_head"  # the log's signed head, for copies kept elsewhere


# Event kinds a webhook may subscribe to that are not about one request.
OUTSIDE_CHANGE = EventKind.OUTSIDE_CHANGE


def now() -> datetime:
    """The system clock's time. The store, the workflow and the background work read the
    clock they were given (``checkpoint.clock``) instead, so tests can move it."""
    return SYSTEM.now()


class NotFound(CheckpointError, LookupError):
    """No such request or delivery (or one the caller may not read): MLflow's 404."""

    def __init__(self, message: str) -> None:
        super().__init__(404, "RESOURCE_DOES_NOT_EXIST", message)


class DeliveryBusy(CheckpointError, RuntimeError):
    """A delivery is being sent right now and cannot be reset."""

    def __init__(self, message: str) -> None:
        super().__init__(409, "INVALID_STATE", message)


@dataclass(frozen=True)
class Review:
    id: int
    reviewer: str
    verdict: str
    comment: str
    created_at: datetime
    dismissed_at: datetime | None
    dismissed_reason: str
    digest: str | None = None  # the challenger's content digest when the review was given
    expired_at: datetime | None = None  # when its expiry was recorded (``approval_expired``)


@dataclass(frozen=True)
class Waiting:
    """What an approved request waits for before it applies: a freeze (``name``) or its
    schedule, and the first time it may apply."""

    kind: str  # "freeze" or "schedule"
    until: datetime
    name: str | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "until": self.until.isoformat(), "name": self.name}


@dataclass(frozen=True)
class Comment:
    id: int
    author: str
    body: str
    created_at: datetime


@dataclass(frozen=True)
class Event:
    id: int
    request_id: int | None
    model_name: str
    kind: str
    actor: str
    data: dict
    created_at: datetime
    prev_hash: str = ""
    hash: str = ""


@dataclass(frozen=True)
class CheckResult:
    """The latest result of one check on one request (``checkpoint.review.checks``)."""

    request_id: int
    name: str
    kind: str
    required: bool
    status: str  # pass / fail / error / pending
    reason: str
    trigger: str  # open / refresh / apply / manual ("" when never evaluated)
    evaluated_at: datetime | None


@dataclass(frozen=True)
class PostedStatus:
    """One status CI posted (``review/statuses.py``): on a request (``request_id``), or on a model
    version (``request_id`` None), bound to the content digest it was posted for."""

    id: int
    request_id: int | None
    workspace: str
    model_name: str
    version: str | None
    digest: str | None
    context: str
    state: str  # pending / success / failure / error
    target_url: str
    description: str
    actor: str
    created_at: datetime

    @property
    def scope(self) -> str:
        return "request" if self.request_id is not None else "version"


@dataclass(frozen=True)
class PromoteRequest:
    id: int
    kind: str
    model_name: str
    version: str | None
    target: str
    change: dict
    title: str
    description: str
    author: str
    state: str
    state_reason: str
    challenger: dict
    champion: dict | None
    created_at: datetime
    updated_at: datetime
    applied_at: datetime | None
    apply_result: str
    named_reviewers: tuple[str, ...] = ()
    rule_name: str = "default"
    workspace: str = ""  # MLflow's workspace the change acts in; "" = the default workspace
    rollback: dict | None = None  # a rollback request's record (review/rollback.py); None otherwise
    # A batch's parts, in the order they apply ({"change", "challenger", "champion", "rule"};
    # review/batching.py); None for a single-change request, whose one change is ``change``.
    changes: tuple[dict, ...] | None = None
    apply_at: datetime | None = None  # when its author or a reviewer asked it to apply
    waiting_for: Waiting | None = None  # approved, and held back by a freeze or apply_at
    reviews: tuple[Review, ...] = field(default=())
    comments: tuple[Comment, ...] = field(default=())
    events: tuple[Event, ...] = field(default=())

    @property
    def approvals(self) -> tuple[Review, ...]:
        """Approvals neither dismissed nor recorded expired. One past its rule's expiry that the
        background work has not recorded yet is still here: the workflow's clock decides."""
        return tuple(r for r in self.reviews if r.verdict == "approve" and r.dismissed_at is None and r.expired_at is None)


@dataclass(frozen=True)
class Delivery:
    id: str
    event_id: int
    webhook: str
    request_id: int | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    event: str = ""  # the event's kind, when read with it
    model: str = ""  # the event's model, when read with it


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery and everything its payload is built from."""

    delivery: Delivery
    event: Event
    request: PromoteRequest | None
    state: str | None  # the request's state right after the event
    comment: str | None  # a comment's text, for ``commented``
    title: str | None = None  # the request's title as of the event (its current one if the log does not say)
    behaviour: dict | None = None  # the summary of its latest behavioural diff finished by then (``behaviour_finished``)


@dataclass(frozen=True)
class Behaviour:
    """One stored behavioural diff (``behaviour_results``); ``result`` is opaque here (the
    review layer writes and reads it)."""

    key: str
    workspace: str
    champion: dict | None
    challenger: dict
    state: str  # pending / running / done / error
    reason: str
    result: dict | None
    wanted_at: datetime | None
    claimed_at: datetime | None
    finished_at: datetime | None
    evaluation: list | None = None  # the datasets it runs on (the rule's evaluation: entries)
    dataset_digest: str | None = None  # set on a row caching one dataset's scores


@dataclass(frozen=True)
class DiffSnapshot:
    """What a request page's diff was computed from, as stored (``diff_snapshots``): ``data`` is
    opaque here (the review layer encodes it); None until a read succeeded."""

    request_id: int
    key: str | None
    data: bytes | None
    raw_bytes: int
    taken_at: datetime | None
    wanted_at: datetime | None
    claimed_at: datetime | None
    error: str
