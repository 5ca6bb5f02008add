"""SQLAlchemy table definitions. Only :mod:`checkpoint.storage.store` touches these rows;
everything above it gets plain entities (:mod:`checkpoint.entities`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RequestRow(Base):
    """One promote request: a registry change waiting for, or past, its review."""

    __tablename__ = "promote_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(600))
    change: Mapped[dict] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    challenger: Mapped[dict] = mapped_column(JSON)
    champion: Mapped[dict | None] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    apply_result: Mapped[str] = mapped_column(Text, default="")
    named_reviewers: Mapped[list] = mapped_column(JSON, default=list)
    rule_name: Mapped[str] = mapped_column(String(200), default="default")
    # MLflow's workspace (X-MLFLOW-WORKSPACE) the change acts in; "" is the default workspace.
    workspace: Mapped[str] = mapped_column(String(256), default="", server_default="")
    # When it is to apply (None: once approved); what an approved request waits for (migration 0007).
    apply_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    waiting_kind: Mapped[str | None] = mapped_column(String(16))
    waiting_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    waiting_name: Mapped[str | None] = mapped_column(String(200))
    # A rollback request's record (review/rollback.py): what it puts back, what it undoes, and
    # whether Checkpoint's log proves it; NULL for every other request. Written once, at opening.
    rollback: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # A batch request's changes, in the order they apply, each with its snapshots and rule
    # (review/batching.py; migration 0012); NULL for a request holding one change in ``change``.
    changes: Mapped[list | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_requests_state_id", "state", "id"),
        Index("ix_requests_model_id", "model_name", "id"),
        Index("ix_requests_author_id", "author", "id"),
        Index("ix_requests_target_id", "target", "id"),
        Index("ix_requests_workspace_model_id", "workspace", "model_name", "id"),
        Index("ix_requests_state_waiting", "state", "waiting_until"),
        # At most one open request per (author, change): retries find it instead of duplicating.
        Index(
            "ux_requests_open_dedupe",
            "dedupe_key",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
    )


class RequestChangeRow(Base):
    """One change of a request: what it acts on and the version it promotes (``change_index.py``;
    migration 0016). Every list, filter and visibility check reads these, so a batch's second
    change counts as much as its first."""

    __tablename__ = "request_changes"

    request_id: Mapped[int] = mapped_column(Integer, ForeignKey("promote_requests.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace: Mapped[str] = mapped_column(String(256), default="", server_default="")
    model_name: Mapped[str] = mapped_column(String(512))
    target: Mapped[str] = mapped_column(String(600))
    challenger_model: Mapped[str | None] = mapped_column(String(512))
    challenger_version: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_request_changes_model", "workspace", "model_name", "request_id"),
        Index("ix_request_changes_model_name", "model_name", "request_id"),  # the filter without a workspace
        Index("ix_request_changes_target", "target", "request_id"),
        Index("ix_request_changes_challenger", "workspace", "challenger_model", "challenger_version"),
    )


class ReviewRow(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("promote_requests.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(256))
    verdict: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dismissed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dismissed_reason: Mapped[str] = mapped_column(Text, default="")
    # The challenger's content digest when the review was given (None: no challenger, or older).
    digest: Mapped[str | None] = mapped_column(String(64))
    # When the background work recorded this approval as expired (its rule's approvals_expire_after).
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CommentRow(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("promote_requests.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EventRow(Base):
    """Append-only history; written in the same transaction as the change it records.

    Hash-chained (:mod:`checkpoint.events.audit`): ``hash`` covers the event's canonical JSON and
    ``prev_hash``, the previous event's ``hash``, so editing, deleting or reordering a row
    breaks the chain at that row.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("promote_requests.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(512), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(256))
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Fingerprint of the audit key the hash was made with (None: plain SHA-256, before keys).
    key_id: Mapped[str | None] = mapped_column(String(32))


class CheckRow(Base):
    """The latest result of one check on one request (history is in the events)."""

    __tablename__ = "check_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("promote_requests.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    required: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(8))  # pass / fail / error / pending
    reason: Mapped[str] = mapped_column(Text, default="")
    trigger: Mapped[str] = mapped_column(String(16))  # open / refresh / apply / manual
    evaluated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("request_id", "name", name="ux_check_results_request_name"),)


