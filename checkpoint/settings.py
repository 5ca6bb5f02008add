"""Every knob Checkpoint has, read from the environment once and validated at start.

A bad value stops start-up with a message that names the variable and shows a good
value, so an operator never has to read a traceback to fix a typo. This is the only module
that reads ``CHECKPOINT_*`` variables; the policy file they name is read by policy_file.py,
once, into :attr:`Settings.policy` (:meth:`Settings.with_policy`). Longer than most modules
on purpose: every variable in one file, so an operator's question ("what reads X, what may it
be?") has one place to look, and tests/integration/test_deploy.py checks the docs against it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from checkpoint.errors import ConfigError

if TYPE_CHECKING:
    from checkpoint.policy_file import PolicyFile

# The name the settings' errors had before there was one ConfigError.
SettingsError = ConfigError
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _url(name: str, value: str, *, example: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name}={value!r} is not an http(s) URL; expected something like {example}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise SettingsError(f"{name}={value!r} has a bad port; expected something like {example}") from exc
    if parts.query or parts.fragment:
        raise SettingsError(f"{name}={value!r} must not have a query or fragment; expected {example}")
    return value.rstrip("/")


_DB_EXAMPLE = "sqlite:////var/lib/checkpoint/checkpoint.db or postgresql+psycopg://checkpoint:secret@db:5432/checkpoint"


def _database_url(value: str) -> None:
    """A URL SQLAlchemy can open with an installed driver, or a message naming the variable."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    name = "CHECKPOINT_DATABASE_URL"
    if value.startswith("postgres://"):
        raise SettingsError(f"{name}={value!r}: write postgresql+psycopg:// instead of postgres://; expected e.g. {_DB_EXAMPLE}")
    try:
        url = make_url(value)
        url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise SettingsError(f"{name}={value!r} is not a database URL ({exc}); expected e.g. {_DB_EXAMPLE}") from exc
    if url.get_backend_name() == "sqlite" and url.host:
        raise SettingsError(f"{name}={value!r}: an SQLite URL has no host; use sqlite:////absolute/path.db")


def server_knobs(env: Mapping[str, str] | None = None) -> dict:
    """``checkpoint serve``'s bind address and gunicorn sizes from the environment, validated."""
    env = os.environ if env is None else env
    out: dict = {"host": (env.get("CHECKPOINT_HOST") or "127.0.0.1").strip()}
    for key, name, low, high, default in (
        ("port", "CHECKPOINT_PORT", 1, 65535, "5000"),
        ("workers", "CHECKPOINT_WORKERS", 1, 64, None),
        ("threads", "CHECKPOINT_THREADS", 1, 1024, None),
    ):
        raw = (env.get(name) or "").strip() or default
        out[key] = _number(name, raw, kind=int, low=low, high=high, example=default or "4") if raw else None
    return out


def gunicorn_log_format(env: Mapping[str, str] | None = None) -> str:
    """``CHECKPOINT_LOG_FORMAT`` for gunicorn's logger under a plain gunicorn, which builds it before
    any app (and its :class:`Settings`) exists; create_app validates the same value."""
    env = os.environ if env is None else env
    return (env.get("CHECKPOINT_LOG_FORMAT") or "json").strip().lower()


# -- who calls, what is protected, the default approvals, the policy file, gunicorn's knobs ---------

# Setting -> variable, for the knobs :func:`sections` reads. ``create_app(config)`` may give each
# as a typed value or as the variable's text; either way it is validated as the variable is.
SECTION_VARIABLES = {
    "auth": "CHECKPOINT_AUTH",
    "admins": "CHECKPOINT_ADMINS",
    "trusted_proxies": "CHECKPOINT_TRUSTED_PROXIES",
    "user_header": "CHECKPOINT_USER_HEADER",
    "email_header": "CHECKPOINT_EMAIL_HEADER",
    "groups_header": "CHECKPOINT_GROUPS_HEADER",
    "admin_groups": "CHECKPOINT_ADMIN_GROUPS",
    "allow_unauthenticated": "CHECKPOINT_ALLOW_UNAUTHENTICATED",
    "governed_stages": "CHECKPOINT_GOVERNED_STAGES",
    "protected_aliases": "CHECKPOINT_PROTECTED_ALIASES",
    "protected_models": "CHECKPOINT_PROTECTED_MODELS",
    "protected_tags": "CHECKPOINT_PROTECTED_TAGS",
    "required_approvals": "CHECKPOINT_REQUIRED_APPROVALS",
    "allow_self_approval": "CHECKPOINT_ALLOW_SELF_APPROVAL",
    "policy_file": "CHECKPOINT_POLICY_FILE",
    "access_log": "CHECKPOINT_ACCESS_LOG",
    "forwarded_allow_ips": "CHECKPOINT_FORWARDED_ALLOW_IPS",
    "token_elevated_users": "CHECKPOINT_TOKEN_ELEVATED_USERS",
    "token_max_days": "CHECKPOINT_TOKEN_MAX_DAYS",
}
AUTH_MODES = ("none", "header", "mlflow")
# The protection lists a variable may replace (the policy file's keys, governance.py).
PROTECTION_LISTS = ("governed_stages", "protected_aliases", "protected_models", "protected_tags")


