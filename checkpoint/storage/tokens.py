"""The Store's API tokens: rows keyed by the SHA-256 of the secret, handed out as ``Token``
entities. What a token may do, and how its secret is made and checked, is ``checkpoint/tokens.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from checkpoint.storage.base import StoreBase, aware
from checkpoint.storage.db import session_scope
from checkpoint.storage.models import TokenRow

MAX_TOKEN_ID = 2**31 - 1


@dataclass(frozen=True)
class Token:
    """One token as stored: never its secret."""

    id: int
    owner: str
    name: str
    hint: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict:
        def stamp(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "hint": self.hint,
            "scopes": list(self.scopes),
            "created_at": stamp(self.created_at),
            "expires_at": stamp(self.expires_at),
            "last_used_at": stamp(self.last_used_at),
            "revoked_at": stamp(self.revoked_at),
        }


def _token(row: TokenRow) -> Token:
    return Token(
        row.id,
        row.owner,
        row.name,
        row.hint,
        tuple(row.scopes or ()),
        aware(row.created_at),
        aware(row.expires_at),
        aware(row.last_used_at),
        aware(row.revoked_at),
    )


class Tokens(StoreBase):
    """Create, list, find and revoke tokens; stamp their use."""

    def add_token(self, owner: str, name: str, secret_hash: str, hint: str, scopes: tuple[str, ...], expires: datetime) -> Token:
        stamp = self.clock.now()
        row = TokenRow(owner=owner, name=name, secret_hash=secret_hash, hint=hint, scopes=list(scopes), created_at=stamp)
        row.expires_at = expires
        with session_scope(self.sessions) as session:
            session.add(row)
            session.flush()
            return _token(row)

    def tokens_of(self, owner: str) -> list[Token]:
        """The owner's tokens, newest first, revoked and expired ones included (the list says which)."""
        with session_scope(self.sessions) as session:
            rows = session.scalars(select(TokenRow).where(TokenRow.owner == owner).order_by(TokenRow.id.desc()))
            return [_token(r) for r in rows]

    def token_by_hash(self, secret_hash: str) -> Token | None:
        with session_scope(self.sessions) as session:
            row = session.scalar(select(TokenRow).where(TokenRow.secret_hash == secret_hash))
            return _token(row) if row is not None else None

    def revoke_token(self, token_id: int, owner: str) -> Token | None:
        """Revoke the owner's token (again is a no-op); None when the owner has no such token."""
        if not 1 <= token_id <= MAX_TOKEN_ID:
            return None
        stamp = self.clock.now()
        with session_scope(self.sessions) as session:
            session.execute(
                update(TokenRow)
                .where(TokenRow.id == token_id, TokenRow.owner == owner, TokenRow.revoked_at.is_(None))
                .values(revoked_at=stamp)
            )
            row = session.scalar(select(TokenRow).where(TokenRow.id == token_id, TokenRow.owner == owner))
            return _token(row) if row is not None else None

    def touch_token(self, token_id: int, at: datetime, every: timedelta) -> bool:
        """Record a use at ``at`` unless one was recorded less than ``every`` before: at most one
        write per token per ``every``, however often it is used (one conditional UPDATE)."""
        with session_scope(self.sessions) as session:
            query = (
                update(TokenRow)
                .where(TokenRow.id == token_id, or_(TokenRow.last_used_at.is_(None), TokenRow.last_used_at <= at - every))
                .values(last_used_at=at)
            )
            return session.execute(query).rowcount == 1
