"""API tokens: how a pipeline, which cannot do single sign-on, calls Checkpoint's API as its owner.

A user creates a token for themself (never for anyone else: the owner is always the caller of
``create``), names it, gives it scopes and a life in days. The secret, ``cpt_`` and 43
URL-safe characters (256 random bits), is shown once; only its SHA-256 is stored. A password
KDF (bcrypt, argon2) exists to slow guessing of low-entropy secrets people choose; a random
256-bit secret cannot be guessed, so a plain hash suffices and keeps every call's lookup one
indexed equality (no per-row salt, no slow hash on the hot path).

Scopes limit what the token's owner can do through it (``web/scopes.py`` says which route
needs which); the workflow still checks the owner's own rights (self-approval, MANAGE, ...).
``review`` and ``break-glass`` may only be given by users an admin lists in
``CHECKPOINT_TOKEN_ELEVATED_USERS``, checked at creation and again at every use, so taking a
user off the list takes those scopes off their tokens at once. A token never creates, lists
or revokes tokens: that needs a real login.

Every token call reads the token's row (revocation and expiry hold at once, on every replica);
the use is recorded at most once per ``TOUCH_EVERY`` (one conditional UPDATE), so a pipeline
calling every second costs one write per five minutes, not one per call.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from checkpoint.clock import Clock
from checkpoint.errors import CheckpointError
from checkpoint.identity import TOKEN_PREFIX, Unauthenticated, User
from checkpoint.storage.tokens import Token, Tokens

log = logging.getLogger("checkpoint.tokens")

READ, REQUEST, STATUS, REVIEW, BREAK_GLASS = "read", "request", "status", "review", "break-glass"
SCOPES = (READ, REQUEST, STATUS, REVIEW, BREAK_GLASS)
# Scopes that decide what production loads: only for users an admin lists.
ELEVATED = frozenset({REVIEW, BREAK_GLASS})
TOUCH_EVERY = timedelta(minutes=5)
NAME_MAX = 100
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
_SECRET = re.compile(r"^cpt_[A-Za-z0-9_-]{43}$")
# How long an owner's MLflow record (exists, admin) is kept before it is asked again (mlflow mode).
OWNER_TTL = 30.0


class TokenError(CheckpointError):
    """A token request Checkpoint refuses (bad field, not allowed)."""


def new_secret() -> str:
    """``cpt_`` and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _unauthenticated(message: str) -> Unauthenticated:
    return Unauthenticated(message, (("WWW-Authenticate", 'Bearer realm="checkpoint", error="invalid_token"'),))


class OwnerLookup:
    """Who a token's owner is now, asked of the identity source: in ``mlflow`` mode MLflow's
    ``users/get`` with Checkpoint's own account (the owner's password is never held), cached
    ``OWNER_TTL`` seconds; elsewhere the configured admins by name."""

    def __init__(self, admins: frozenset[str], mlflow_user: Callable[[str], dict | None] | None = None) -> None:
        self.admins = admins
        self.mlflow_user = mlflow_user
        self._cache: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> User | None:
        if self.mlflow_user is None:
            return User(name, is_admin=name in self.admins, verified=True)
        with self._lock:
            cached = self._cache.get(name)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        record = self.mlflow_user(name)
        user = None if record is None else User(name, is_admin=bool(record.get("is_admin")), verified=True)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[name] = (time.monotonic() + OWNER_TTL, user)
        return user


