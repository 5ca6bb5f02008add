"""Who is calling, in one of three modes (``CHECKPOINT_AUTH``):

* ``mlflow`` — MLflow runs its basic-auth app. The caller's ``Authorization`` header is
  checked with MLflow (``GET /api/2.0/mlflow/users/current``); answers are cached briefly
  by a hash of the header, never the password itself.
* ``header`` — behind an SSO proxy (oauth2-proxy and the like): user, email and groups come
  from configured headers, trusted only from ``CHECKPOINT_TRUSTED_PROXIES``; from anywhere
  else they are ignored, and they are stripped before a call is forwarded to MLflow.
* ``none`` — the demo's default: names are claimed, not verified (the MLflow client's
  Basic-auth username, or the name a visitor picked in the browser).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import urllib3

from checkpoint.errors import ConfigError

if TYPE_CHECKING:
    from checkpoint.settings import Settings

ANONYMOUS = "anonymous"
# Checkpoint's API tokens start with this (tokens.py), so secret scanners can find a leaked one.
TOKEN_PREFIX = "cpt_"
# The header keys (``HTTP_...``) a request carried more than once: set by Checkpoint's servers
# (serving.py), which otherwise join repeats with "," as gunicorn and werkzeug do.
REPEATED_KEY = "checkpoint.repeated_headers"


# The name this module's errors had before there was one ConfigError.
IdentityError = ConfigError


class Unauthenticated(Exception):
    """The caller must (re-)authenticate: answered 401 with ``headers``."""

    def __init__(self, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


@dataclass(frozen=True)
class User:
    name: str
    email: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False
    verified: bool = False
    # What a token caller may do (tokens.SCOPES); None: a real login, which the scopes do not limit.
    scopes: frozenset[str] | None = None
    token_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.name == ANONYMOUS

    def may(self, scope: str) -> bool:
        """Whether this caller's credentials allow ``scope`` (a login always does; its rights are the workflow's)."""
        return self.scopes is None or scope in self.scopes


def bearer_token(environ: Mapping) -> str | None:
    """The Checkpoint token in ``Authorization: Bearer cpt_...``, if that is what the call sends."""
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value.startswith(TOKEN_PREFIX):
        return value
    return None


def basic_username(header: str) -> str | None:
    """The username in an ``Authorization: Basic ...`` header, if well-formed."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0].strip()
    return user or None


GroupsOf = Callable[[str], frozenset[str]]


def _address(value: str) -> str | None:
    """Header mode's email header when it holds one well-formed address, else None: the value
    becomes an email's ``To`` and is stored, so a list, a display name or a line break in it
    (a proxy passing through what a user typed) is never used."""
    from checkpoint.events.notifications.people import valid_address  # events imports identity

    value = value.strip()
    return value if value and valid_address(value) else None


def no_groups(name: str) -> frozenset[str]:
    return frozenset()


def user_from_environ(environ: dict, cookie_user: str | None = None) -> str:
    """The claimed name in ``none`` mode (kept for callers that only need a name)."""
    return basic_username(environ.get("HTTP_AUTHORIZATION", "")) or cookie_user or ANONYMOUS


class NoAuth:
    """Claimed names; nothing is verified. Every page says so."""

    mode = "none"
    forwarded_drop: frozenset[str] = frozenset()

    def __init__(self, admins: frozenset[str] = frozenset(), groups_of: GroupsOf = no_groups) -> None:
        self.admins = admins
        self.groups_of = groups_of  # the policy file's ``groups:`` (a claimed name carries none)

    def user(self, environ: dict, session_user: str | None = None) -> User:
        name = user_from_environ(environ, session_user)
        groups = frozenset() if name == ANONYMOUS else self.groups_of(name)
        return User(name, groups=groups, is_admin=name in self.admins)


class HeaderAuth:
    """Identity asserted by a trusted SSO proxy in request headers."""

    mode = "header"

    def __init__(
        self,
        trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
        user_header: str,
        email_header: str,
        groups_header: str,
        admins: frozenset[str],
        admin_groups: frozenset[str],
        groups_of: GroupsOf = no_groups,
    ) -> None:
        self.trusted = trusted
        self.groups_of = groups_of  # the policy file's ``groups:``, for a sign-in that sends none
        self.keys = tuple("HTTP_" + h.upper().replace("-", "_") for h in (user_header, email_header, groups_header))
        self.names = dict(zip(self.keys, (user_header, email_header, groups_header), strict=True))
        self.forwarded_drop = frozenset(self.keys)
        self.admins = admins
        self.admin_groups = admin_groups

    def trusts(self, environ: dict) -> bool:
        try:
            peer = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(peer in network for network in self.trusted)

    def repeated(self, environ: dict) -> list[str]:
        """The identity headers this request sent more than once. Joined, two ``X-Forwarded-Groups``
        read as one longer list: an appended ``admins`` made a user admin. Never guess which one counts."""
        seen = environ.get(REPEATED_KEY) or ()
        return [self.names[key] for key in self.keys if key in seen]

    def user(self, environ: dict, session_user: str | None = None) -> User:
        user_key, email_key, groups_key = self.keys
        name = environ.get(user_key, "").strip()
        if not name or not self.trusts(environ):
            raise Unauthenticated("no identity from a trusted single sign-on proxy: reach Checkpoint through it")
        groups = frozenset(g.strip() for g in environ.get(groups_key, "").split(",") if g.strip())
        groups = groups or self.groups_of(name)
        is_admin = name in self.admins or bool(groups & self.admin_groups)
        return User(name, _address(environ.get(email_key, "")), groups, is_admin, verified=True)


