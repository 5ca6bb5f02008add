"""A request's time: when it is to apply (``apply_at``), what an approved one waits for (a
freeze, its schedule), and releasing it once that has passed, each a conditional UPDATE with
its event in the same transaction, so of several workers and replicas exactly one wins.

"Waiting" is not a state of its own: the request stays ``approved`` (every part that reads
states, the expiry of approvals among them, sees it as approved and not applied), with the
``waiting_*`` columns saying for what and until when. The list's ``waiting`` filter reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, or_, select, update

from checkpoint.storage.base import aware, check_id, to_request
from checkpoint.storage.chain import EventChain
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import APPLYING, APPROVED, OPEN, WITHDRAWN, EventKind, PromoteRequest, Waiting
from checkpoint.storage.models import RequestRow

NOT_WAITING = {"waiting_kind": None, "waiting_until": None, "waiting_name": None}


def waiting_clause():
    """The rows of approved requests that wait for something (the list's ``waiting`` filter)."""
    return and_(RequestRow.state == APPROVED, RequestRow.waiting_kind.is_not(None))


class Schedules(EventChain):
    """The Store's scheduled and waiting applies."""

    def schedule(self, request_id: int, apply_at: datetime | None, *, actor: str, states: Iterable[str], data: dict) -> bool:
        """Set (or clear) when the request is to apply, while it is in one of ``states``; logs ``scheduled``."""
        check_id(request_id)
        stamp = self.clock.now()
        query = update(RequestRow).where(RequestRow.id == request_id, RequestRow.state.in_(tuple(states)))
        with session_scope(self.sessions) as session:
            if session.execute(query.values(apply_at=apply_at, updated_at=stamp)).rowcount != 1:
                return False
            row = self._row(session, request_id)
            at = apply_at.isoformat() if apply_at else None
            self._log(session, row, EventKind.SCHEDULED, actor, {"apply_at": at, **data}, stamp)
        return True

    def wait(self, request_id: int, waiting: Waiting, *, actor: str, data: dict) -> bool:
        """Record what an approved request waits for (logs ``waiting``); False when it is not
        approved any more, or already waits for exactly that (nothing to record)."""
        check_id(request_id)
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id, lock=True)  # one recorder at a time per request
            if row.state != APPROVED:
                return False
            if (row.waiting_kind, aware(row.waiting_until), row.waiting_name) == (waiting.kind, waiting.until, waiting.name):
                return False
            row.waiting_kind, row.waiting_until, row.waiting_name = waiting.kind, waiting.until, waiting.name
            row.updated_at = stamp
            self._log(session, row, EventKind.WAITING, actor, {"waiting_for": waiting.to_json(), **data}, stamp)
        return True

    def release(self, request_id: int, *, actor: str, data: dict) -> bool:
        """Claim a waiting request whose time came (the caller decided that, with the policy and
        the clock): approved → applying in one conditional UPDATE (still approved, still waiting),
        with ``released`` and ``applying`` logged in its transaction. One caller wins; it applies."""
        check_id(request_id)
        stamp = self.clock.now()
        query = update(RequestRow).where(
            RequestRow.id == request_id,
            RequestRow.state == APPROVED,
            RequestRow.waiting_kind.is_not(None),
        )
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            until = aware(row.waiting_until)
            before = {"kind": row.waiting_kind, "until": until.isoformat() if until else None, "name": row.waiting_name}
            if session.execute(query.values(state=APPLYING, updated_at=stamp, **NOT_WAITING)).rowcount != 1:
                return False
            session.refresh(row)
            self._log(session, row, EventKind.RELEASED, actor, {"waited_for": before, **data}, stamp)
            self._log(session, row, EventKind.APPLYING, actor, {"from": [APPROVED], "to": APPLYING}, stamp)
        return True

    def cancel(self, request_id: int, *, actor: str, reason: str, data: dict) -> bool:
        """Call off a scheduled or waiting apply: an open request with ``apply_at``, or an approved
        one that waits, becomes withdrawn (logs ``cancelled``). False when it is neither."""
        check_id(request_id)
        stamp = self.clock.now()
        query = update(RequestRow).where(
            RequestRow.id == request_id,
            or_(and_(RequestRow.state == OPEN, RequestRow.apply_at.is_not(None)), waiting_clause()),
        )
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            was = row.state
            values = {"state": WITHDRAWN, "state_reason": reason, "updated_at": stamp, **NOT_WAITING}
            if session.execute(query.values(**values)).rowcount != 1:
                return False
            session.refresh(row)
            self._log(session, row, EventKind.CANCELLED, actor, {"from": [was], "to": WITHDRAWN, **data}, stamp)
        return True

    def waiting_requests(self, after: int = 0, limit: int = 200) -> list[PromoteRequest]:
        """Approved requests that wait for something, by id after ``after`` (without reviews)."""
        query = select(RequestRow).where(waiting_clause(), RequestRow.id > after).order_by(RequestRow.id).limit(limit)
        with session_scope(self.sessions) as session:
            return [to_request(row) for row in session.scalars(query)]
