"""Persistence of promote requests. The store owns every session and hands out plain
entities; every state change writes its event in the same transaction.

Exactly-once is the database's job: a state change is a conditional UPDATE
(``... WHERE state IN (...)``), so of two workers or replicas racing, one wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, func, not_, or_, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from checkpoint.errors import CheckpointError
from checkpoint.events import audit
from checkpoint.storage.db import session_scope
from checkpoint.storage.models import CheckRow, CommentRow, DeliveryRow, EventRow, RequestRow, ReviewRow

OPEN, APPROVED, APPLYING, APPLIED, FAILED, REJECTED, WITHDRAWN = (
    "open", "approved", "applying", "applied", "failed", "rejected", "withdrawn",
)  # fmt: skip
STATES = (OPEN, APPROVED, APPLYING, APPLIED, FAILED, REJECTED, WITHDRAWN)
ACTIVE = (OPEN, APPROVED, APPLYING, FAILED)


def now() -> datetime:
    return datetime.now(UTC)


# Ids are INTEGER columns (32-bit on PostgreSQL). An id from a URL or a cursor outside
# 1..MAX_ID names no request; sent to the database it would fail (out of range on
# PostgreSQL, OverflowError in SQLite's driver) and answer 500 instead of 404.
MAX_ID = 2**31 - 1
# pg_advisory_xact_lock key that serialises appends to the hash-chained event log
# (the migration lock in db.py uses another key).
AUDIT_LOCK = 0x43504155  # "CPAU"
# Event kinds a webhook may subscribe to that are not about one request.
OUTSIDE_CHANGE = "outside_change"


class NotFound(CheckpointError, LookupError):
    """No such request or delivery (or one the caller may not read): MLflow's 404."""

    def __init__(self, message: str) -> None:
        super().__init__(404, "RESOURCE_DOES_NOT_EXIST", message)


def _check_id(request_id: int) -> None:
    if not 1 <= request_id <= MAX_ID:
        raise NotFound(f"promote request #{request_id} does not exist")


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


# A pending check's reason: waiting for the background thread, or being evaluated by one
# (then ``evaluated_at`` is when it was claimed; the claim lapses after the caller's lease).
CHECK_QUEUED, CHECK_RUNNING = "queued", "running"


def _check(row: CheckRow) -> CheckResult:
    return CheckResult(row.request_id, row.name, row.kind, row.required, row.status, row.reason, row.trigger,
                       _aware(row.evaluated_at))  # fmt: skip


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
    reviews: tuple[Review, ...] = field(default=())
    comments: tuple[Comment, ...] = field(default=())
    events: tuple[Event, ...] = field(default=())

    @property
    def approvals(self) -> tuple[Review, ...]:
        return tuple(r for r in self.reviews if r.verdict == "approve" and r.dismissed_at is None)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _request(row: RequestRow, reviews=(), comments=(), events=()) -> PromoteRequest:
    return PromoteRequest(
        id=row.id, kind=row.kind, model_name=row.model_name, version=row.version, target=row.target,
        change=row.change, title=row.title, description=row.description, author=row.author, state=row.state,
        state_reason=row.state_reason, challenger=row.challenger, champion=row.champion,
        created_at=_aware(row.created_at), updated_at=_aware(row.updated_at), applied_at=_aware(row.applied_at),
        apply_result=row.apply_result, named_reviewers=tuple(row.named_reviewers or ()), rule_name=row.rule_name,
        workspace=row.workspace or "",
        reviews=tuple(Review(r.id, r.reviewer, r.verdict, r.comment, _aware(r.created_at), _aware(r.dismissed_at),
                             r.dismissed_reason, r.digest) for r in reviews),
        comments=tuple(Comment(c.id, c.author, c.body, _aware(c.created_at)) for c in comments),
        events=tuple(_event(e) for e in events),
    )  # fmt: skip


def _event(e: EventRow) -> Event:
    return Event(e.id, e.request_id, e.model_name, e.kind, e.actor, e.data, _aware(e.created_at), e.prev_hash, e.hash)


def _check_event(result: CheckResult) -> dict:
    return {"check": result.name, "kind": result.kind, "required": result.required, "status": result.status,
            "reason": result.reason, "trigger": result.trigger}  # fmt: skip


