"""Promote requests, their reviews and comments: each change a conditional write, with its
event appended in the same transaction (exactly-once is the database's job)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from checkpoint.storage.base import about, aware, check_id, to_request, to_review, visible
from checkpoint.storage.chain import EventChain
from checkpoint.storage.change_index import index_rows
from checkpoint.storage.db import session_scope
from checkpoint.storage.entities import APPLIED, APPLYING, MAX_ID, OPEN, WAITING, Comment, EventKind, PromoteRequest, Review
from checkpoint.storage.models import CommentRow, EventRow, RequestChangeRow, RequestRow, ReviewRow
from checkpoint.storage.schedules import waiting_clause
from checkpoint.storage.title_search import searching


def _reindex(session, row: RequestRow) -> None:
    """Write ``row``'s ``request_changes`` afresh (in the caller's transaction)."""
    session.execute(delete(RequestChangeRow).where(RequestChangeRow.request_id == row.id))
    for item in index_rows(row.workspace, row.model_name, row.target, row.challenger, row.changes):
        session.add(RequestChangeRow(request_id=row.id, **item))
    session.flush()


class Requests(EventChain):
    """The Store's requests, reviews and comments."""

    # -- writes ----------------------------------------------------------------------

    def open_request(self, *, author: str, dedupe_key: str, event_data: dict, **values) -> tuple[PromoteRequest, bool]:
        """Insert an open request, or return the open one with the same (author, change)."""
        stamp = self.clock.now()
        try:
            with session_scope(self.sessions) as session:
                row = RequestRow(author=author, dedupe_key=dedupe_key, state=OPEN, created_at=stamp, updated_at=stamp, **values)
                session.add(row)
                session.flush()
                _reindex(session, row)
                self._log(session, row, EventKind.OPENED, author, event_data, stamp)
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
        self,
        request_id: int,
        from_states: Iterable[str],
        to_state: str,
        *,
        actor: str,
        event: EventKind,
        data: dict | None = None,
        reason: str | None = None,
        updated_before: datetime | None = None,
        **updates,
    ) -> bool:
        """Move a request between states if (and only if) it is in one of ``from_states``
        (and, with ``updated_before``, has not changed since then: the reconciler's lease)."""
        check_id(request_id)
        stamp = self.clock.now()
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

    def update_fields(self, request_id: int, *, actor: str, event: EventKind, data: dict, **values) -> None:
        """Edit a request's own fields (title, description, snapshots) with an event."""
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            for key, value in values.items():
                setattr(row, key, value)
            if {"challenger", "changes"} & set(values):  # a refreshed snapshot may name another version
                _reindex(session, row)
            row.updated_at = stamp
            self._log(session, row, event, actor, data, stamp)

    def log_step(self, request_id: int, model_name: str, *, actor: str, event: EventKind, data: dict) -> None:
        """One step of a request's apply that acts on ``model_name`` (a batch's change, which may
        be another model than the request's first): logged under that model, so its history and
        timeline see it. Stamps the request's ``updated_at``, as the apply is alive."""
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            row.updated_at = stamp
            self._append(session, row.id, model_name, event, actor, data, stamp)

    def add_review(
        self, request_id: int, reviewer: str, verdict: str, comment: str, *, states: Iterable[str], digest: str | None = None
    ) -> bool:
        """Record a verdict, only while the request is in one of ``states`` (``digest``: the
        challenger's content digest the verdict was given on)."""
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id, lock=True)
            if row.state not in tuple(states):
                return False
            session.add(
                ReviewRow(
                    request_id=request_id,
                    reviewer=reviewer,
                    verdict=verdict,
                    comment=comment,
                    created_at=stamp,
                    dismissed_reason="",
                    digest=digest,
                )
            )
            row.updated_at = stamp
            kind = EventKind.REVIEW_APPROVED if verdict == "approve" else EventKind.REVIEW_REJECTED
            data = {"comment": comment, **({"digest": digest} if digest else {})}
            self._log(session, row, kind, reviewer, data, stamp)
        return True

    def dismiss_reviews(self, request_id: int, reason: str, actor: str) -> int:
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            result = session.execute(
                update(ReviewRow)
                .where(ReviewRow.request_id == request_id, ReviewRow.dismissed_at.is_(None))
                .values(dismissed_at=stamp, dismissed_reason=reason)
            )
            if result.rowcount:
                self._log(session, row, EventKind.APPROVALS_DISMISSED, actor, {"reason": reason, "count": result.rowcount}, stamp)
            return result.rowcount

    def expire_approval(self, review_id: int, *, approved_before: datetime, states: Iterable[str], data: dict) -> bool:
        """Record that approval ``review_id`` expired, with its ``approval_expired`` event in the
        same transaction: a conditional UPDATE (still counting, given at or before ``approved_before``,
        its request in one of ``states``), so of several workers and replicas one records it."""
        stamp = self.clock.now()
        undecided = (
            select(RequestRow.id).where(RequestRow.id == ReviewRow.request_id, RequestRow.state.in_(tuple(states))).exists()
        )
        claim = (
            update(ReviewRow)
            .where(
                ReviewRow.id == review_id,
                ReviewRow.verdict == "approve",
                ReviewRow.dismissed_at.is_(None),
                ReviewRow.expired_at.is_(None),
                ReviewRow.created_at <= approved_before,
                undecided,
            )
            .values(expired_at=stamp)
        )
        with session_scope(self.sessions) as session:
            if session.execute(claim).rowcount != 1:
                return False
            review = session.get(ReviewRow, review_id)
            assert review is not None  # just updated
            row = self._row(session, review.request_id)
            approved_at = aware(review.created_at).isoformat()
            event = {"review_id": review_id, "reviewer": review.reviewer, "approved_at": approved_at, **data}
            self._log(session, row, EventKind.APPROVAL_EXPIRED, "checkpoint", event, stamp)
        return True

    def add_comment(self, request_id: int, author: str, body: str) -> Comment:
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            comment = CommentRow(request_id=request_id, author=author, body=body, created_at=stamp)
            session.add(comment)
            session.flush()
            self._log(session, row, EventKind.COMMENTED, author, {"comment_id": comment.id}, stamp)
            return Comment(comment.id, author, body, stamp)

    # -- reads -----------------------------------------------------------------------

    def get(self, request_id: int) -> PromoteRequest:
        with session_scope(self.sessions) as session:
            row = self._row(session, request_id)
            reviews = session.scalars(select(ReviewRow).where(ReviewRow.request_id == request_id).order_by(ReviewRow.id))
            comments = session.scalars(select(CommentRow).where(CommentRow.request_id == request_id).order_by(CommentRow.id))
            events = session.scalars(select(EventRow).where(EventRow.request_id == request_id).order_by(EventRow.id))
            return to_request(row, list(reviews), list(comments), list(events))

    def approvals_before(
        self, approved_before: datetime, states: Iterable[str], after: int = 0, limit: int = 200
    ) -> list[tuple[PromoteRequest, Review]]:
        """Approvals still counting that were given at or before ``approved_before``, on requests in
        one of ``states``, by review id after ``after``: the candidates for expiry, each with its
        request (without its reviews, comments or events)."""
        query = (
            select(ReviewRow, RequestRow)
            .join(RequestRow, RequestRow.id == ReviewRow.request_id)
            .where(
                ReviewRow.verdict == "approve",
                ReviewRow.dismissed_at.is_(None),
                ReviewRow.expired_at.is_(None),
                ReviewRow.created_at <= approved_before,
                RequestRow.state.in_(tuple(states)),
                ReviewRow.id > after,
            )
            .order_by(ReviewRow.id)
            .limit(limit)
        )
        with session_scope(self.sessions) as session:
            return [(to_request(request), to_review(review)) for review, request in session.execute(query)]

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
            return [to_request(row) for row in session.scalars(query)]

    def list_requests(
        self,
        *,
        state: str | None = None,
        model: str | None = None,
        target: str | None = None,
        author: str | None = None,
        search: str | None = None,
        before: int | None = None,
        limit: int = 50,
        hidden: Iterable[tuple[str, str]] = (),
        workspace: str | None = None,
        undecided_by: str | None = None,
        not_author: str | None = None,
    ) -> tuple[list[PromoteRequest], int | None]:
        """Newest first; ``before`` is the cursor (an id), so pages are stable under inserts.
        ``hidden`` (workspace, model) pairs are left out: models the caller may not read.
        ``workspace`` ("" = the default one) filters by MLflow workspace; None lists them all.
        ``undecided_by`` leaves out requests that user's review still stands on (neither
        dismissed nor recorded expired); ``not_author`` those that user opened (the inbox)."""
        query = visible(select(RequestRow), hidden)
        if undecided_by is not None:
            decided = select(ReviewRow.id).where(
                ReviewRow.request_id == RequestRow.id,
                ReviewRow.reviewer == undecided_by,
                ReviewRow.dismissed_at.is_(None),
                ReviewRow.expired_at.is_(None),
            )
            query = query.where(~decided.exists())
        if not_author is not None:
            query = query.where(RequestRow.author != not_author)
        if state == WAITING:
            query = query.where(waiting_clause())
        elif state:
            query = query.where(RequestRow.state == state)
        query = about(query, model, target, workspace)
        if author:
            query = query.where(RequestRow.author == author)
        if before is not None and before > MAX_ID:  # beyond MAX_ID every id is before it
            before = None
        if before is not None:
            query = query.where(RequestRow.id < before)
        with session_scope(self.sessions) as session:
            order = RequestRow.id
            if search:
                query, order = searching(session, query, search, before)
            rows = list(session.scalars(query.order_by(order.desc()).limit(limit + 1)))
            page = rows[:limit]
            # One query for the page's reviews, so the list can say "1 of 2 approvals".
            reviews: dict[int, list[ReviewRow]] = {r.id: [] for r in page}
            if page:
                for review in session.scalars(select(ReviewRow).where(ReviewRow.request_id.in_(list(reviews)))):
                    reviews[review.request_id].append(review)
            items = [to_request(r, reviews[r.id]) for r in page]
        return items, (items[-1].id if len(rows) > limit else None)

    def count(
        self,
        state: str | None = None,
        model: str | None = None,
        hidden: Iterable[tuple[str, str]] = (),
        workspace: str | None = None,
    ) -> int:
        query = visible(select(func.count(RequestRow.id)), hidden)
        if state == WAITING:
            query = query.where(waiting_clause())
        elif state:
            query = query.where(RequestRow.state == state)
        query = about(query, model, workspace=workspace)
        with session_scope(self.sessions) as session:
            return session.scalar(query) or 0

    def request_models(self, state: str | None = None) -> set[tuple[str, str]]:
        """The distinct (workspace, model) pairs of requests (in ``state``): what a count may hide."""
        query = select(RequestChangeRow.workspace, RequestChangeRow.model_name).distinct()
        if state:
            query = query.join(RequestRow, RequestRow.id == RequestChangeRow.request_id).where(RequestRow.state == state)
        with session_scope(self.sessions) as session:
            return {(w or "", m) for w, m in session.execute(query)}

    def last_applied_challenger(self, model_name: str, target: str, workspace: str = "") -> dict | None:
        """The challenger snapshot (with its digest) of the last request applied to ``target`` (of
        the model of that name in MLflow ``workspace``)."""
        query = (
            select(RequestRow.challenger)
            .where(
                RequestRow.model_name == model_name,
                RequestRow.target == target,
                RequestRow.state == APPLIED,
                RequestRow.workspace == workspace,
            )
            .order_by(RequestRow.applied_at.desc(), RequestRow.id.desc())
            .limit(1)
        )
        with session_scope(self.sessions) as session:
            return session.scalar(query) or None