def _as_text(value: object) -> str:
    """A typed override as the variable would spell it (``("a", "b")`` -> ``"a,b"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | Path):
        return str(value)
    if isinstance(value, Iterable):
        return ",".join(str(item) for item in value)
    return str(value)


def _names(raw: str) -> frozenset[str]:
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


def _auth(raw: Mapping[str, str]) -> dict[str, Any]:
    mode = raw.get("CHECKPOINT_AUTH", "none").strip().lower() or "none"
    if mode not in AUTH_MODES:
        raise ConfigError(f"CHECKPOINT_AUTH={mode!r} is not one of {', '.join(AUTH_MODES)}")
    trusted: tuple[Network, ...] = ()
    if mode == "header":  # the proxies are read (and must be given) in header mode only
        proxies = raw.get("CHECKPOINT_TRUSTED_PROXIES", "").strip()
        if not proxies:
            raise ConfigError(
                "CHECKPOINT_AUTH=header needs CHECKPOINT_TRUSTED_PROXIES: the addresses of your SSO proxy, "
                "e.g. CHECKPOINT_TRUSTED_PROXIES=10.0.0.5/32,127.0.0.1/32"
            )
        try:
            trusted = tuple(ipaddress.ip_network(item.strip(), strict=False) for item in proxies.split(",") if item.strip())
        except ValueError as exc:
            raise ConfigError(f"CHECKPOINT_TRUSTED_PROXIES={proxies!r}: {exc}; expected CIDRs like 10.0.0.0/24") from exc
    return {
        "auth": mode,
        "admins": _names(raw.get("CHECKPOINT_ADMINS", "")),
        "trusted_proxies": trusted,
        "user_header": raw.get("CHECKPOINT_USER_HEADER", "X-Forwarded-User"),
        "email_header": raw.get("CHECKPOINT_EMAIL_HEADER", "X-Forwarded-Email"),
        "groups_header": raw.get("CHECKPOINT_GROUPS_HEADER", "X-Forwarded-Groups"),
        "admin_groups": _names(raw.get("CHECKPOINT_ADMIN_GROUPS", "")),
        "allow_unauthenticated": raw.get("CHECKPOINT_ALLOW_UNAUTHENTICATED", "").strip().lower() in ("1", "true", "yes"),
    }


def _approvals(raw: Mapping[str, str]) -> dict[str, Any]:
    """The default rule, for models no rule of the policy file matches."""
    required = raw.get("CHECKPOINT_REQUIRED_APPROVALS", "1").strip()
    if not required.isdigit() or not 1 <= int(required) <= 20:
        raise ConfigError(f"CHECKPOINT_REQUIRED_APPROVALS={required!r}: expected a whole number from 1 to 20")
    flag = raw.get("CHECKPOINT_ALLOW_SELF_APPROVAL", "false").strip().lower()
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"CHECKPOINT_ALLOW_SELF_APPROVAL={flag!r}: expected true or false")
    return {"required_approvals": int(required), "allow_self_approval": flag in ("true", "1", "yes")}


def _tokens(raw: Mapping[str, str]) -> dict[str, Any]:
    """API tokens (tokens.py): who may give theirs the ``review`` and ``break-glass`` scopes, and
    the longest life a token may ask for."""
    days = raw.get("CHECKPOINT_TOKEN_MAX_DAYS", "365").strip()
    if not days.isdigit() or not 1 <= int(days) <= 3650:
        raise ConfigError(f"CHECKPOINT_TOKEN_MAX_DAYS={days!r}: expected a whole number of days from 1 to 3650, e.g. 90")
    return {"token_elevated_users": _names(raw.get("CHECKPOINT_TOKEN_ELEVATED_USERS", "")), "token_max_days": int(days)}


def sections(env: Mapping[str, str] | None = None, **overrides: object) -> dict[str, Any]:
    """The knobs of :data:`SECTION_VARIABLES` by setting name, validated; ``overrides`` (by setting
    name, ``None`` for "unset") stand in for the variables."""
    env = os.environ if env is None else env
    raw = {k: v for k, v in env.items() if k.startswith("CHECKPOINT_")}
    for attr, value in overrides.items():
        raw.pop(SECTION_VARIABLES[attr], None)
        if value is not None:
            raw[SECTION_VARIABLES[attr]] = _as_text(value)
    out = {**_auth(raw), **_approvals(raw), **_tokens(raw)}
    for attr in PROTECTION_LISTS:  # a variable replaces the file's list; its items are checked with the file's
        text = raw.get(SECTION_VARIABLES[attr], "")
        out[attr] = tuple(item.strip() for item in text.split(",") if item.strip()) if text.strip() else None
    out["policy_file"] = Path(raw["CHECKPOINT_POLICY_FILE"]) if raw.get("CHECKPOINT_POLICY_FILE") else None
    out["access_log"] = raw.get("CHECKPOINT_ACCESS_LOG") or None
    out["forwarded_allow_ips"] = raw.get("CHECKPOINT_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    return out


# Email to people (events/notifications): setting -> variable. No host: no email at all.
SMTP_VARIABLES = {
    "smtp_host": "CHECKPOINT_SMTP_HOST",
    "smtp_port": "CHECKPOINT_SMTP_PORT",
    "smtp_username": "CHECKPOINT_SMTP_USERNAME",
    "smtp_password": "CHECKPOINT_SMTP_PASSWORD",
    "smtp_security": "CHECKPOINT_SMTP_SECURITY",
    "smtp_from": "CHECKPOINT_SMTP_FROM",
}
SMTP_SECURITY = ("none", "starttls", "tls")
_PLAIN_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>.]+")


def _smtp(raw: Mapping[str, str], public_url: str | None) -> dict[str, Any]:
    """The SMTP server email goes through, checked together: a message names the variable."""
    values = {attr: raw.get(name, "").strip() for attr, name in SMTP_VARIABLES.items()}
    values["smtp_password"] = raw.get("CHECKPOINT_SMTP_PASSWORD", "")  # a password may have spaces
    host = values["smtp_host"]
    if not host:
        given = [SMTP_VARIABLES[a] for a, v in values.items() if v]
        if given:
            raise SettingsError(f"{', '.join(given)} set without CHECKPOINT_SMTP_HOST: set the host to send email, or unset them")
        return {}
    security = values["smtp_security"].lower() or "starttls"
    if security not in SMTP_SECURITY:
        raise SettingsError(f"CHECKPOINT_SMTP_SECURITY={security!r} is not one of none, starttls, tls; e.g. starttls")
    port = None
    if values["smtp_port"]:
        port = _number("CHECKPOINT_SMTP_PORT", values["smtp_port"], kind=int, low=1, high=65535, example="587")
    username, password = values["smtp_username"] or None, values["smtp_password"] or None
    if bool(username) != bool(password):
        missing = "CHECKPOINT_SMTP_PASSWORD" if username else "CHECKPOINT_SMTP_USERNAME"
        raise SettingsError(f"{missing} is not set: give CHECKPOINT_SMTP_USERNAME and CHECKPOINT_SMTP_PASSWORD together")
    if username and security == "none" and not _loopback(host):
        raise SettingsError(
            f"CHECKPOINT_SMTP_SECURITY=none with a password would send it unencrypted to {host}: "
            "use CHECKPOINT_SMTP_SECURITY=starttls or tls"
        )
    sender = values["smtp_from"]
    if not sender:
        raise SettingsError("CHECKPOINT_SMTP_FROM is not set: the address email comes from, e.g. checkpoint@example.com")
    _, address = parseaddr(sender)
    if not _PLAIN_ADDRESS.fullmatch(address) or "\n" in sender or "\r" in sender:
        raise SettingsError(
            f"CHECKPOINT_SMTP_FROM={sender!r} is not an email address; e.g. checkpoint@example.com "
            "or 'Checkpoint <checkpoint@example.com>'"
        )
    if not public_url:
        raise SettingsError(
            "CHECKPOINT_SMTP_HOST is set but CHECKPOINT_PUBLIC_URL is not: every email links to its request, "
            "so give the address people open Checkpoint at, e.g. CHECKPOINT_PUBLIC_URL=https://checkpoint.example.com"
        )
    return {
        "smtp_host": host,
        "smtp_port": port,
        "smtp_username": username,
        "smtp_password": password,
        "smtp_security": security,
        "smtp_from": sender,
    }


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# Audit keys shorter than this are refused (``openssl rand -hex 32`` gives 64 characters).
MIN_AUDIT_KEY = 32
_AUDIT_KEY_HINT = "make one with `openssl rand -hex 32`"


def _audit_keys(raw: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The audit key and the retired ones still accepted when verifying, newest first.

    ``CHECKPOINT_AUDIT_KEY`` or ``CHECKPOINT_AUDIT_KEY_FILE`` (first line: the current key,
    later lines: retired keys, newest first; ``#`` lines are comments), never both; plus
    ``CHECKPOINT_AUDIT_OLD_KEYS`` (comma or space separated). No key: ``("", old keys)``, and
    :meth:`Settings.with_audit_key` generates one. Messages name the variable, never a key.
    """
    key = raw.get("CHECKPOINT_AUDIT_KEY", "").strip()
    path = raw.get("CHECKPOINT_AUDIT_KEY_FILE", "").strip()
    if key and path:
        raise SettingsError(
            "CHECKPOINT_AUDIT_KEY and CHECKPOINT_AUDIT_KEY_FILE are both set: give the audit key "
            "one way (the file can hold retired keys too, one per line after the current one)"
        )
    found: list[tuple[str, str]] = []  # (where it came from, key)
    if key:
        found.append(("CHECKPOINT_AUDIT_KEY", key))
    elif path:
        name = f"CHECKPOINT_AUDIT_KEY_FILE={path!r}"
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SettingsError(
                f"{name} cannot be read ({reason}): it must be a UTF-8 file readable by "
                "Checkpoint with the audit key on its first line"
            ) from exc
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        found += [(f"{name} line {n}", line) for n, line in lines if line and not line.startswith("#")]
        if not found:
            raise SettingsError(f"{name} holds no key: put the audit key on its first line ({_AUDIT_KEY_HINT})")
    old = [k for k in re.split(r"[\s,]+", raw.get("CHECKPOINT_AUDIT_OLD_KEYS", "").strip()) if k]
    found += [(f"CHECKPOINT_AUDIT_OLD_KEYS (key {n} of {len(old)})", k) for n, k in enumerate(old, 1)]
    for where, value in found:
        if len(value) < MIN_AUDIT_KEY:
            raise SettingsError(
                f"{where}: the audit key is too short ({len(value)} characters, at least {MIN_AUDIT_KEY}); {_AUDIT_KEY_HINT}"
            )
    keys = [value for _, value in found]
    return (keys[0], tuple(keys[1:])) if key or path else ("", tuple(keys))


