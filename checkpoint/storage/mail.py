"""Email in the outbox: one ``deliveries`` row per (event, person), named ``email:<person>``,
queued by :func:`queue` in the event's own transaction and claimed by the mail sender
(``events/notifications/sender.py``) as webhook deliveries are, with a conditional UPDATE.

Who gets an event is the domain's answer (the ``recipients`` hook the Store is given, so this
layer imports no policy); the address and the person's choice are the database's: the address
their last sign-in carried (header mode's email header) wins over the hook's (the policy file's
``people:``), and a person who turned email off gets no row. A person who chose a digest gets
rows due together: each new row is due when their oldest waiting one is, so one claim takes
them all and one message carries them. The unique index on (event, webhook) makes the row once
per person and event whichever transaction writes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkpoint.storage.base import aware, to_request
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import GAVE_UP, PENDING, SENDING, UNSENT, EventKind, Outgoing, PromoteRequest
from checkpoint.storage.models import CommentRow, DeliveryRow, EventRow, PersonRow, RequestRow
from checkpoint.storage.outbox import Outbox

EMAIL_PREFIX = "email:"
EACH, HOURLY, DAILY, OFF = "each", "hourly", "daily", "off"
MODES = (EACH, HOURLY, DAILY, OFF)
DIGESTS = {HOURLY: timedelta(hours=1), DAILY: timedelta(days=1)}


@dataclass(frozen=True)
class Happening:
    """An event as the recipients hook sees it, inside the transaction that records it."""

    kind: str
    actor: str
    data: dict
    request: PromoteRequest | None
    comment: str | None = None  # a comment's text, for ``commented``


@dataclass(frozen=True)
class Recipient:
    """Who gets an event, why (``reason``: awaited, author, mentioned), and the address the
    policy file gives them (None: only their sign-in's address, if Checkpoint saw one)."""

    person: str
    address: str | None
    reason: str


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None = None  # as their sign-in carried it
    mode: str = EACH


@dataclass(frozen=True)
class Item:
    outgoing: Outgoing
    reason: str


@dataclass(frozen=True)
class Letter:
    """One message to send: one claimed row, or every due row of a person's digest."""

    person: str
    address: str
    items: tuple[Item, ...]

    @property
    def ids(self) -> list[str]:
        return [i.outgoing.delivery.id for i in self.items]


RecipientsHook = Callable[[Happening], Sequence[Recipient]]


def mailbox(person: str) -> str:
    """The ``deliveries.webhook`` value of ``person``'s email rows."""
    return EMAIL_PREFIX + person


def queue(session: Session, hook: RecipientsHook, event: EventRow, stamp: datetime) -> int:
    """Write ``event``'s email rows (in its transaction); how many."""
    row = session.get(RequestRow, event.request_id) if event.request_id is not None else None
    data = event.data if isinstance(event.data, dict) else {}
    comment = None
    if event.kind == EventKind.COMMENTED and data.get("comment_id"):
        found = session.get(CommentRow, data["comment_id"])
        comment = found.body if found is not None else None
    happening = Happening(event.kind, event.actor, data, to_request(row) if row is not None else None, comment)
    written: set[str] = set()
    for recipient in hook(happening):
        if recipient.person in written:
            continue  # the first reason wins: once per person and event
        person = session.get(PersonRow, recipient.person)
        mode = person.email_mode if person is not None else EACH
        address = (person.email if person is not None else None) or recipient.address
        if mode == OFF or not address:
            continue
        due = stamp
        if mode in DIGESTS:  # due with the person's oldest waiting row, else one period from now
            waiting = select(func.min(DeliveryRow.next_attempt_at)).where(
                DeliveryRow.webhook == mailbox(recipient.person), DeliveryRow.status == PENDING
            )
            due = aware(session.scalar(waiting)) or stamp + DIGESTS[mode]
        session.add(
            DeliveryRow(
                id=str(uuid.uuid4()),
                event_id=event.id,
                webhook=mailbox(recipient.person),
                request_id=event.request_id,
                status=PENDING,
                attempts=0,
                next_attempt_at=due,
                last_error="",
                created_at=stamp,
                address=address,
                reason=recipient.reason,
            )
        )
        written.add(recipient.person)
    return len(written)


class Mail(Outbox):
    """The Store's email rows and people's choices."""

    def claim_mail(self, lease: float, limit: int = 8) -> list[Letter]:
        """Claim up to ``limit`` letters due now: a row each, or every due row of a digest."""
        stamp = self.clock.now()
        earlier = DeliveryRow.__table__.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(
                earlier.c.webhook == DeliveryRow.webhook,
                earlier.c.request_id == DeliveryRow.request_id,
                earlier.c.event_id < DeliveryRow.event_id,
                earlier.c.status.in_(UNSENT),
            )
            .exists()
        )
        due = (DeliveryRow.status.in_(UNSENT), DeliveryRow.next_attempt_at <= stamp)
        query = select(DeliveryRow.id, DeliveryRow.webhook).where(*due, ~blocked, DeliveryRow.webhook.startswith(EMAIL_PREFIX))
        with session_scope(self.sessions) as session:
            candidates = session.execute(query.order_by(DeliveryRow.event_id).limit(limit * 4)).all()
        letters: list[Letter] = []
        seen: set[str] = set()
        for delivery_id, box in candidates:
            if box in seen or len(letters) >= limit:
                continue
            seen.add(box)
            person = self.person(box.removeprefix(EMAIL_PREFIX))
            if person.mode == OFF:
                self._turned_off(box, stamp)
                continue
            ids = [delivery_id]
            if person.mode in DIGESTS:
                with session_scope(self.sessions) as session:
                    ids = list(session.scalars(select(DeliveryRow.id).where(*due, DeliveryRow.webhook == box)))
            letter = self._claim(person.name, ids, due, stamp + timedelta(seconds=lease))
            if letter is not None:
                letters.append(letter)
        return letters

    def _claim(self, person: str, ids: list[str], due: tuple, lease: datetime) -> Letter | None:
        items: list[Item] = []
        address = ""
        for delivery_id in ids:
            with session_scope(self.sessions) as session:
                result = session.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.id == delivery_id, *due)
                    .values(status=SENDING, attempts=DeliveryRow.attempts + 1, next_attempt_at=lease)
                )
                if result.rowcount != 1:
                    continue  # another sender took it
                row = session.get(DeliveryRow, delivery_id)
                assert row is not None  # just updated
                items.append(Item(Outbox._outgoing(session, row), row.reason or ""))
                address = row.address or address
        items.sort(key=lambda i: i.outgoing.event.id)
        return Letter(person, address, tuple(items)) if items else None

    def _turned_off(self, box: str, stamp: datetime) -> None:
        """Rows queued before their person turned email off: settled, never sent."""
        person = box.removeprefix(EMAIL_PREFIX)
        with session_scope(self.sessions) as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.webhook == box, DeliveryRow.status == PENDING)
                .values(status=GAVE_UP, last_error=f"not sent: {person} turned email off", delivered_at=None)
            )

    def mail_done(self, ids: Sequence[str], status: int | None, error: str = "", retry_at: datetime | None = None) -> int:
        """Record a letter's outcome on each of its rows (still claimed by this sender)."""
        return sum(1 for i in ids if self.delivery_done(i, status, error, retry_at))

    # -- people --------------------------------------------------------------------------

    def person(self, name: str) -> Person:
        with session_scope(self.sessions) as session:
            row = session.get(PersonRow, name)
            return Person(name) if row is None else Person(name, row.email, row.email_mode)

    def set_mail_mode(self, name: str, mode: str) -> Person:
        """Store ``name``'s choice; leaving a digest makes their waiting rows due now."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        stamp = self.clock.now()
        self._upsert(name, {"email_mode": mode}, stamp)
        if mode == EACH:
            with session_scope(self.sessions) as session:
                box, later = DeliveryRow.webhook == mailbox(name), DeliveryRow.next_attempt_at > stamp
                waiting = (box, DeliveryRow.status == PENDING, later)
                session.execute(update(DeliveryRow).where(*waiting).values(next_attempt_at=stamp))
        return self.person(name)

    def remember_email(self, name: str, email: str) -> bool:
        """Keep the address ``name``'s sign-in carried; True when it changed."""
        if self.person(name).email == email:
            return False
        self._upsert(name, {"email": email}, self.clock.now())
        return True

    def _upsert(self, name: str, values: dict, stamp: datetime) -> None:
        for _ in range(2):  # a racing first insert: the second round updates
            try:
                with session_scope(self.sessions) as session:
                    row = session.get(PersonRow, name)
                    if row is None:
                        session.add(PersonRow(name=name, updated_at=stamp, **{"email_mode": EACH, **values}))
                    else:
                        for key, value in values.items():
                            setattr(row, key, value)
                        row.updated_at = stamp
                return
            except IntegrityError:
                continue
