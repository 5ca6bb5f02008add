"""The webhook outbox: deliveries queued with their event (see ``EventChain._append``), claimed
by the sender, settled, re-sent.

A delivery is claimed with a conditional UPDATE (due, and nothing earlier for the same webhook
and request still unsent), so two senders never hold the same row, and events of one request
reach a receiver in order. ``next_attempt_at`` doubles as the lease of a ``sending`` row: once
it passes, the sender is presumed dead and the row is due again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from checkpoint.storage.base import StoreBase, to_delivery, to_event, to_request
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import (
    DELIVERED,
    GAVE_UP,
    OPEN,
    PENDING,
    SENDING,
    UNSENT,
    Delivery,
    DeliveryBusy,
    EventKind,
    NotFound,
    Outgoing,
)
from checkpoint.storage.models import CommentRow, DeliveryRow, EventRow, RequestRow


class Outbox(StoreBase):
    """The Store's webhook deliveries."""

    def claim_deliveries(self, leases: dict[str, float], limit: int = 8) -> list[Outgoing]:
        """Claim up to ``limit`` due deliveries of the webhooks in ``leases`` (name → lease
        seconds), oldest event first, each with what its payload is built from."""
        if not leases:
            return []
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
        due = (DeliveryRow.status.in_(UNSENT), DeliveryRow.next_attempt_at <= stamp, ~blocked)
        query = select(DeliveryRow.id, DeliveryRow.webhook).where(*due, DeliveryRow.webhook.in_(list(leases)))
        with session_scope(self.sessions) as session:
            candidates = session.execute(query.order_by(DeliveryRow.event_id).limit(limit)).all()
        claimed = []
        for delivery_id, webhook in candidates:
            lease = stamp + timedelta(seconds=leases[webhook])
            with session_scope(self.sessions) as session:
                result = session.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.id == delivery_id, *due)
                    .values(status=SENDING, attempts=DeliveryRow.attempts + 1, next_attempt_at=lease)
                )
                if result.rowcount == 1:
                    claimed.append(self._outgoing(session, session.get(DeliveryRow, delivery_id)))
        return claimed

    def delivery_done(self, delivery_id: str, status: int | None, error: str = "", retry_at: datetime | None = None) -> bool:
        """Record a send: delivered (no ``error``), due again at ``retry_at``, or failed for good.
        Only while this sender still holds the claim (an admin's resend wins)."""
        values: dict = {"last_status": status, "last_error": error[:2000]}
        if not error:
            values.update(status=DELIVERED, delivered_at=self.clock.now())
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
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id, DeliveryRow.status.in_((PENDING, DELIVERED, GAVE_UP)))
                .values(status=PENDING, attempts=0, next_attempt_at=self.clock.now(), delivered_at=None)
            )
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFound(f"delivery {delivery_id} does not exist")
            if result.rowcount != 1:
                raise DeliveryBusy(f"delivery {delivery_id} is being sent right now; try again in a moment")
            return to_delivery(row)

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        webhook: str | None = None,
        request_id: int | None = None,
        before: tuple[int, str] | None = None,
        limit: int = 50,
        hidden_models: Iterable[str] = (),
    ) -> tuple[list[Delivery], tuple[int, str] | None]:
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
            query = query.where(
                or_(DeliveryRow.event_id < event_id, (DeliveryRow.event_id == event_id) & (DeliveryRow.id < delivery_id))
            )
        query = query.order_by(DeliveryRow.event_id.desc(), DeliveryRow.id.desc()).limit(limit + 1)
        with session_scope(self.sessions) as session:
            rows = session.execute(query).all()
        items = [to_delivery(row, kind, model) for row, kind, model in rows[:limit]]
        return items, ((items[-1].event_id, items[-1].id) if len(rows) > limit else None)

    @staticmethod
    def _outgoing(session: Session, row: DeliveryRow) -> Outgoing:
        """A claimed delivery with its event, its request, and the request's state (and title, when
        the log records it) right after the event: read from the log, so a re-send describes the
        same moment."""
        event = session.get(EventRow, row.event_id)
        assert event is not None  # deliveries.event_id is a foreign key to events.id
        request = session.get(RequestRow, event.request_id) if event.request_id is not None else None
        state = title = behaviour = None
        if request is not None:
            logged = [
                (kind, d)
                for kind, d in session.execute(
                    select(EventRow.kind, EventRow.data)
                    .where(EventRow.request_id == request.id, EventRow.id <= event.id)
                    .order_by(EventRow.id.desc())
                )
                if isinstance(d, dict)
            ]
            earlier = [d for kind, d in logged if kind != EventKind.BEHAVIOUR_FINISHED]  # a summary is no transition
            state = next((d["to"] for d in earlier if isinstance(d.get("to"), str)), OPEN)
            title = next((d["title"] for d in earlier if isinstance(d.get("title"), str)), request.title)
            behaviour = next((d for kind, d in logged if kind == EventKind.BEHAVIOUR_FINISHED), None)
        comment = None
        if event.kind == EventKind.COMMENTED and isinstance(event.data, dict) and event.data.get("comment_id"):
            found = session.get(CommentRow, event.data["comment_id"])
            comment = found.body if found is not None else None
        return Outgoing(
            to_delivery(row, event.kind),
            to_event(event),
            to_request(request) if request else None,
            state,
            comment,
            title,
            behaviour,
        )

    def delivery_backlog(self) -> int:
        """Webhook deliveries not yet delivered nor given up on (pending or being sent)."""
        with session_scope(self.sessions) as session:
            return session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.status.in_(UNSENT))) or 0