def _write_once(path: Path, value: str) -> None:
    """Create ``path`` (mode 0600) holding ``value`` unless it exists; the first writer wins."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    try:  # a racing worker reads the winner's value
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def default_apply_lease(upstream_read_timeout: float) -> float:
    """How long an apply may hold its claim before it counts as interrupted: longer than a live
    apply can take, which makes at most ~6 registry calls (already true? the challenger, the
    champion, the write), each waiting up to 5 s to connect and min(read timeout, 60) s for
    its answer. 390 s with the default timeouts."""
    return 6 * (5.0 + min(upstream_read_timeout, 60.0))


def _number(name: str, value: str, *, kind: type, low: float, high: float, example: str):
    try:
        number = kind(value)
    except ValueError as exc:
        raise SettingsError(f"{name}={value!r} is not a number; expected e.g. {name}={example}") from exc
    if not low <= number <= high:
        raise SettingsError(f"{name}={value!r} is out of range; expected {low}..{high}, e.g. {example}")
    return number


@dataclass(frozen=True)
class Settings:
    """The validated configuration; build it with :meth:`from_env`."""

    registry_url: str
    data_dir: Path
    database_url: str
    secret_key: str
    public_url: str | None = None
    cors_allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 120.0
    upstream_pool_size: int = 64
    chunk_size: int = 64 * 1024
    # Artifact bodies moved between the sockets by the kernel where possible (auto) or always
    # copied through Python (off); edge/splice.py.
    zero_copy: str = "auto"
    # The largest request head the front server takes (gunicorn's names; edge/limits.py says why these).
    limit_request_line: int = 278528
    limit_request_fields: int = 32768
    limit_request_field_size: int = 278528
    log_level: str = "INFO"
    # One JSON object per line (json) or the classic line for people (text); see logs.py.
    log_format: str = "json"
    # Checkpoint's own account on MLflow, used to apply approved changes.
    registry_username: str | None = None
    registry_password: str | None = None
    registry_token: str | None = None
    # The per-process thread that sends webhooks and reconciles interrupted applies.
    background: bool = True
    # Seconds after which a request still in 'applying' is settled against MLflow (reconcile.py).
    apply_lease: float = 390.0
    # Bytes of a version's files hashed into its content digest (content.py); beyond it, the
    # remaining files count by name and size only and the digest says it is partial.
    digest_max_bytes: int = 64 * 1024 * 1024
    # Behavioural diffs (review/behaviour/): models run only isolated (isolated), even where no
    # isolation is available (unisolated), or never (off); each run's wall-clock and memory limits.
    evaluator: str = "isolated"
    evaluator_timeout: float = 120.0
    evaluator_memory_mb: int = 2048
    # Which Python a model runs with: Checkpoint's own (local) or its own environment built from its
    # requirements by uv (runtime/envs.py), within a build deadline, uv's downloads cached in a directory.
    evaluator_env: str = "local"
    evaluator_env_timeout: float = 600.0
    evaluator_env_cache: Path | None = None  # None: <data dir>/envs/uv-cache
    evaluator_nice: int = 10  # the CPU priority of model runs and the scorer (pages first)
    # The audit chain's HMAC key and retired keys still accepted when verifying (audit.py).
    audit_key: str = field(default="", repr=False)
    audit_old_keys: tuple[str, ...] = field(default=(), repr=False)
    # Set when the audit key was generated into (or read back from) the data directory.
    audit_key_path: Path | None = None
    # Seconds between ``audit_head`` events, for webhooks that subscribe to them (events/webhooks).
    audit_head_interval: float = 3600.0
    # Who is calling (identity.py): the mode, admins by name, and header mode's proxies and headers.
    auth: str = "none"
    admins: frozenset[str] = frozenset()
    trusted_proxies: tuple[Network, ...] = ()
    user_header: str = "X-Forwarded-User"
    email_header: str = "X-Forwarded-Email"
    groups_header: str = "X-Forwarded-Groups"
    admin_groups: frozenset[str] = frozenset()
    # Serve ``none`` mode on a non-loopback address anyway (identity.check_bind).
    allow_unauthenticated: bool = False
    # API tokens (tokens.py): the users an admin lets give their tokens the ``review`` and
    # ``break-glass`` scopes, and the longest ``expires_in_days`` a token may have.
    token_elevated_users: frozenset[str] = frozenset()
    token_max_days: int = 365
    # Protection lists that replace the policy file's (None: the file's, else governance.py's default).
    governed_stages: tuple[str, ...] | None = None
    protected_aliases: tuple[str, ...] | None = None
    protected_models: tuple[str, ...] | None = None
    protected_tags: tuple[str, ...] | None = None
    # The default rule, for models no rule of the policy file matches (policy.py).
    required_approvals: int = 1
    allow_self_approval: bool = False
    # The YAML file with the protection lists, the review rules and their checks, and the webhooks.
    policy_file: Path | None = None
    # gunicorn's access log (a path or "-") and the proxies whose X-Forwarded-* it trusts (serving.py).
    access_log: str | None = None
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # The SMTP server email to people goes through (events/notifications); no host: no email.
    smtp_host: str | None = None
    smtp_port: int | None = None  # None: 25, 587 or 465 by smtp_security
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_security: str = "starttls"
    smtp_from: str | None = None
    # The policy file's sections, read once by :meth:`with_policy` (before gunicorn forks, under serve).
    policy: PolicyFile | None = field(default=None, repr=False, compare=False)
    # The environment the settings came from: a webhook's ``secret_env``/``url_env`` name a variable in it.
    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def upstream_origin(self) -> str:
        """``scheme://host:port`` of the MLflow server, for rewriting its redirects."""
        parts = urlsplit(self.registry_url)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, registry_required: bool = True, **overrides) -> Settings:
        """Read ``CHECKPOINT_*`` variables; ``overrides`` (tests, ``create_app(config)``) win.
        ``registry_required=False``: for commands that only read the database (``checkpoint audit``),
        an unset ``CHECKPOINT_REGISTRY_URL`` leaves ``registry_url`` empty instead of failing."""
        env = os.environ if env is None else env
        raw = {k: v for k, v in env.items() if k.startswith("CHECKPOINT_")}

        registry = overrides.pop("registry_url", None) or raw.get("CHECKPOINT_REGISTRY_URL", "").strip()
        if not registry and registry_required:
            raise SettingsError(
                "CHECKPOINT_REGISTRY_URL is not set: give the address of the MLflow tracking server "
                "Checkpoint sits in front of, e.g. CHECKPOINT_REGISTRY_URL=http://127.0.0.1:5001"
            )
        if registry:
            registry = _url("CHECKPOINT_REGISTRY_URL", registry, example="http://127.0.0.1:5001")

        data_dir = Path(
            overrides.pop("data_dir", None) or raw.get("CHECKPOINT_DATA_DIR") or Path.home() / ".checkpoint"
        ).expanduser()
        database_url = overrides.pop("database_url", None) or raw.get("CHECKPOINT_DATABASE_URL", "").strip()
        if not database_url:
            database_url = f"sqlite:///{data_dir / 'checkpoint.db'}"
        else:
            _database_url(database_url)

        public_url = overrides.pop("public_url", None) or raw.get("CHECKPOINT_PUBLIC_URL", "").strip() or None
        if public_url:
            public_url = _url("CHECKPOINT_PUBLIC_URL", public_url, example="https://checkpoint.example.com")

        origins = overrides.pop("cors_allowed_origins", None)
        if origins is None:
            origins = tuple(o.strip().rstrip("/") for o in raw.get("CHECKPOINT_CORS_ALLOWED_ORIGINS", "").split(",") if o.strip())
        for origin in origins:
            _url("CHECKPOINT_CORS_ALLOWED_ORIGINS", origin, example="https://notebooks.example.com")

        hosts = overrides.pop("allowed_hosts", None)
        if hosts is None:
            hosts = tuple(h.strip() for h in raw.get("CHECKPOINT_ALLOWED_HOSTS", "").split(",") if h.strip())

        numbers = {
            "upstream_connect_timeout": ("CHECKPOINT_UPSTREAM_CONNECT_TIMEOUT", float, 0.05, 600, "5"),
            "upstream_read_timeout": ("CHECKPOINT_UPSTREAM_READ_TIMEOUT", float, 0.05, 86400, "120"),
            "upstream_pool_size": ("CHECKPOINT_UPSTREAM_POOL_SIZE", int, 1, 4096, "64"),
            "chunk_size": ("CHECKPOINT_CHUNK_SIZE", int, 1024, 16 * 1024 * 1024, "65536"),
            "limit_request_line": ("CHECKPOINT_LIMIT_REQUEST_LINE", int, 1024, 16 * 1024 * 1024, "278528"),
            "limit_request_fields": ("CHECKPOINT_LIMIT_REQUEST_FIELDS", int, 1, 32768, "32768"),
            "limit_request_field_size": ("CHECKPOINT_LIMIT_REQUEST_FIELD_SIZE", int, 1024, 16 * 1024 * 1024, "278528"),
            "apply_lease": ("CHECKPOINT_APPLY_LEASE_SECONDS", float, 1, 86400, "390"),
            "digest_max_bytes": ("CHECKPOINT_DIGEST_MAX_BYTES", int, 0, 2**40, "67108864"),
            "evaluator_timeout": ("CHECKPOINT_EVALUATOR_TIMEOUT", float, 1, 86400, "120"),
            "evaluator_memory_mb": ("CHECKPOINT_EVALUATOR_MEMORY_MB", int, 256, 1 << 20, "2048"),
            "evaluator_env_timeout": ("CHECKPOINT_EVALUATOR_ENV_TIMEOUT", float, 10, 86400, "600"),
            "evaluator_nice": ("CHECKPOINT_EVALUATOR_NICE", int, 0, 19, "10"),
            "audit_head_interval": ("CHECKPOINT_AUDIT_HEAD_INTERVAL", float, 1, 7 * 86400, "3600"),
        }
        parsed: dict = {}
        for attr, (name, kind, low, high, example) in numbers.items():
            if attr in overrides:
                parsed[attr] = kind(overrides.pop(attr))
            elif raw.get(name, "").strip():
                parsed[attr] = _number(name, raw[name].strip(), kind=kind, low=low, high=high, example=example)
        parsed.setdefault("apply_lease", default_apply_lease(parsed.get("upstream_read_timeout", 120.0)))

        log_level = (overrides.pop("log_level", None) or raw.get("CHECKPOINT_LOG_LEVEL") or "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"CHECKPOINT_LOG_LEVEL={log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        log_format = (overrides.pop("log_format", None) or raw.get("CHECKPOINT_LOG_FORMAT") or "json").strip().lower()
        if log_format not in ("json", "text"):
            raise SettingsError(f"CHECKPOINT_LOG_FORMAT={log_format!r} is not json or text; e.g. CHECKPOINT_LOG_FORMAT=json")

        zero_copy = (overrides.pop("zero_copy", None) or raw.get("CHECKPOINT_ZERO_COPY") or "auto").strip().lower()
        if zero_copy not in ("auto", "off"):
            raise SettingsError(f"CHECKPOINT_ZERO_COPY={zero_copy!r} is not auto or off; e.g. CHECKPOINT_ZERO_COPY=auto")

        evaluator = (overrides.pop("evaluator", None) or raw.get("CHECKPOINT_EVALUATOR") or "isolated").strip().lower()
        if evaluator not in ("isolated", "unisolated", "off"):
            raise SettingsError(
                f"CHECKPOINT_EVALUATOR={evaluator!r} is not isolated, unisolated or off; e.g. CHECKPOINT_EVALUATOR=isolated"
            )

        evaluator_env = (overrides.pop("evaluator_env", None) or raw.get("CHECKPOINT_EVALUATOR_ENV") or "local").strip().lower()
        if evaluator_env not in ("local", "uv"):
            raise SettingsError(
                f"CHECKPOINT_EVALUATOR_ENV={evaluator_env!r} is not local or uv; e.g. CHECKPOINT_EVALUATOR_ENV=local"
            )
        if evaluator_env == "uv" and evaluator != "off":
            from checkpoint.runtime.envs import find_uv

            if find_uv() is None:
                raise SettingsError(
                    "CHECKPOINT_EVALUATOR_ENV=uv needs the uv program: pip install 'checkpoint-mlflow[envs]' (or put uv on PATH)"
                )
        env_cache = overrides.pop("evaluator_env_cache", None) or raw.get("CHECKPOINT_EVALUATOR_ENV_CACHE", "").strip()

        background = raw.get("CHECKPOINT_BACKGROUND", "true").strip().lower()
        if background not in ("true", "false", "1", "0", "yes", "no"):
            raise SettingsError(f"CHECKPOINT_BACKGROUND={background!r} must be true or false")

        knobs = sections(raw, **{k: overrides.pop(k) for k in list(overrides) if k in SECTION_VARIABLES})
        for attr, name in SMTP_VARIABLES.items():  # an override is checked as the variable would be
            if attr in overrides:
                value = overrides.pop(attr)
                raw[name] = "" if value is None else str(value)
        smtp = _smtp(raw, public_url)
        secret = overrides.pop("secret_key", None) or raw.get("CHECKPOINT_SECRET_KEY", "").strip()
        audit_key, audit_old_keys = ("", ()) if "audit_key" in overrides else _audit_keys(raw)
        settings = cls(
            registry_url=registry,
            data_dir=data_dir,
            database_url=database_url,
            secret_key=secret or "",
            public_url=public_url,
            cors_allowed_origins=tuple(origins),
            allowed_hosts=tuple(hosts),
            log_level=log_level,
            log_format=log_format,
            zero_copy=zero_copy,
            evaluator=evaluator,
            evaluator_env=evaluator_env,
            evaluator_env_cache=Path(env_cache).expanduser().absolute() if env_cache else None,
            registry_username=raw.get("CHECKPOINT_REGISTRY_USERNAME") or None,
            registry_password=raw.get("CHECKPOINT_REGISTRY_PASSWORD") or None,
            registry_token=raw.get("CHECKPOINT_REGISTRY_TOKEN") or None,
            background=background in ("true", "1", "yes"),
            audit_key=audit_key,
            audit_old_keys=audit_old_keys,
            environ=env,
            **knobs,
            **parsed,
            **smtp,
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(settings, **overrides) if overrides else settings

    @classmethod
    def sections_of(cls, env: Mapping[str, str] | None = None, registry_url: str = "") -> Settings:
        """Only the :func:`sections` knobs from ``env`` (the rest left blank): for the loaders that
        take an environment mapping, such as ``identity.from_env`` and ``Policy.from_env``."""
        env = os.environ if env is None else env
        return cls(registry_url=registry_url, data_dir=Path(), database_url="", secret_key="", environ=env, **sections(env))

    def private_paths(self) -> tuple[Path, ...]:
        """Every path on this machine holding what only Checkpoint may read: the data directory
        (generated secret and audit keys, lock files), an SQLite database's directory (with its
        journal), the audit key file, the policy file, uv's download cache (its files are hard-linked
        into the models' environments), and the MLflow and PostgreSQL credential
        files of Checkpoint's user. Runs of model code (runtime/sandbox.py) see none of them."""
        paths = [self.data_dir, *(p for p in (self.audit_key_path, self.policy_file, self.evaluator_env_cache) if p)]
        if self.environ is not None and self.environ.get("CHECKPOINT_AUDIT_KEY_FILE", "").strip():
            paths.append(Path(self.environ["CHECKPOINT_AUDIT_KEY_FILE"].strip()).expanduser())
        if self.database_url.startswith("sqlite"):
            from sqlalchemy.engine import make_url

            database = make_url(self.database_url).database
            if database and database != ":memory:":
                paths.append(Path(database).parent)
        home = Path.home()
        paths += [home / ".mlflow", home / ".pgpass", home / ".netrc", home / ".databrickscfg"]
        absolute = {p.expanduser().absolute() for p in paths if str(p) not in ("", ".")}
        return tuple(sorted(absolute))

    def with_policy(self) -> Settings:
        """Read the policy file into :attr:`policy`, unless done: once per process tree, since
        `checkpoint serve` reads it in the master and the workers inherit it."""
        if self.policy is not None:
            return self
        from checkpoint.policy_file import load

        return replace(self, policy=load(self))

    def with_secret(self) -> Settings:
        """Fill in a secret key kept in the data directory when none was configured.

        Every worker and every restart must sign cookies with the same key, so a
        generated key is written once and read back afterwards.
        """
        if self.secret_key:
            return self
        path = self.data_dir / "secret_key"
        _write_once(path, secrets.token_hex(32))
        return replace(self, secret_key=path.read_text().strip())

    def with_audit_key(self, create: bool = True) -> Settings:
        """Fill in an audit key kept in the data directory when none was configured.

        For the demo and single-host installs: generated once (mode 0600) and reused by every
        worker and restart. The chain is then only as safe as that directory, which on SQLite
        also holds the database; production sets ``CHECKPOINT_AUDIT_KEY``. ``create=False``
        (the audit commands) reads an existing file but makes none.
        """
        if self.audit_key:
            return self
        path = self.data_dir / "audit_key"
        if create:
            _write_once(path, secrets.token_hex(32))
        elif not path.exists():
            return self
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"the generated audit key {path} cannot be read ({exc}); set CHECKPOINT_AUDIT_KEY or make the file readable"
            ) from exc
        if len(key) < MIN_AUDIT_KEY:
            raise SettingsError(
                f"the generated audit key {path} is damaged ({len(key)} characters): restore it from "
                "a backup, or set CHECKPOINT_AUDIT_KEY (events it signed verify only with it)"
            )
        return replace(self, audit_key=key, audit_key_path=path)