class MlflowAuth:
    """Identity verified by MLflow's basic-auth app, cached for ``ttl`` seconds."""

    mode = "mlflow"
    forwarded_drop: frozenset[str] = frozenset()
    challenge = (("WWW-Authenticate", 'Basic realm="mlflow"'),)

    def __init__(self, registry_url: str, ttl: float = 30.0, max_entries: int = 10_000, groups_of: GroupsOf = no_groups) -> None:
        self.groups_of = groups_of  # MLflow's users have no groups: the policy file's ``groups:``
        self.url = registry_url.rstrip("/") + "/api/2.0/mlflow/users/current"
        self.http = urllib3.PoolManager(maxsize=8, retries=False, timeout=urllib3.Timeout(connect=5, read=15))
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, User]] = {}
        self._lock = threading.Lock()

    def user(self, environ: dict, session_user: str | None = None) -> User:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header:
            raise Unauthenticated("sign in with your MLflow user name and password", self.challenge)
        key = hashlib.sha256(header.encode()).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        user = self._verify(header)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + self.ttl, user)
        return user

    def _verify(self, header: str) -> User:
        try:
            answer = self.http.request("GET", self.url, headers={"Authorization": header})
        except urllib3.exceptions.HTTPError as exc:
            raise Unauthenticated(f"MLflow at {self.url} could not verify the caller: {exc}") from exc
        if answer.status == 404:
            answer = self._verify_v2(header)
        if answer.status in (401, 403):
            raise Unauthenticated("MLflow did not accept these credentials", self.challenge)
        try:
            data = json.loads(answer.data)["user"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthenticated(
                f"MLflow's {self.url} answered {answer.status} without a user: is it running --app-name basic-auth?"
            ) from exc
        name = data["username"]
        return User(name, groups=self.groups_of(name), is_admin=bool(data.get("is_admin")), verified=True)

    def _verify_v2(self, header: str) -> urllib3.BaseHTTPResponse:
        """MLflow 2.x has no ``users/current``; a user may read their own record with ``users/get``."""
        scheme, _, encoded = header.partition(" ")
        try:
            username = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError) as exc:
            raise Unauthenticated("send your MLflow user name and password with Basic auth", self.challenge) from exc
        if scheme.lower() != "basic" or not username:
            raise Unauthenticated("send your MLflow user name and password with Basic auth", self.challenge)
        url = self.url.rsplit("/", 1)[0] + "/get?" + urlencode({"username": username})
        try:
            return self.http.request("GET", url, headers={"Authorization": header})
        except urllib3.exceptions.HTTPError as exc:
            raise Unauthenticated(f"MLflow at {url} could not verify the caller: {exc}") from exc


Authenticator = NoAuth | HeaderAuth | MlflowAuth


def from_settings(settings: Settings) -> Authenticator:
    """The configured authenticator (``CHECKPOINT_AUTH`` and friends, validated by Settings);
    a sign-in without groups gets the policy file's ``groups:`` for its name, when it was read."""
    groups_of = settings.policy.people.groups_of if settings.policy is not None else no_groups
    if settings.auth == "mlflow":
        return MlflowAuth(settings.registry_url, groups_of=groups_of)
    if settings.auth == "header":
        return HeaderAuth(
            settings.trusted_proxies,
            settings.user_header,
            settings.email_header,
            settings.groups_header,
            settings.admins,
            settings.admin_groups,
            groups_of,
        )
    return NoAuth(settings.admins, groups_of)


def from_env(registry_url: str, env: Mapping[str, str] | None = None) -> Authenticator:
    """The authenticator the variables in ``env`` configure, failing with the variable named."""
    from checkpoint.settings import Settings

    return from_settings(Settings.sections_of(env, registry_url=registry_url))


def check_bind(auth: Authenticator, host: str, allow_unauthenticated: bool = False) -> None:
    """Refuse to serve without authentication on a non-loopback address unless asked to
    (``CHECKPOINT_ALLOW_UNAUTHENTICATED``, Settings.allow_unauthenticated)."""
    if auth.mode != "none":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not allow_unauthenticated:
        raise IdentityError(
            f"refusing to serve on {host} with CHECKPOINT_AUTH=none: anyone who can reach it could approve "
            "promotions. Choose CHECKPOINT_AUTH=mlflow or header, bind to 127.0.0.1, or set "
            "CHECKPOINT_ALLOW_UNAUTHENTICATED=true if you really mean it"
        )