def _event_dict(e: EventRow) -> dict:
    return {"id": e.id, "request_id": e.request_id, "model_name": e.model_name, "kind": e.kind, "actor": e.actor,
            "data": e.data, "created_at": e.created_at, "prev_hash": e.prev_hash, "hash": e.hash,
            "key_id": e.key_id}  # fmt: skip


class Store:
    """All reads and writes of requests, reviews, comments and events.

    ``subscribers(kind)`` names the webhooks that want events of ``kind``: their outbox
    rows are written in the event's own transaction; ``on_commit`` is called after a
    transaction that queued deliveries commits (it wakes the sender). ``keys``: the audit
    keys; the current one signs every event appended (without any, events get the plain
    SHA-256 of the log before keys, which a keyed verify refuses after a keyed event).
    """

    def __init__(
        self, sessions: sessionmaker, subscribers: Callable[[str], Sequence[str]] | None = None,
        on_commit: Callable[[], None] | None = None, keys: audit.Keyring | None = None,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.subscribers = subscribers or (lambda kind: ())
        self.on_commit = on_commit
        self.keys = keys or audit.Keyring()

    # -- writes ----------------------------------------------------------------------

    def open_request(self, *, author: str, dedupe_key: str, event_data: dict, **values) -> tuple[PromoteRequest, bool]:
        """Insert an open request, or return the open one with the same (author, change)."""
        stamp = now()
        try:
            with session_scope(self.sessions) as session:
                row = RequestRow(author=author, dedupe_key=dedupe_key, state=OPEN, created_at=stamp,
                                 updated_at=stamp, **values)  # fmt: skip
                session.add(row)
                session.flush()
                self._log(session, row, "opened", author, event_data, stamp)
                request_id = row.id
        except IntegrityError:
            with session_scope(self.sessions) as session:
                existing = session.scalar(
                    select(RequestRow.id).where(RequestRow.dedupe_key == dedupe_key, RequestRow.state == OPEN)
                )
            if existing is None:  # the other request closed in between: try once more
                return self.open_request(author=author, dedupe_key=dedupe_key, event_data=event_data, **values)
            return self.get(existing), False
        return self.get(request_id), True

    def transition(
        self, request_id: int, from_states: Iterable[str], to_state: str, *, actor: str, event: str,
        data: dict | None = None, reason: str | None = None, updated_before: datetime | None = None, **updates,
    ) -> bool:  # fmt: skip
        """Move a request between states if (and only if) it is in one of ``from_states``
        (and, with ``updated_before``, has not changed since then: the reconciler's lease)."""
        _check_id(request_id)
        stamp = now()
        values = {"state": to_state, "updated_at": stamp, **updates}
        if reason is not None:
            values["state_reason"] = reason
        query = update(RequestRow).where(RequestRow.id == request_id, RequestRow.state.in_(tuple(from_states)))
        if updated_before is not None:
            query = query.where(RequestRow.updated_at < updated_before)
        with session_scope(self.sessions) as session:
            result = session.execute(query.values(**values))
            if result.rowcount != 1:
                return False
            row = session.get(RequestRow, request_id)
            self._log(session, row, event, actor, {"from": list(from_states), "to": to_state, **(data or {})}, stamp)
        return True

    def update_fields(self, request_id: int, *, actor: str, event: str, data: dict, **values) -> None:
        """Edit a request's own fields (title, description, snapshots) with an event."""
        stamp = now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = stamp
            self._log(session, row, event, actor, data, stamp)

    def add_review(self, request_id: int, reviewer: str, verdict: str, comment: str, *, states: Iterable[str],
                   digest: str | None = None) -> bool:  # fmt: skip
        """Record a verdict, only while the request is in one of ``states`` (``digest``: the
        challenger's content digest the verdict was given on)."""
        stamp = now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id, lock=True)
            if row.state not in tuple(states):
                return False
            session.add(ReviewRow(request_id=request_id, reviewer=reviewer, verdict=verdict, comment=comment,
                                  created_at=stamp, dismissed_reason="", digest=digest))  # fmt: skip
            row.updated_at = stamp
            kind = "approved" if verdict == "approve" else "rejected"
            data = {"comment": comment, **({"digest": digest} if digest else {})}
            self._log(session, row, f"review_{kind}", reviewer, data, stamp)
        return True

    def dismiss_reviews(self, request_id: int, reason: str, actor: str) -> int:
        stamp = now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            result = session.execute(
                update(ReviewRow)
                .where(ReviewRow.request_id == request_id, ReviewRow.dismissed_at.is_(None))
                .values(dismissed_at=stamp, dismissed_reason=reason)
            )
            if result.rowcount:
                self._log(session, row, "approvals_dismissed", actor, {"reason": reason, "count": result.rowcount},
                          stamp)  # fmt: skip
            return result.rowcount

    def add_comment(self, request_id: int, author: str, body: str) -> Comment:
        stamp = now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            comment = CommentRow(request_id=request_id, author=author, body=body, created_at=stamp)
            session.add(comment)
            session.flush()
            self._log(session, row, "commented", author, {"comment_id": comment.id}, stamp)
            return Comment(comment.id, author, body, stamp)

    # -- reads -----------------------------------------------------------------------

    def get(self, request_id: int) -> PromoteRequest:
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            reviews = session.scalars(select(ReviewRow).where(ReviewRow.request_id == request_id).order_by(ReviewRow.id))
            comments = session.scalars(
                select(CommentRow).where(CommentRow.request_id == request_id).order_by(CommentRow.id)
            )
            events = session.scalars(select(EventRow).where(EventRow.request_id == request_id).order_by(EventRow.id))
            return _request(row, list(reviews), list(comments), list(events))

    def applying_before(self, cutoff: datetime, limit: int = 100) -> list[PromoteRequest]:
        """Requests claimed for apply and unchanged since ``cutoff``: applies a crash interrupted
        (``updated_at`` is the claim's time; a live apply finishes within the lease)."""
        query = (
            select(RequestRow)
            .where(RequestRow.state == APPLYING, RequestRow.updated_at < cutoff)
            .order_by(RequestRow.id)
            .limit(limit)
        )
        with session_scope(self.sessions) as session:
            return [_request(row) for row in session.scalars(query)]

    def list(
        self, *, state: str | None = None, model: str | None = None, target: str | None = None,
        author: str | None = None, search: str | None = None, before: int | None = None, limit: int = 50,
        hidden: Iterable[tuple[str, str]] = (), workspace: str | None = None,
    ) -> tuple[list[PromoteRequest], int | None]:  # fmt: skip
        """Newest first; ``before`` is the cursor (an id), so pages are stable under inserts.
        ``hidden`` (workspace, model) pairs are left out: models the caller may not read.
        ``workspace`` ("" = the default one) filters by MLflow workspace; None lists them all."""
        query = _visible(select(RequestRow), hidden)
        if workspace is not None:
            query = query.where(RequestRow.workspace == workspace)
        if state:
            query = query.where(RequestRow.state == state)
        if model:
            query = query.where(RequestRow.model_name == model)
        if target:
            query = query.where(RequestRow.target == target)
        if author:
            query = query.where(RequestRow.author == author)
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(or_(RequestRow.title.ilike(f"%{escaped}%", escape="\\")))
        if before is not None and before <= MAX_ID:  # beyond MAX_ID every id is before it
            query = query.where(RequestRow.id < before)
        query = query.order_by(RequestRow.id.desc()).limit(limit + 1)
        with session_scope(self.sessions) as session:
            rows = list(session.scalars(query))
            page = rows[:limit]
            # One query for the page's reviews, so the list can say "1 of 2 approvals".
            reviews: dict[int, list[ReviewRow]] = {r.id: [] for r in page}
            if page:
                for review in session.scalars(select(ReviewRow).where(ReviewRow.request_id.in_(list(reviews)))):
                    reviews[review.request_id].append(review)
            items = [_request(r, reviews[r.id]) for r in page]
        return items, (items[-1].id if len(rows) > limit else None)

    def count(self, state: str | None = None, model: str | None = None, hidden: Iterable[tuple[str, str]] = (),
              workspace: str | None = None) -> int:  # fmt: skip
        query = _visible(select(func.count(RequestRow.id)), hidden)
        if workspace is not None:
            query = query.where(RequestRow.workspace == workspace)
        if state:
            query = query.where(RequestRow.state == state)
        if model:
            query = query.where(RequestRow.model_name == model)
        with session_scope(self.sessions) as session:
            return session.scalar(query) or 0

    def request_models(self, state: str | None = None) -> set[tuple[str, str]]:
        """The distinct (workspace, model) pairs of requests (in ``state``): what a count may hide."""
        query = select(RequestRow.workspace, RequestRow.model_name).distinct()
        if state:
            query = query.where(RequestRow.state == state)
        with session_scope(self.sessions) as session:
            return {(w or "", m) for w, m in session.execute(query)}

    def delivery_backlog(self) -> int:
        """Webhook deliveries not yet delivered nor given up on (pending or being sent)."""
        with session_scope(self.sessions) as session:
            return session.scalar(
                select(func.count(DeliveryRow.id)).where(DeliveryRow.status.in_(("pending", "sending")))
            ) or 0

    def seal_unkeyed(self, actor: str = "checkpoint") -> int | None:
        """Append a keyed event when the log's newest event has no audit key (the log as it was
        before keys, or a tail rewritten without one: ``verify`` tells which), so that from now
        on the unkeyed events are covered by a keyed event's ``prev_hash``. Its id, or None
        when there was nothing to seal. Idempotent, and safe when workers start together."""
        current = self.keys.current
        if current is None:
            return None
        newest = select(EventRow.id, EventRow.key_id).order_by(EventRow.id.desc()).limit(1)
        with session_scope(self.sessions) as session:
            head = session.execute(newest).first()
            if head is None or head.key_id is not None:
                return None
        with session_scope(self.sessions) as session:
            self._lock_chain(session)
            head = session.execute(newest).first()  # again, under the lock: another worker may have sealed
            if head is None or head.key_id is not None:
                return None
            unkeyed = session.scalar(select(func.count(EventRow.id)).where(EventRow.key_id.is_(None)))
            event = self._append(session, None, "", audit.SEALED, actor,
                                 {"key_id": current[0], "unkeyed_events": unkeyed, "after_event": head.id}, now())  # fmt: skip
            return event.id

    def publish_head(self, every: float, stamp: datetime | None = None) -> int | None:
        """Append an ``audit_head`` event carrying the log's head (``ID:HASH``) signed with the
        audit key, for the webhooks that keep a copy elsewhere; its id, or None when one was
        published less than ``every`` seconds before ``stamp`` or nothing happened since.
        Decided under the chain's lock, so one worker of one replica publishes each time."""
        from datetime import timedelta

        current = self.keys.current
        if current is None:
            return None
        stamp = _aware(stamp) or now()
        newest = select(EventRow.id, EventRow.hash, EventRow.kind).order_by(EventRow.id.desc()).limit(1)
        last = select(EventRow.created_at).where(EventRow.kind == audit.HEAD).order_by(EventRow.id.desc()).limit(1)

        def due(session: Session):
            head = session.execute(newest).first()
            published = _aware(session.scalar(last))
            fresh = published is not None and published > stamp - timedelta(seconds=every)
            return None if head is None or head.kind == audit.HEAD or fresh else head

        with session_scope(self.sessions) as session:
            if due(session) is None:  # the common case, without taking the lock
                return None
        with session_scope(self.sessions) as session:
            self._lock_chain(session)
            head = due(session)
            if head is None:
                return None
            ref = f"{head.id}:{head.hash}"
            count = session.scalar(select(func.count(EventRow.id)))
            data = {"head": ref, "events": count, "key_id": current[0], "signature": audit.sign_head(current[1], ref)}
            return self._append(session, None, "", audit.HEAD, "checkpoint", data, stamp).id

    def audit_rows(self, since: datetime | None = None, batch: int = 1000) -> Iterator[dict]:
        """Every event with its hashes, oldest first, read in batches (the log may be large)."""
        last = 0
        while True:
            query = select(EventRow).where(EventRow.id > last).order_by(EventRow.id).limit(batch)
            if since is not None:
                query = query.where(EventRow.created_at >= since)
            with session_scope(self.sessions) as session:
                rows = [_event_dict(e) for e in session.scalars(query)]
            yield from rows
            if len(rows) < batch:
                return
            last = rows[-1]["id"]

    def record_outside_change(self, model_name: str, target: str, version: str | None, actor: str = "mlflow",
                              workspace: str = "") -> bool:  # fmt: skip
        """Log that ``target`` of ``model_name`` (in MLflow ``workspace``) holds ``version`` without
        Checkpoint having put it there.

        Compared, under the chain's lock, with the last state the log knows for the target
        (an applied request or an earlier outside change), so concurrent readers record it once.
        """
        stamp = now()
        with session_scope(self.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
            known = self._last_known(session, model_name, target, workspace)
            if known == (version,) or (known is None and version is None):
                return False
            data = {"target": target, "version": version, "previous": known[0] if known else None,
                    "first_seen": known is None, **({"workspace": workspace} if workspace else {})}  # fmt: skip
            self._append(session, None, model_name, OUTSIDE_CHANGE, actor, data, stamp)
        return True

    def record_outside_files_change(self, model_name: str, target: str, version: str, before: str | None,
                                    after: str | None, actor: str = "mlflow", workspace: str = "") -> bool:  # fmt: skip
        """Log that the files of ``version`` (holding ``target``, in MLflow ``workspace``) changed
        without Checkpoint: their digest is ``after`` where Checkpoint last saw ``before``.
        Recorded once per new digest."""
        stamp = now()
        with session_scope(self.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
            query = (
                select(EventRow)
                .where(EventRow.model_name == model_name, EventRow.kind == OUTSIDE_CHANGE)
                .order_by(EventRow.id.desc())
                .limit(200)
            )
            for event in session.scalars(query):
                data = event.data or {}
                if data.get("workspace", "") != workspace:
                    continue
                if data.get("files") and data.get("target") == target and data.get("version") == version:
                    if data.get("digest_after") == after:
                        return False
                    break
            data = {"target": target, "version": version, "files": True, "digest_before": before,
                    "digest_after": after, "previous": version, "first_seen": False,
                    **({"workspace": workspace} if workspace else {})}  # fmt: skip
            self._append(session, None, model_name, OUTSIDE_CHANGE, actor, data, stamp)
        return True

    def last_applied_challenger(self, model_name: str, target: str, workspace: str = "") -> dict | None:
        """The challenger snapshot (with its digest) of the last request applied to ``target`` (of
        the model of that name in MLflow ``workspace``)."""
        query = (
            select(RequestRow.challenger)
            .where(RequestRow.model_name == model_name, RequestRow.target == target, RequestRow.state == APPLIED,
                   RequestRow.workspace == workspace)  # fmt: skip
            .order_by(RequestRow.applied_at.desc(), RequestRow.id.desc())
            .limit(1)
        )
        with session_scope(self.sessions) as session:
            return session.scalar(query) or None

    @staticmethod
    def _last_known(session: Session, model_name: str, target: str, workspace: str = "") -> tuple[str | None] | None:
        """The version the log last saw at ``target`` (of the model of that name in ``workspace``),
        as a 1-tuple, or None if it never saw it."""
        query = (
            select(EventRow, RequestRow)
            .outerjoin(RequestRow, RequestRow.id == EventRow.request_id)
            .where(EventRow.model_name == model_name, EventRow.kind.in_(("applied", OUTSIDE_CHANGE)))
            .order_by(EventRow.id.desc())
        )
        for event, request in session.execute(query):
            if event.kind == OUTSIDE_CHANGE and event.data.get("target") == target:
                if event.data.get("workspace", "") == workspace:
                    return (event.data.get("version"),)
                continue
            if event.kind == "applied" and request is not None and request.target == target:
                if (request.workspace or "") != workspace:
                    continue
                return (None,) if request.kind == "delete_alias" else (request.version,)
        return None

    def events(self, model: str | None = None) -> list[Event]:
        query = select(EventRow).order_by(EventRow.id)
        if model:
            query = query.where(EventRow.model_name == model)
        with session_scope(self.sessions) as session:
            return [_event(e) for e in session.scalars(query)]

    # -- webhook outbox --------------------------------------------------------------
    # A delivery is claimed with a conditional UPDATE (due, and nothing earlier for the same
    # webhook and request still unsent), so two senders never hold the same row, and events
    # of one request reach a receiver in order. ``next_attempt_at`` doubles as the lease of a
    # ``sending`` row: once it passes, the sender is presumed dead and the row is due again.

    def claim_deliveries(self, leases: dict[str, float], limit: int = 8) -> list[Outgoing]:
        """Claim up to ``limit`` due deliveries of the webhooks in ``leases`` (name → lease
        seconds), oldest event first, each with what its payload is built from."""
        from datetime import timedelta

        if not leases:
            return []
        stamp = now()
        earlier = DeliveryRow.__table__.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(earlier.c.webhook == DeliveryRow.webhook, earlier.c.request_id == DeliveryRow.request_id,
                   earlier.c.event_id < DeliveryRow.event_id, earlier.c.status.in_(UNSENT))
            .exists()
        )  # fmt: skip
        due = (DeliveryRow.status.in_(UNSENT), DeliveryRow.next_attempt_at <= stamp, ~blocked)
        query = select(DeliveryRow.id, DeliveryRow.webhook).where(*due, DeliveryRow.webhook.in_(list(leases)))
        with session_scope(self.sessions) as session:
            candidates = session.execute(query.order_by(DeliveryRow.event_id).limit(limit)).all()
        claimed = []
        for delivery_id, webhook in candidates:
            lease = stamp + timedelta(seconds=leases[webhook])
            with session_scope(self.sessions) as session:
                result = session.execute(
                    update(DeliveryRow).where(DeliveryRow.id == delivery_id, *due)
                    .values(status=SENDING, attempts=DeliveryRow.attempts + 1, next_attempt_at=lease)
                )  # fmt: skip
                if result.rowcount == 1:
                    claimed.append(self._outgoing(session, session.get(DeliveryRow, delivery_id)))
        return claimed

    def delivery_done(self, delivery_id: str, status: int | None, error: str = "",
                      retry_at: datetime | None = None) -> bool:  # fmt: skip
        """Record a send: delivered (no ``error``), due again at ``retry_at``, or failed for good.
        Only while this sender still holds the claim (an admin's resend wins)."""
        values: dict = {"last_status": status, "last_error": error[:2000]}
        if not error:
            values.update(status=DELIVERED, delivered_at=now())
        elif retry_at is not None:
            values.update(status=PENDING, next_attempt_at=retry_at)
        else:
            values.update(status=GAVE_UP)
        with session_scope(self.sessions) as session:
            query = update(DeliveryRow).where(DeliveryRow.id == delivery_id, DeliveryRow.status == SENDING)
            return session.execute(query.values(**values)).rowcount == 1

    def resend_delivery(self, delivery_id: str) -> Delivery:
        """Make a delivered or failed delivery due now, with its own id and a fresh attempt count."""
        with session_scope(self.sessions) as session:
            result = session.execute(
                update(DeliveryRow).where(DeliveryRow.id == delivery_id, DeliveryRow.status.in_((PENDING, DELIVERED, GAVE_UP)))
                .values(status=PENDING, attempts=0, next_attempt_at=now(), delivered_at=None)
            )  # fmt: skip
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFound(f"delivery {delivery_id} does not exist")
            if result.rowcount != 1:
                raise DeliveryBusy(f"delivery {delivery_id} is being sent right now; try again in a moment")
            return _delivery(row)

    def get_delivery(self, delivery_id: str) -> Delivery:
        with session_scope(self.sessions) as session:
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFound(f"delivery {delivery_id} does not exist")
            return _delivery(row)

    def list_deliveries(
        self, *, status: str | None = None, webhook: str | None = None, request_id: int | None = None,
        before: tuple[int, str] | None = None, limit: int = 50, hidden_models: Iterable[str] = (),
    ) -> tuple[list[Delivery], tuple[int, str] | None]:  # fmt: skip
        """Newest event first; ``before`` is the cursor (event id, delivery id) of the last row seen.
        Deliveries of events about ``hidden_models`` (the caller may not read them) are left out."""
        query = select(DeliveryRow, EventRow.kind, EventRow.model_name).join(EventRow, EventRow.id == DeliveryRow.event_id)
        hidden_models = sorted(set(hidden_models))
        if hidden_models:
            query = query.where(EventRow.model_name.not_in(hidden_models))
        if status:
            query = query.where(DeliveryRow.status == status)
        if webhook:
            query = query.where(DeliveryRow.webhook == webhook)
        if request_id is not None:
            query = query.where(DeliveryRow.request_id == request_id)
        if before is not None:
            event_id, delivery_id = before
            query = query.where(or_(DeliveryRow.event_id < event_id,
                                    (DeliveryRow.event_id == event_id) & (DeliveryRow.id < delivery_id)))  # fmt: skip
        query = query.order_by(DeliveryRow.event_id.desc(), DeliveryRow.id.desc()).limit(limit + 1)
        with session_scope(self.sessions) as session:
            rows = session.execute(query).all()
        items = [_delivery(row, kind, model) for row, kind, model in rows[:limit]]
        return items, ((items[-1].event_id, items[-1].id) if len(rows) > limit else None)

    @staticmethod
    def _outgoing(session: Session, row: DeliveryRow) -> Outgoing:
        """A claimed delivery with its event, its request, and the request's state (and title, when
        the log records it) right after the event: read from the log, so a re-send describes the
        same moment."""
        event = session.get(EventRow, row.event_id)
        request = session.get(RequestRow, event.request_id) if event.request_id is not None else None
        state = title = None
        if request is not None:
            earlier = [d for d in session.scalars(
                select(EventRow.data).where(EventRow.request_id == request.id, EventRow.id <= event.id)
                .order_by(EventRow.id.desc())
            ) if isinstance(d, dict)]  # fmt: skip
            state = next((d["to"] for d in earlier if isinstance(d.get("to"), str)), OPEN)
            title = next((d["title"] for d in earlier if isinstance(d.get("title"), str)), request.title)
        comment = None
        if event.kind == "commented" and isinstance(event.data, dict) and event.data.get("comment_id"):
            found = session.get(CommentRow, event.data["comment_id"])
            comment = found.body if found is not None else None
        return Outgoing(_delivery(row, event.kind), _event(event), _request(request) if request else None, state, comment,
                        title)  # fmt: skip

    # -- check results ---------------------------------------------------------------

    def record_checks(self, request_id: int, results: Sequence[CheckResult], *, keep: Iterable[str], actor: str) -> None:
        """Store one round of check results (dropping rows of checks no longer declared: not in
        ``keep``), logging ``check_failed`` for each that became fail or error, in one transaction."""
        keep = set(keep)
        stamp = now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id, lock=True)  # one round at a time per request
            existing = {c.name: c for c in session.scalars(select(CheckRow).where(CheckRow.request_id == request_id))}
            for name, stale in existing.items():
                if name not in keep:
                    session.delete(stale)
            for result in results:
                current = existing.get(result.name)
                before = current.status if current is not None else None
                if current is None:
                    current = CheckRow(request_id=request_id, name=result.name)
                    session.add(current)
                current.kind, current.required, current.status = result.kind, result.required, result.status
                current.reason, current.trigger, current.evaluated_at = result.reason, result.trigger, result.evaluated_at
                if result.status in ("fail", "error") and before != result.status:
                    self._log(session, row, "check_failed", actor, _check_event(result), stamp)

    def check_results(self, request_ids: Iterable[int]) -> dict[int, list[CheckResult]]:
        """The stored check results of each request (one query for a page of requests)."""
        ids = [i for i in dict.fromkeys(request_ids) if 1 <= i <= MAX_ID]
        out: dict[int, list[CheckResult]] = {i: [] for i in ids}
        if ids:
            query = select(CheckRow).where(CheckRow.request_id.in_(ids)).order_by(CheckRow.id)
            with session_scope(self.sessions) as session:
                for row in session.scalars(query):
                    out[row.request_id].append(_check(row))
        return out

    def _due_check(self, lease_before: datetime):
        """Pending, and queued or claimed by a worker whose lease ran out; on a request still undecided."""
        undecided = select(RequestRow.id).where(RequestRow.id == CheckRow.request_id,
                                                RequestRow.state.in_((OPEN, FAILED))).exists()  # fmt: skip
        return (CheckRow.status == "pending", undecided,
                or_(CheckRow.reason == CHECK_QUEUED, CheckRow.evaluated_at < lease_before))  # fmt: skip

    def due_checks(self, kind: str, lease_before: datetime, limit: int = 20) -> list[CheckResult]:
        query = select(CheckRow).where(CheckRow.kind == kind, *self._due_check(lease_before))
        with session_scope(self.sessions) as session:
            return [_check(r) for r in session.scalars(query.order_by(CheckRow.evaluated_at, CheckRow.id).limit(limit))]

    def claim_check(self, request_id: int, name: str, lease_before: datetime) -> datetime | None:
        """Claim a due check for evaluation (a conditional UPDATE: one worker wins); the claim's stamp."""
        stamp = now()
        query = update(CheckRow).where(CheckRow.request_id == request_id, CheckRow.name == name,
                                       *self._due_check(lease_before))  # fmt: skip
        with session_scope(self.sessions) as session:
            won = session.execute(query.values(reason=CHECK_RUNNING, evaluated_at=stamp)).rowcount == 1
        return stamp if won else None

    def settle_check(self, request_id: int, name: str, claimed_at: datetime, status: str, reason: str, actor: str) -> bool:
        """Record a claimed check's result, only if it was not queued again meanwhile (that round wins)."""
        stamp = now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id, lock=True)
            current = session.scalar(select(CheckRow).where(
                CheckRow.request_id == request_id, CheckRow.name == name, CheckRow.status == "pending",
                CheckRow.reason == CHECK_RUNNING, CheckRow.evaluated_at == claimed_at))  # fmt: skip
            if current is None:
                return False
            current.status, current.reason, current.evaluated_at = status, reason, stamp
            if status in ("fail", "error"):
                self._log(session, row, "check_failed", actor, _check_event(_check(current)), stamp)
        return True

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _row(session: Session, request_id: int, lock: bool = False) -> RequestRow:
        _check_id(request_id)
        query = select(RequestRow).where(RequestRow.id == request_id)
        if lock:
            query = query.with_for_update()
        row = session.scalar(query)
        if row is None:
            raise NotFound(f"promote request #{request_id} does not exist")
        return row

    @staticmethod
    def _lock_chain(session: Session) -> None:
        """Hold the chain's write lock before reading anything: PostgreSQL's advisory lock, or on
        SQLite the database's write lock (a no-op UPDATE takes it; a transaction that read first
        could not take it later without failing)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
        else:
            session.execute(text("UPDATE events SET kind = kind WHERE id < 0"))

    def _log(self, session: Session, row: RequestRow, kind: str, actor: str, data: dict, stamp: datetime) -> None:
        self._append(session, row.id, row.model_name, kind, actor, data, stamp)

    def _append(self, session: Session, request_id: int | None, model_name: str, kind: str, actor: str, data: dict,
                stamp: datetime) -> EventRow:  # fmt: skip
        """Append one event to the hash chain, and its deliveries to the outbox.

        Appends are serialised so each event links to the one committed before it: on
        PostgreSQL by a transaction-scoped advisory lock, on SQLite by the write lock the
        transaction already holds (every caller writes before it logs; the flush makes sure).
        """
        session.flush()
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
        previous = session.scalar(select(EventRow.hash).order_by(EventRow.id.desc()).limit(1)) or audit.GENESIS
        kid, key = self.keys.current or (None, None)
        event = EventRow(request_id=request_id, model_name=model_name, kind=kind, actor=actor, data=data,
                         created_at=stamp, prev_hash=previous, hash="", key_id=kid)  # fmt: skip
        session.add(event)
        session.flush()
        event.hash = audit.event_hash(_event_dict(event), previous, key)
        webhooks = list(self.subscribers(kind))
        for name in webhooks:
            session.add(DeliveryRow(id=str(uuid.uuid4()), event_id=event.id, webhook=name, request_id=request_id,
                                    status="pending", attempts=0, next_attempt_at=stamp, last_error="",
                                    created_at=stamp))  # fmt: skip
        if webhooks and self.on_commit is not None:
            sa_event.listen(session, "after_commit", lambda _session: self.on_commit(), once=True)
        session.flush()
        return event


# -- webhook outbox entities --------------------------------------------------------------

PENDING, SENDING, DELIVERED, GAVE_UP = "pending", "sending", "delivered", "failed"
DELIVERY_STATES = (PENDING, SENDING, DELIVERED, GAVE_UP)
UNSENT = (PENDING, SENDING)


def _visible(query, hidden: Iterable[tuple[str, str]]):
    """``query`` over requests without those in the ``hidden`` (workspace, model) pairs."""
    for workspace, model in sorted(set(hidden)):
        query = query.where(not_(and_(RequestRow.workspace == workspace, RequestRow.model_name == model)))
    return query


class DeliveryBusy(CheckpointError, RuntimeError):
    """A delivery is being sent right now and cannot be reset."""

    def __init__(self, message: str) -> None:
        super().__init__(409, "INVALID_STATE", message)


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


def _delivery(row: DeliveryRow, kind: str = "", model: str = "") -> Delivery:
    return Delivery(row.id, row.event_id, row.webhook, row.request_id, row.status, row.attempts, _aware(row.next_attempt_at),
                    row.last_status, row.last_error, _aware(row.created_at), _aware(row.delivered_at), kind, model)  # fmt: skip
