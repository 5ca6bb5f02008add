"""The hash-chained event log: appending an event (and queueing its webhook deliveries) in the
transaction of the change it records, sealing and publishing the chain's head, and the events
that are not about one request (outside changes).

Appends are serialised so each event links to the one committed before it: on PostgreSQL by a
transaction-scoped advisory lock, on SQLite by the database's write lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from checkpoint.storage import hashing, mail
from checkpoint.storage.base import StoreBase, aware, event_dict, to_event
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import Event, EventKind
from checkpoint.storage.models import DeliveryRow, EventRow, RequestRow

# pg_advisory_xact_lock key that serialises appends to the hash-chained event log
# (the migration lock in db.py uses another key).
AUDIT_LOCK = 0x43504155  # "CPAU"


class EventChain(StoreBase):
    """The Store's event log."""

    def _log(self, session: Session, row: RequestRow, kind: EventKind, actor: str, data: dict, stamp: datetime) -> None:
        self._append(session, row.id, row.model_name, kind, actor, data, stamp)

    def _append(
        self, session: Session, request_id: int | None, model_name: str, kind: EventKind, actor: str, data: dict, stamp: datetime
    ) -> EventRow:
        """Append one event to the hash chain, and its deliveries to the outbox.

        Appends are serialised so each event links to the one committed before it: on
        PostgreSQL by a transaction-scoped advisory lock, on SQLite by the write lock the
        transaction already holds (every caller writes before it logs; the flush makes sure).
        """
        session.flush()
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
        previous = session.scalar(select(EventRow.hash).order_by(EventRow.id.desc()).limit(1)) or hashing.GENESIS
        kid, key = self.keys.current or (None, None)
        event = EventRow(
            request_id=request_id,
            model_name=model_name,
            kind=str(kind),
            actor=actor,
            data=data,
            created_at=stamp,
            prev_hash=previous,
            hash="",
            key_id=kid,
        )
        session.add(event)
        session.flush()
        event.hash = hashing.event_hash(event_dict(event), previous, key)
        webhooks = list(self.subscribers(str(kind)))
        for name in webhooks:
            session.add(
                DeliveryRow(
                    id=str(uuid.uuid4()),
                    event_id=event.id,
                    webhook=name,
                    request_id=request_id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=stamp,
                    last_error="",
                    created_at=stamp,
                )
            )
        queued = len(webhooks)
        if self.recipients is not None:  # email rows, in this same transaction (storage/mail.py)
            session.flush()
            queued += mail.queue(session, self.recipients, event, stamp)
        on_commit = self.on_commit
        if queued and on_commit is not None:
            sa_event.listen(session, "after_commit", lambda _session: on_commit(), once=True)
        session.flush()
        return event

    @staticmethod
    def _lock_chain(session: Session) -> None:
        """Hold the chain's write lock before reading anything: PostgreSQL's advisory lock, or on
        SQLite the database's write lock (a no-op UPDATE takes it; a transaction that read first
        could not take it later without failing)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
        else:
            session.execute(text("UPDATE events SET kind = kind WHERE id < 0"))

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
            event = self._append(
                session,
                None,
                "",
                EventKind.AUDIT_KEY_ADOPTED,
                actor,
                {"key_id": current[0], "unkeyed_events": unkeyed, "after_event": head.id},
                self.clock.now(),
            )
            return event.id

    def publish_head(self, every: float, stamp: datetime | None = None) -> int | None:
        """Append an ``audit_head`` event carrying the log's head (``ID:HASH``) signed with the
        audit key, for the webhooks that keep a copy elsewhere; its id, or None when one was
        published less than ``every`` seconds before ``stamp`` or nothing happened since.
        Decided under the chain's lock, so one worker of one replica publishes each time."""
        current = self.keys.current
        if current is None:
            return None
        stamp = aware(stamp) or self.clock.now()
        newest = select(EventRow.id, EventRow.hash, EventRow.kind).order_by(EventRow.id.desc()).limit(1)
        last = select(EventRow.created_at).where(EventRow.kind == EventKind.AUDIT_HEAD).order_by(EventRow.id.desc()).limit(1)

        def due(session: Session):
            head = session.execute(newest).first()
            published = aware(session.scalar(last))
            fresh = published is not None and published > stamp - timedelta(seconds=every)
            return None if head is None or head.kind == EventKind.AUDIT_HEAD or fresh else head

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
            data = {"head": ref, "events": count, "key_id": current[0], "signature": hashing.sign_head(current[1], ref)}
            return self._append(session, None, "", EventKind.AUDIT_HEAD, "checkpoint", data, stamp).id

    def audit_rows(self, since: datetime | None = None, batch: int = 1000) -> Iterator[dict]:
        """Every event with its hashes, oldest first, read in batches (the log may be large)."""
        last = 0
        while True:
            query = select(EventRow).where(EventRow.id > last).order_by(EventRow.id).limit(batch)
            if since is not None:
                query = query.where(EventRow.created_at >= since)
            with session_scope(self.sessions) as session:
                rows = [event_dict(e) for e in session.scalars(query)]
            yield from rows
            if len(rows) < batch:
                return
            last = rows[-1]["id"]

    def record_outside_change(
        self,
        model_name: str,
        target: str,
        version: str | None,
        actor: str = "mlflow",
        workspace: str = "",
        holders: list[str] | None = None,
    ) -> bool:
        """Log that ``target`` of ``model_name`` (in MLflow ``workspace``) holds ``version`` without
        Checkpoint having put it there (for a stage: its newest holder; ``holders``, when given,
        every version in it, so the timeline knows which holders left).

        Compared, under the chain's lock, with the last state the log knows for the target
        (an applied request or an earlier outside change), so concurrent readers record it once.
        """
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
            known = self._last_known(session, model_name, target, workspace)
            if known == (version,) or (known is None and version is None):
                return False
            data = {
                "target": target,
                "version": version,
                "previous": known[0] if known else None,
                "first_seen": known is None,
                **({"workspace": workspace} if workspace else {}),
                **({"holders": holders} if holders is not None else {}),
            }
            self._append(session, None, model_name, EventKind.OUTSIDE_CHANGE, actor, data, stamp)
        return True

    def record_outside_files_change(
        self,
        model_name: str,
        target: str,
        version: str,
        before: str | None,
        after: str | None,
        actor: str = "mlflow",
        workspace: str = "",
    ) -> bool:
        """Log that the files of ``version`` (holding ``target``, in MLflow ``workspace``) changed
        without Checkpoint: their digest is ``after`` where Checkpoint last saw ``before``.
        Recorded once per new digest."""
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
            query = (
                select(EventRow)
                .where(EventRow.model_name == model_name, EventRow.kind == EventKind.OUTSIDE_CHANGE)
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
            data = {
                "target": target,
                "version": version,
                "files": True,
                "digest_before": before,
                "digest_after": after,
                "previous": version,
                "first_seen": False,
                **({"workspace": workspace} if workspace else {}),
            }
            self._append(session, None, model_name, EventKind.OUTSIDE_CHANGE, actor, data, stamp)
        return True

    @staticmethod
    def _last_known(session: Session, model_name: str, target: str, workspace: str = "") -> tuple[str | None] | None:
        """The version the log last saw at ``target`` (of the model of that name in ``workspace``),
        as a 1-tuple, or None if it never saw it."""
        query = (
            select(EventRow, RequestRow)
            .outerjoin(RequestRow, RequestRow.id == EventRow.request_id)
            .where(EventRow.model_name == model_name, EventRow.kind.in_((EventKind.APPLIED, EventKind.OUTSIDE_CHANGE)))
            .order_by(EventRow.id.desc())
        )
        for event, request in session.execute(query):
            if event.kind == EventKind.OUTSIDE_CHANGE and event.data.get("target") == target:
                if event.data.get("workspace", "") == workspace:
                    return (event.data.get("version"),)
                continue
            if event.kind == EventKind.APPLIED and request is not None and request.target == target:
                if (request.workspace or "") != workspace:
                    continue
                return (None,) if request.kind == "delete_alias" else (request.version,)
        return None

    def events(self, model: str | None = None) -> list[Event]:
        query = select(EventRow).order_by(EventRow.id)
        if model:
            query = query.where(EventRow.model_name == model)
        with session_scope(self.sessions) as session:
            return [to_event(e) for e in session.scalars(query)]
