"""How an event row is chained: its keyed hash, the key's fingerprint, a signed head.

The store writes chained rows with these; :mod:`checkpoint.events.audit` verifies and
exports the chain with the same functions (its docstring says why the chain is built so).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from checkpoint.storage.entities import EventKind

GENESIS = "0" * 64
FIELDS = ("id", "request_id", "model_name", "kind", "actor", "data", "created_at")
# The event a keyed Checkpoint appends when it finds the log's newest event unkeyed: from
# then on the older events are covered by a keyed event's prev_hash.
SEALED = EventKind.AUDIT_KEY_ADOPTED
# The event that publishes the head (``audit_head`` webhooks): a copy of it kept elsewhere is
# what ``verify --expect`` checks the log against later.
HEAD = EventKind.AUDIT_HEAD
_HEAD_LABEL = "checkpoint audit head v1"
# The fixed label whose HMAC under a key is that key's id: it names the key and reveals nothing.
_KEY_ID_LABEL = b"checkpoint audit key id v1"
MIN_KEY_LENGTH = 32


def key_id(secret: str | bytes) -> str:
    """The fingerprint stored in ``events.key_id`` (32 hex characters)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Keyring:
    """The audit keys, newest first: the first signs new events, all of them verify."""

    keys: tuple[bytes, ...] = ()
    ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(key_id(k) for k in self.keys))

    @classmethod
    def of(cls, *secrets: str) -> Keyring:
        return cls(tuple(dict.fromkeys(s.encode() for s in secrets if s)))

    @property
    def current(self) -> tuple[str, bytes] | None:
        return (self.ids[0], self.keys[0]) if self.keys else None

    def rank(self, kid: str) -> int | None:
        """0 for the current key, 1 for the one before it, ...; None for a key not given."""
        return self.ids.index(kid) if kid in self.ids else None

    def __bool__(self) -> bool:
        return bool(self.keys)


def sign_head(key: bytes, ref: str) -> str:
    """HMAC-SHA256 of a head ``ID:HASH`` under the audit key: whoever holds the key can tell a
    published head came from Checkpoint (the webhook's own signature proves only the sender)."""
    return hmac.new(key, f"{_HEAD_LABEL}\n{ref}".encode(), hashlib.sha256).hexdigest()


def head_is_signed(keys: Keyring, ref: str, kid: str, signature: str) -> bool:
    rank = keys.rank(kid)
    return rank is not None and hmac.compare_digest(sign_head(keys.keys[rank], ref), signature)


def timestamp(value: datetime) -> str:
    """One spelling of an instant, whatever the database handed back (SQLite: naive UTC)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def canonical(event: dict) -> str:
    body = {key: event[key] for key in FIELDS}
    body["created_at"] = timestamp(event["created_at"])
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event: dict, prev_hash: str, key: bytes | None = None) -> str:
    """HMAC-SHA256 under ``key``; without one, the plain SHA-256 of events made before keys."""
    message = f"{prev_hash}\n{canonical(event)}".encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
