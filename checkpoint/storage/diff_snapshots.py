"""Diff snapshots: the stored inputs of each request page's diff (``review/diff_snapshots.py``
reads and encodes them), and the queue of refreshes the background thread claims.

Writes are safe from every worker of every replica at once: a refresh is claimed with a
conditional UPDATE (one worker wins, the claim is a lease), and every write of a snapshot is
conditional on being newer than the stored one (``taken_at``, when its read began), so two
writers of one snapshot leave the newer read whatever the order they finish in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from checkpoint.storage.base import StoreBase, aware, check_id
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import MAX_ID, DiffSnapshot
from checkpoint.storage.models import DiffSnapshotRow, RequestRow

_EMPTY = {"raw_bytes": 0, "error": ""}


def to_snapshot(row: DiffSnapshotRow) -> DiffSnapshot:
    return DiffSnapshot(
        row.request_id,
        row.key,
        row.data,
        row.raw_bytes or 0,
        aware(row.taken_at),
        aware(row.wanted_at),
        aware(row.claimed_at),
        row.error or "",
    )


class DiffSnapshots(StoreBase):
    """The Store's diff snapshots."""

    def diff_snapshot(self, request_id: int) -> DiffSnapshot | None:
        check_id(request_id)
        with session_scope(self.sessions) as session:
            row = session.get(DiffSnapshotRow, request_id)
            return to_snapshot(row) if row is not None else None

    def want_diff_snapshots(self, request_ids: Iterable[int]) -> None:
        """Ask for a refresh of these requests' snapshots (kept if one is asked already: the
        oldest wish is served first). A request that does not exist is skipped."""
        stamp = self.clock.now()
        for request_id in dict.fromkeys(i for i in request_ids if 1 <= i <= MAX_ID):
            with session_scope(self.sessions) as session:
                asked = update(DiffSnapshotRow).where(
                    DiffSnapshotRow.request_id == request_id, DiffSnapshotRow.wanted_at.is_(None)
                )
                if session.execute(asked.values(wanted_at=stamp)).rowcount:
                    continue
                if session.get(DiffSnapshotRow, request_id) is not None:
                    continue  # asked already
                if session.get(RequestRow, request_id) is None:
                    continue
            self._insert(request_id, wanted_at=stamp)

    def _insert(self, request_id: int, **values) -> bool:
        """Create the request's row; False when another writer created it first."""
        try:
            with session_scope(self.sessions) as session:
                session.execute(insert(DiffSnapshotRow).values(request_id=request_id, **{**_EMPTY, **values}))
        except IntegrityError:
            return False
        return True

    def wanted_diff_snapshots(self, lease_before: datetime, limit: int = 20) -> list[int]:
        """Requests whose refresh is asked and not claimed by a live worker, oldest wish first."""
        query = (
            select(DiffSnapshotRow.request_id)
            .where(*self._due(lease_before))
            .order_by(DiffSnapshotRow.wanted_at, DiffSnapshotRow.request_id)
            .limit(limit)
        )
        with session_scope(self.sessions) as session:
            return list(session.scalars(query))

    @staticmethod
    def _due(lease_before: datetime):
        return (
            DiffSnapshotRow.wanted_at.is_not(None),
            or_(DiffSnapshotRow.claimed_at.is_(None), DiffSnapshotRow.claimed_at < lease_before),
        )

    def claim_diff_snapshot(self, request_id: int, lease_before: datetime) -> datetime | None:
        """Claim an asked refresh (a conditional UPDATE: one worker wins); the claim's stamp."""
        stamp = self.clock.now()
        query = update(DiffSnapshotRow).where(DiffSnapshotRow.request_id == request_id, *self._due(lease_before))
        with session_scope(self.sessions) as session:
            won = session.execute(query.values(claimed_at=stamp)).rowcount == 1
        return stamp if won else None

    def save_diff_snapshot(
        self,
        request_id: int,
        key: str,
        data: bytes,
        raw_bytes: int,
        taken_at: datetime,
        claimed_at: datetime | None = None,
    ) -> bool:
        """Store a snapshot whose read began at ``taken_at``, unless a newer one is stored.
        ``claimed_at``: written by the claim holder, which also ends the claim and the wish
        (unless the wish is newer than the read: then it stays asked). False: nothing written."""
        values = {"key": key, "data": data, "raw_bytes": raw_bytes, "taken_at": taken_at, "error": ""}
        newer = or_(DiffSnapshotRow.taken_at.is_(None), DiffSnapshotRow.taken_at < taken_at)
        where = [DiffSnapshotRow.request_id == request_id, newer]
        with session_scope(self.sessions) as session:
            if claimed_at is not None:
                owned = [*where, DiffSnapshotRow.claimed_at == claimed_at]
                done = session.execute(update(DiffSnapshotRow).where(*owned).values(claimed_at=None, **values)).rowcount
                self._served(session, request_id, taken_at)
                if not done:  # a newer read was stored meanwhile: end the claim all the same
                    self._release(session, request_id, claimed_at, "")
                return bool(done)
            if session.execute(update(DiffSnapshotRow).where(*where).values(**values)).rowcount:
                self._served(session, request_id, taken_at)
                return True
            if session.get(DiffSnapshotRow, request_id) is not None:
                return False  # a newer read is stored
        return self._insert(request_id, **values)

    @staticmethod
    def _served(session, request_id: int, taken_at: datetime) -> None:
        """A wish made before the read began is served by it."""
        session.execute(
            update(DiffSnapshotRow)
            .where(DiffSnapshotRow.request_id == request_id, DiffSnapshotRow.wanted_at <= taken_at)
            .values(wanted_at=None)
        )

    def fail_diff_snapshot(self, request_id: int, claimed_at: datetime, error: str) -> None:
        """End a claim whose read failed: the error is kept for the page, the wish is dropped
        (a page view or the next move asks again; retrying at once would hammer a sick MLflow)."""
        with session_scope(self.sessions) as session:
            self._release(session, request_id, claimed_at, error[:2000])
            session.execute(
                update(DiffSnapshotRow)
                .where(DiffSnapshotRow.request_id == request_id, DiffSnapshotRow.wanted_at <= claimed_at)
                .values(wanted_at=None)
            )

    @staticmethod
    def _release(session, request_id: int, claimed_at: datetime, error: str) -> None:
        owned = update(DiffSnapshotRow).where(DiffSnapshotRow.request_id == request_id, DiffSnapshotRow.claimed_at == claimed_at)
        session.execute(owned.values(claimed_at=None, **({"error": error} if error else {})))