class StatusRow(Base):
    """One status posted by CI (``review/statuses.py``): on a request, or on a model version (then
    ``request_id`` is NULL and it counts for every request promoting that version). Append-only:
    the latest per context wins, the rows before it are the history. ``digest`` is the content
    digest of the version the status speaks for, when it was posted (NULL: none was readable)."""

    __tablename__ = "statuses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("promote_requests.id", ondelete="CASCADE"))
    workspace: Mapped[str] = mapped_column(String(256), default="", server_default="")
    model_name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str | None] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(String(100))
    context: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(8))  # pending / success / failure / error
    target_url: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_statuses_request_id", "request_id", "id"),
        Index("ix_statuses_version", "workspace", "model_name", "version", "id"),
    )


class DeliveryRow(Base):
    """The outbox: one row per (event, webhook) and per (event, person emailed), written with the event itself."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the delivery id receivers dedupe on
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    webhook: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # pending / sending / delivered / failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Email rows only (``webhook`` is ``email:<person>``): where it goes, and why (storage/mail.py).
    address: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_deliveries_order", "webhook", "request_id", "event_id"),
        Index("ux_deliveries_event_webhook", "event_id", "webhook", unique=True),
    )


class PersonRow(Base):
    """One person's email: the address their sign-in carried, and how they want email."""

    __tablename__ = "people"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    email_mode: Mapped[str] = mapped_column(String(16), default="each", server_default="each")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    """One API token (``checkpoint/tokens.py``): only the SHA-256 of its secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole token
    hint: Mapped[str] = mapped_column(String(16))  # the prefix and first characters, to recognise it in a list
    scopes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("secret_hash", name="ux_api_tokens_secret_hash"),
        Index("ix_api_tokens_owner", "owner"),
    )


class BehaviourRow(Base):
    """One behavioural diff (``review/behaviour/``), named by ``key``: the champion's and the
    challenger's content digests and what they ran on. ``champion``/``challenger``: the
    versions (name, version, digest) of the first request that asked, whose files are run.
    ``state``: pending, running, done or error (``reason`` says why); ``result``: the numbers.
    ``evaluation``: the rule's datasets it runs on; ``dataset_digest``: set on a row that caches
    one dataset's scores (never queued: written done by the run that scored it)."""

    __tablename__ = "behaviour_results"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(256), default="")
    champion: Mapped[dict | None] = mapped_column(JSON)
    challenger: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict | None] = mapped_column(JSON)
    wanted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    evaluation: Mapped[list | None] = mapped_column(JSON)
    dataset_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_behaviour_results_wanted", "wanted_at"),
        Index("ix_behaviour_results_dataset", "dataset_digest"),
    )


class DiffSnapshotRow(Base):
    """What the request page's diff needs, read from MLflow off the page's path (one row per
    request; ``review/diff_snapshots.py``). ``key`` names the two versions and their content
    digests the read was of: a page whose versions or digests differ does not use it.
    ``wanted_at``: a refresh is asked; ``claimed_at``: a worker is reading (a lease)."""

    __tablename__ = "diff_snapshots"

    request_id: Mapped[int] = mapped_column(ForeignKey("promote_requests.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # zlib-compressed JSON of both sides' inputs
    raw_bytes: Mapped[int] = mapped_column(Integer, default=0)  # the JSON's size before compression
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # when the read began
    wanted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str] = mapped_column(Text, default="")  # the last refresh's failure ("" when it worked)

    __table_args__ = (Index("ix_diff_snapshots_wanted", "wanted_at"),)
