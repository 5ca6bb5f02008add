"""Behavioural diffs: the stored results (``review/behaviour/`` computes them), one per pair of
contents, and the queue of runs the background thread claims.

A run is claimed with a conditional UPDATE (one worker of one replica wins; the claim is a
lease a crashed worker's successor may take over), and only the claim holder may write the
result, so a pair is scored once however many pages and workers ask for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from checkpoint.storage.base import aware
from checkpoint.storage.chain import EventChain
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import OPEN, Behaviour, EventKind
from checkpoint.storage.models import BehaviourRow, RequestRow

PENDING, RUNNING, DONE, ERROR = "pending", "running", "done", "error"


def to_behaviour(row: BehaviourRow) -> Behaviour:
    return Behaviour(
        row.key,
        row.workspace or "",
        row.champion,
        row.challenger,
        row.state,
        row.reason or "",
        row.result,
        aware(row.wanted_at),
        aware(row.claimed_at),
        aware(row.finished_at),
        row.evaluation,
        row.dataset_digest,
    )


class Behaviours(EventChain):
    """The Store's behavioural diffs."""

    def behaviour(self, key: str) -> Behaviour | None:
        with session_scope(self.sessions) as session:
            row = session.get(BehaviourRow, key)
            return to_behaviour(row) if row is not None else None

    def want_behaviour(
        self, key: str, workspace: str, champion: dict | None, challenger: dict, evaluation: list | None = None
    ) -> Behaviour:
        """The stored diff named ``key``, asked for (pending) when there is none yet
        (``evaluation``: the datasets it runs on, part of its key)."""
        found = self.behaviour(key)
        if found is not None:
            return found
        values = {
            "key": key,
            "workspace": workspace,
            "champion": champion,
            "challenger": challenger,
            "state": PENDING,
            "reason": "",
            "wanted_at": self.clock.now(),
            "evaluation": evaluation or None,
        }
        try:
            with session_scope(self.sessions) as session:
                session.execute(insert(BehaviourRow).values(**values))
        except IntegrityError:
            pass  # another page or worker asked first
        found = self.behaviour(key)
        assert found is not None
        return found

    def rerun_behaviour(self, key: str) -> bool:
        """Ask again for a diff that ended in an error (a done one is only read again: :meth:`refresh_behaviour`)."""
        query = update(BehaviourRow).where(BehaviourRow.key == key, BehaviourRow.state == ERROR)
        with session_scope(self.sessions) as session:
            values = {"state": PENDING, "reason": "", "result": None, "wanted_at": self.clock.now(), "finished_at": None}
            return session.execute(query.values(**values)).rowcount == 1

    def refresh_behaviour(self, key: str) -> bool:
        """Ask again for a done diff that has datasets: they are read and hashed again, and
        scored again only when their bytes changed (the previous result is kept meanwhile for
        the parts that are reused: the input examples and unchanged datasets)."""
        found = self.behaviour(key)
        if found is None or not found.evaluation:  # no datasets (stored as JSON null, not SQL NULL)
            return False
        query = update(BehaviourRow).where(BehaviourRow.key == key, BehaviourRow.state == DONE)
        with session_scope(self.sessions) as session:
            values = {"state": PENDING, "reason": "", "wanted_at": self.clock.now(), "finished_at": None}
            return session.execute(query.values(**values)).rowcount == 1

    @staticmethod
    def _behaviour_due(lease_before: datetime):
        return (
            BehaviourRow.wanted_at.is_not(None),
            BehaviourRow.state.in_((PENDING, RUNNING)),
            or_(BehaviourRow.claimed_at.is_(None), BehaviourRow.claimed_at < lease_before),
        )

    def wanted_behaviours(self, lease_before: datetime, limit: int = 5) -> list[str]:
        """Diffs asked for and not claimed by a live worker, oldest wish first."""
        query = select(BehaviourRow.key).where(*self._behaviour_due(lease_before)).order_by(BehaviourRow.wanted_at).limit(limit)
        with session_scope(self.sessions) as session:
            return list(session.scalars(query))

    def claim_behaviour(self, key: str, lease_before: datetime) -> datetime | None:
        """Claim an asked diff (one worker wins); the claim's stamp, or None."""
        stamp = self.clock.now()
        query = update(BehaviourRow).where(BehaviourRow.key == key, *self._behaviour_due(lease_before))
        with session_scope(self.sessions) as session:
            won = session.execute(query.values(state=RUNNING, claimed_at=stamp)).rowcount == 1
        return stamp if won else None

    def finish_behaviour(
        self,
        key: str,
        claimed_at: datetime,
        state: str,
        reason: str,
        result: dict | None,
        announce: tuple[list[int], dict] | None = None,
    ) -> bool:
        """Write a claimed diff's outcome (only the claim holder's write counts) and, in the same
        transaction, ``announce``'s ``behaviour_finished`` event (its data) on each of its
        requests: logged once per finished run, never without the outcome."""
        query = update(BehaviourRow).where(BehaviourRow.key == key, BehaviourRow.claimed_at == claimed_at)
        values = {"state": state, "reason": reason[:4000], "result": result, "wanted_at": None, "claimed_at": None}
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            if session.execute(query.values(finished_at=stamp, **values)).rowcount != 1:
                return False
            request_ids, data = announce or ([], {})
            for request_id in request_ids:
                row = session.get(RequestRow, request_id)
                if row is not None and row.state == OPEN:  # still to be decided: what reviewers weigh
                    self._log(session, row, EventKind.BEHAVIOUR_FINISHED, "checkpoint", data, stamp)
            return True

    def keep_dataset_scores(
        self, key: str, workspace: str, champion: dict | None, challenger: dict, digest: str, result: dict
    ) -> None:
        """Store one dataset's scores under ``key`` (done at once; a second writer's copy is the same)."""
        values: dict = {"key": key, "workspace": workspace, "champion": champion, "challenger": challenger, "state": DONE}
        values |= {"reason": "", "result": result, "dataset_digest": digest, "finished_at": self.clock.now()}
        try:
            with session_scope(self.sessions) as session:
                session.execute(insert(BehaviourRow).values(**values))
        except IntegrityError:
            pass  # scored already (by another worker): the same numbers
