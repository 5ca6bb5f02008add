"""Statuses posted by CI: append-only rows, each written with its ``status_changed`` events in
one transaction (``review/statuses.py`` decides what they mean)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, select

from checkpoint.storage.base import aware, to_request
from checkpoint.storage.chain import EventChain
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import OPEN, EventKind, PostedStatus, PromoteRequest
from checkpoint.storage.models import RequestChangeRow, RequestRow, StatusRow

# How many rows of history one read returns at most (a CI loop posting "pending" forever).
HISTORY_LIMIT = 500


def to_status(row: StatusRow) -> PostedStatus:
    return PostedStatus(
        row.id,
        row.request_id,
        row.workspace or "",
        row.model_name,
        row.version,
        row.digest,
        row.context,
        row.state,
        row.target_url,
        row.description,
        row.actor,
        aware(row.created_at),
    )


def status_event(row: StatusRow) -> dict:
    """What the ``status_changed`` event records (and a webhook receives as ``event``)."""
    return {
        "status_id": row.id,
        "scope": "request" if row.request_id is not None else "version",
        "context": row.context,
        "state": row.state,
        "target_url": row.target_url,
        "description": row.description,
        "workspace": row.workspace or "",
        "model": row.model_name,
        "version": row.version,
        "digest": row.digest,
    }


class Statuses(EventChain):
    """The Store's statuses."""

    def add_status(
        self,
        *,
        request_id: int | None,
        workspace: str,
        model_name: str,
        version: str | None,
        digest: str | None,
        context: str,
        state: str,
        target_url: str,
        description: str,
        actor: str,
        for_requests: Sequence[int] = (),
    ) -> PostedStatus:
        """Store one status and log ``status_changed``: on its request, or (a version's) on each
        request in ``for_requests``, or about the model alone when no request is open for it."""
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            rows = [self._row(session, request_id)] if request_id is not None else []
            rows += [self._row(session, i) for i in dict.fromkeys(for_requests) if i != request_id]
            status = StatusRow(
                request_id=request_id,
                workspace=workspace,
                model_name=model_name,
                version=version,
                digest=digest,
                context=context,
                state=state,
                target_url=target_url,
                description=description,
                actor=actor,
                created_at=stamp,
            )
            session.add(status)
            session.flush()
            data = status_event(status)
            for row in rows:
                self._log(session, row, EventKind.STATUS_CHANGED, actor, data, stamp)
            if not rows:
                self._append(session, None, model_name, EventKind.STATUS_CHANGED, actor, data, stamp)
            return to_status(status)

    def statuses_of(self, requests: Iterable[PromoteRequest]) -> dict[int, list[PostedStatus]]:
        """Every status row that may speak for each request, oldest first: its own rows, and the
        rows posted on each version it promotes (a batch: every change's challenger, which
        ``request_changes`` holds, migration 0016). Two queries for the whole page, not one per
        request."""
        ids = [request.id for request in requests]
        found: dict[int, list[StatusRow]] = {request_id: [] for request_id in ids}
        if not ids:
            return {}
        own = select(StatusRow).where(StatusRow.request_id.in_(ids))
        promoted = (
            select(StatusRow, RequestChangeRow.request_id)
            .join(
                RequestChangeRow,
                and_(
                    RequestChangeRow.workspace == StatusRow.workspace,
                    RequestChangeRow.challenger_model == StatusRow.model_name,
                    RequestChangeRow.challenger_version == StatusRow.version,
                ),
            )
            .where(StatusRow.request_id.is_(None), RequestChangeRow.request_id.in_(ids))
        )
        with session_scope(self.sessions) as session:
            for row in session.scalars(own):
                found[row.request_id].append(row)
            for row, request_id in session.execute(promoted):
                found[request_id].append(row)
            return {request_id: [to_status(r) for r in sorted(rows, key=lambda r: r.id)] for request_id, rows in found.items()}

    def version_statuses(self, workspace: str, model_name: str, version: str) -> list[PostedStatus]:
        """The statuses posted on one version, newest first (at most ``HISTORY_LIMIT``)."""
        query = (
            select(StatusRow)
            .where(
                StatusRow.request_id.is_(None),
                StatusRow.workspace == workspace,
                StatusRow.model_name == model_name,
                StatusRow.version == version,
            )
            .order_by(StatusRow.id.desc())
            .limit(HISTORY_LIMIT)
        )
        with session_scope(self.sessions) as session:
            return [to_status(r) for r in session.scalars(query)]

    def open_requests_promoting(self, workspace: str, model_name: str, version: str) -> list[PromoteRequest]:
        """Open requests one change of which promotes that version: a promotion of it, or a copy
        of it into another model (``prod.*``), a batch's later changes as much as its first."""
        promotes = (
            select(RequestChangeRow.request_id)
            .where(
                RequestChangeRow.request_id == RequestRow.id,
                RequestChangeRow.workspace == workspace,
                RequestChangeRow.challenger_model == model_name,
                RequestChangeRow.challenger_version == version,
            )
            .exists()
        )
        query = select(RequestRow).where(RequestRow.state == OPEN, promotes).order_by(RequestRow.id).limit(HISTORY_LIMIT)
        with session_scope(self.sessions) as session:
            return [to_request(r) for r in session.scalars(query)]
