"""What every part of the Store shares: the session factory, the event-log settings, the
lookup of one request row, and the conversion of rows into the plain entities it hands out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import overload

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from checkpoint.clock import SYSTEM, Clock
from checkpoint.storage import hashing
from checkpoint.storage.entities import (
    MAX_ID,
    CheckResult,
    Comment,
    Delivery,
    Event,
    NotFound,
    PromoteRequest,
    Review,
    Waiting,
)
from checkpoint.storage.models import CheckRow, DeliveryRow, EventRow, RequestChangeRow, RequestRow, ReviewRow


class StoreBase:
    """The state the Store's parts share (see ``Store`` for what each argument means)."""

    def __init__(
        self,
        sessions: sessionmaker,
        subscribers: Callable[[str], Sequence[str]] | None = None,
        on_commit: Callable[[], None] | None = None,
        keys: hashing.Keyring | None = None,
        clock: Clock = SYSTEM,
        recipients: Callable | None = None,
    ) -> None:
        self.sessions = sessions
        # Who is emailed about an event (storage/mail.py's RecipientsHook); None: no email.
        self.recipients = recipients
        self.subscribers = subscribers or (lambda kind: ())
        self.on_commit = on_commit
        self.keys = keys or hashing.Keyring()
        self.clock = clock

    @staticmethod
    def _row(session: Session, request_id: int, lock: bool = False) -> RequestRow:
        check_id(request_id)
        query = select(RequestRow).where(RequestRow.id == request_id)
        if lock:
            query = query.with_for_update()
        row = session.scalar(query)
        if row is None:
            raise NotFound(f"promote request #{request_id} does not exist")
        return row


def check_id(request_id: int) -> None:
    if not 1 <= request_id <= MAX_ID:
        raise NotFound(f"promote request #{request_id} does not exist")


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
@overload
def aware(value: datetime | None) -> datetime | None: ...
def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def to_request(row: RequestRow, reviews=(), comments=(), events=()) -> PromoteRequest:
    return PromoteRequest(
        id=row.id,
        kind=row.kind,
        model_name=row.model_name,
        version=row.version,
        target=row.target,
        change=row.change,
        title=row.title,
        description=row.description,
        author=row.author,
        state=row.state,
        state_reason=row.state_reason,
        challenger=row.challenger,
        champion=row.champion,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        applied_at=aware(row.applied_at),
        apply_result=row.apply_result,
        named_reviewers=tuple(row.named_reviewers or ()),
        rule_name=row.rule_name,
        workspace=row.workspace or "",
        rollback=row.rollback or None,
        changes=tuple(row.changes) if row.changes else None,
        apply_at=aware(row.apply_at),
        waiting_for=_waiting(row),
        reviews=tuple(to_review(r) for r in reviews),
        comments=tuple(Comment(c.id, c.author, c.body, aware(c.created_at)) for c in comments),
        events=tuple(to_event(e) for e in events),
    )


def _waiting(row: RequestRow) -> Waiting | None:
    if row.waiting_kind is None or row.waiting_until is None:
        return None
    return Waiting(row.waiting_kind, aware(row.waiting_until), row.waiting_name)


def to_review(r: ReviewRow) -> Review:
    return Review(
        r.id,
        r.reviewer,
        r.verdict,
        r.comment,
        aware(r.created_at),
        aware(r.dismissed_at),
        r.dismissed_reason,
        r.digest,
        aware(r.expired_at),
    )


def to_event(e: EventRow) -> Event:
    return Event(e.id, e.request_id, e.model_name, e.kind, e.actor, e.data, aware(e.created_at), e.prev_hash, e.hash)


def event_dict(e: EventRow) -> dict:
    return {
        "id": e.id,
        "request_id": e.request_id,
        "model_name": e.model_name,
        "kind": e.kind,
        "actor": e.actor,
        "data": e.data,
        "created_at": e.created_at,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
        "key_id": e.key_id,
    }


def to_check(row: CheckRow) -> CheckResult:
    return CheckResult(
        row.request_id, row.name, row.kind, row.required, row.status, row.reason, row.trigger, aware(row.evaluated_at)
    )


def check_event(result: CheckResult) -> dict:
    return {
        "check": result.name,
        "kind": result.kind,
        "required": result.required,
        "status": result.status,
        "reason": result.reason,
        "trigger": result.trigger,
    }


def to_delivery(row: DeliveryRow, kind: str = "", model: str = "") -> Delivery:
    return Delivery(
        row.id,
        row.event_id,
        row.webhook,
        row.request_id,
        row.status,
        row.attempts,
        aware(row.next_attempt_at),
        row.last_status,
        row.last_error,
        aware(row.created_at),
        aware(row.delivered_at),
        kind,
        model,
    )


def visible(query, hidden: Iterable[tuple[str, str]]):
    """``query`` over requests without those any change of which is about one of the
    ``hidden`` (workspace, model) pairs (a batch's second change hides it as its first does)."""
    pairs = sorted(set(hidden))
    if not pairs:
        return query
    hit = or_(*(and_(RequestChangeRow.workspace == w, RequestChangeRow.model_name == m) for w, m in pairs))
    return query.where(~select(RequestChangeRow.request_id).where(RequestChangeRow.request_id == RequestRow.id, hit).exists())


def about(query, model: str | None = None, target: str | None = None, workspace: str | None = None):
    """``query`` over requests one change of which is about ``model`` (and ``target``, and in
    MLflow ``workspace``, all of that same change); None: any."""
    if not model and not target and workspace is None:
        return query
    where = []
    if model:
        where.append(RequestChangeRow.model_name == model)
    if target:
        where.append(RequestChangeRow.target == target)
    if workspace is not None:
        where.append(RequestChangeRow.workspace == workspace)
    changes = select(RequestChangeRow.request_id).where(*where)
    if model:  # few requests each: read them from the model's index, newest first (not a probe of every request)
        return query.where(RequestRow.id.in_(changes))
    return query.where(changes.where(RequestChangeRow.request_id == RequestRow.id).exists())
