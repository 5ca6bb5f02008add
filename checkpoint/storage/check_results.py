"""Check results: the latest result of each declared check on a request, and the queue of
HTTP checks the background thread claims (a conditional UPDATE: one worker wins)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import or_, select, update

from checkpoint.storage.base import check_event, to_check
from checkpoint.storage.chain import EventChain
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import CHECK_QUEUED, CHECK_RUNNING, FAILED, MAX_ID, OPEN, CheckResult, EventKind
from checkpoint.storage.models import CheckRow, RequestRow


class CheckResults(EventChain):
    """The Store's check results."""

    def record_checks(self, request_id: int, results: Sequence[CheckResult], *, keep: Iterable[str], actor: str) -> None:
        """Store one round of check results (dropping rows of checks no longer declared: not in
        ``keep``), logging ``check_failed`` for each that became fail or error, in one transaction."""
        keep = set(keep)
        stamp = self.clock.now()
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
                    self._log(session, row, EventKind.CHECK_FAILED, actor, check_event(result), stamp)

    def check_results(self, request_ids: Iterable[int]) -> dict[int, list[CheckResult]]:
        """The stored check results of each request (one query for a page of requests)."""
        ids = [i for i in dict.fromkeys(request_ids) if 1 <= i <= MAX_ID]
        out: dict[int, list[CheckResult]] = {i: [] for i in ids}
        if ids:
            query = select(CheckRow).where(CheckRow.request_id.in_(ids)).order_by(CheckRow.id)
            with session_scope(self.sessions) as session:
                for row in session.scalars(query):
                    out[row.request_id].append(to_check(row))
        return out

    def _due_check(self, lease_before: datetime):
        """Pending, and queued or claimed by a worker whose lease ran out; on a request still undecided."""
        undecided = (
            select(RequestRow.id).where(RequestRow.id == CheckRow.request_id, RequestRow.state.in_((OPEN, FAILED))).exists()
        )
        return (
            CheckRow.status == "pending",
            undecided,
            or_(CheckRow.reason == CHECK_QUEUED, CheckRow.evaluated_at < lease_before),
        )

    def due_checks(self, kind: str, lease_before: datetime, limit: int = 20) -> list[CheckResult]:
        query = select(CheckRow).where(CheckRow.kind == kind, *self._due_check(lease_before))
        with session_scope(self.sessions) as session:
            return [to_check(r) for r in session.scalars(query.order_by(CheckRow.evaluated_at, CheckRow.id).limit(limit))]

    def claim_check(self, request_id: int, name: str, lease_before: datetime) -> datetime | None:
        """Claim a due check for evaluation (a conditional UPDATE: one worker wins); the claim's stamp."""
        stamp = self.clock.now()
        query = update(CheckRow).where(CheckRow.request_id == request_id, CheckRow.name == name, *self._due_check(lease_before))
        with session_scope(self.sessions) as session:
            won = session.execute(query.values(reason=CHECK_RUNNING, evaluated_at=stamp)).rowcount == 1
        return stamp if won else None

    def settle_check(self, request_id: int, name: str, claimed_at: datetime, status: str, reason: str, actor: str) -> bool:
        """Record a claimed check's result, only if it was not queued again meanwhile (that round wins)."""
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id, lock=True)
            current = session.scalar(
                select(CheckRow).where(
                    CheckRow.request_id == request_id,
                    CheckRow.name == name,
                    CheckRow.status == "pending",
                    CheckRow.reason == CHECK_RUNNING,
                    CheckRow.evaluated_at == claimed_at,
                )
            )
            if current is None:
                return False
            current.status, current.reason, current.evaluated_at = status, reason, stamp
            if status in ("fail", "error"):
                self._log(session, row, EventKind.CHECK_FAILED, actor, check_event(to_check(current)), stamp)
        return True

    def open_checks_of_kind(self, kind: str, after: int = 0, limit: int = 200) -> list[CheckResult]:
        """The stored results of checks of ``kind`` on open requests, by request id after ``after``
        (the soak task's candidates: it judges each again and moves on those that passed)."""
        query = (
            select(CheckRow)
            .join(RequestRow, RequestRow.id == CheckRow.request_id)
            .where(CheckRow.kind == kind, RequestRow.state == OPEN, CheckRow.request_id > after)
            .order_by(CheckRow.request_id, CheckRow.id)
            .limit(limit)
        )
        with session_scope(self.sessions) as session:
            return [to_check(r) for r in session.scalars(query)]
