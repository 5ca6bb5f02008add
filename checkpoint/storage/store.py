"""Persistence of promote requests. The store owns every session and hands out plain
entities; every state change writes its event in the same transaction.

Exactly-once is the database's job: a state change is a conditional UPDATE
(``... WHERE state IN (...)``), so of two workers or replicas racing, one wins.

The Store is composed of focused parts (mixins over one session factory, so that a change and
the event recording it share a transaction, and callers keep one object): ``Requests``
(requests, reviews, comments), ``Schedules`` (apply_at, waiting for a freeze, releasing),
``EventChain`` (the hash-chained log), ``Outbox`` (webhook deliveries) and ``Mail`` (email
rows in the same outbox, people's choices), ``CheckResults`` and
``Statuses`` (posted by CI), ``DiffSnapshots`` (what request pages' diffs are rendered from) and
``Tokens`` (API tokens, stored hashed).
The entities and states live in ``entities``.
"""

from __future__ import annotations

from checkpoint.storage.behaviour import Behaviours
from checkpoint.storage.check_results import CheckResults
from checkpoint.storage.diff_snapshots import DiffSnapshots
from checkpoint.storage.entities import (
    ACTIVE,
    APPLIED,
    APPLYING,
    APPROVED,
    CHECK_QUEUED,
    CHECK_RUNNING,
    DELIVERY_STATES,
    FAILED,
    MAX_ID,
    OPEN,
    OUTSIDE_CHANGE,
    REJECTED,
    STATES,
    WITHDRAWN,
    CheckResult,
    Comment,
    Delivery,
    DeliveryBusy,
    Event,
    EventKind,
    NotFound,
    Outgoing,
    PromoteRequest,
    Review,
    now,
)
from checkpoint.storage.mail import Mail
from checkpoint.storage.requests import Requests
from checkpoint.storage.schedules import Schedules
from checkpoint.storage.statuses import Statuses
from checkpoint.storage.tokens import Tokens

# The entities are re-exported for callers written before they had their own module.
__all__ = [
    "ACTIVE",
    "APPLIED",
    "APPLYING",
    "APPROVED",
    "CHECK_QUEUED",
    "CHECK_RUNNING",
    "DELIVERY_STATES",
    "FAILED",
    "MAX_ID",
    "OPEN",
    "OUTSIDE_CHANGE",
    "REJECTED",
    "STATES",
    "WITHDRAWN",
    "CheckResult",
    "Comment",
    "Delivery",
    "DeliveryBusy",
    "Event",
    "EventKind",
    "NotFound",
    "Outgoing",
    "PromoteRequest",
    "Review",
    "Store",
    "now",
]


class Store(Requests, Schedules, CheckResults, Statuses, DiffSnapshots, Behaviours, Mail, Tokens):
    """All reads and writes of requests, reviews, comments and events.

    ``subscribers(kind)`` names the webhooks that want events of ``kind``: their outbox
    rows are written in the event's own transaction; ``on_commit`` is called after a
    transaction that queued deliveries commits (it wakes the sender). ``keys``: the audit
    keys; the current one signs every event appended (without any, events get the plain
    SHA-256 of the log before keys, which a keyed verify refuses after a keyed event).
    ``recipients``: who is emailed about an event (``storage/mail.py``; None: nobody).
    ``clock``: what every stamp it writes, and every lease it compares, is read from
    (``checkpoint.clock``; the system clock unless a test moves one).
    """