class TokenService:
    """Creating, listing, revoking and checking tokens."""

    def __init__(self, store: Tokens, clock: Clock, owners: OwnerLookup, elevated_users: frozenset[str], max_days: int) -> None:
        self.store = store
        self.clock = clock
        self.owners = owners
        self.elevated_users = elevated_users
        self.max_days = max_days

    def allowed_scopes(self, user: User) -> tuple[str, ...]:
        """The scopes ``user`` may give a token."""
        return tuple(s for s in SCOPES if s not in ELEVATED or user.name in self.elevated_users)

    def create(self, user: User, name: object, scopes: object, expires_in_days: object) -> tuple[Token, str]:
        """A new token for ``user`` (a real login) and its secret, the only time it is seen."""
        self._real_login(user)
        if not isinstance(name, str) or not _NAME.match(name.strip() or "\x00"):
            raise TokenError(400, "INVALID_PARAMETER_VALUE", f"name must be 1 to {NAME_MAX} printable characters")
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
            raise TokenError(400, "INVALID_PARAMETER_VALUE", f"scopes must be a non-empty list of: {', '.join(SCOPES)}")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise TokenError(
                400, "INVALID_PARAMETER_VALUE", f"unknown scope(s) {', '.join(map(repr, unknown))}: expected {', '.join(SCOPES)}"
            )
        denied = sorted(set(scopes) - set(self.allowed_scopes(user)))
        if denied:
            raise TokenError(
                403,
                "PERMISSION_DENIED",
                f"{user.name} may not give a token the {', '.join(denied)} scope: an admin must list you in "
                "CHECKPOINT_TOKEN_ELEVATED_USERS",
            )
        if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int) or not 1 <= expires_in_days <= self.max_days:
            raise TokenError(
                400, "INVALID_PARAMETER_VALUE", f"expires_in_days must be a whole number of days from 1 to {self.max_days}"
            )
        secret = new_secret()
        ordered = tuple(s for s in SCOPES if s in scopes)
        expires = self.clock.now() + timedelta(days=expires_in_days)
        token = self.store.add_token(user.name, name.strip(), digest(secret), secret[:8], ordered, expires)
        log.info("token %s (%r, %s) created by %s, expires %s", token.id, token.name, ",".join(ordered), user.name, expires)
        return token, secret

    def list(self, user: User) -> list[Token]:
        self._real_login(user)
        return self.store.tokens_of(user.name)

    def revoke(self, user: User, token_id: int) -> Token:
        """Revoke one of ``user``'s own tokens; another user's token is answered as missing."""
        self._real_login(user)
        token = self.store.revoke_token(token_id, user.name)
        if token is None:
            raise TokenError(404, "RESOURCE_DOES_NOT_EXIST", f"you have no token #{token_id}")
        log.info("token %s (%r) revoked by %s", token.id, token.name, user.name)
        return token

    def authenticate(self, secret: str) -> User:
        """The token's owner as a caller limited to the token's scopes; a clear 401 otherwise."""
        if not _SECRET.match(secret):
            raise _unauthenticated("this is not a Checkpoint token (cpt_ and 43 characters): check CHECKPOINT_TOKEN")
        token = self.store.token_by_hash(digest(secret))
        if token is None:
            raise _unauthenticated("unknown token: it was never issued here, or was mistyped")
        at = self.clock.now()
        if token.revoked_at is not None:
            raise _unauthenticated(f"token {token.name!r} was revoked at {token.revoked_at.isoformat()}: create a new one")
        if token.expires_at <= at:
            raise _unauthenticated(f"token {token.name!r} expired at {token.expires_at.isoformat()}: create a new one")
        owner = self.owners(token.owner)
        if owner is None:
            raise _unauthenticated(f"the owner of token {token.name!r} is no longer a user of MLflow")
        scopes = frozenset(token.scopes)
        if token.owner not in self.elevated_users:  # taken off the list: the elevated scopes go at once
            scopes -= ELEVATED
        self.store.touch_token(token.id, at, TOUCH_EVERY)
        return User(token.owner, owner.email, owner.groups, owner.is_admin, verified=True, scopes=scopes, token_id=token.id)

    @staticmethod
    def _real_login(user: User) -> None:
        if user.scopes is not None:
            raise TokenError(403, "PERMISSION_DENIED", "a token cannot create, list or revoke tokens: sign in to do that")
        if user.anonymous:
            raise TokenError(401, "UNAUTHENTICATED", "sign in to manage your tokens")
