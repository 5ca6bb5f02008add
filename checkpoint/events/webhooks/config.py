"""The ``webhooks`` list of the policy file, checked key by key; an error names the key path.

Configured in the policy file (``CHECKPOINT_POLICY_FILE``, read by policy_file.py)::

    webhooks:
      - name: ml-team
        url: https://hooks.example.com/checkpoint
        events: [opened, approved, applied, apply_failed]   # or ["*"]
        secret_env: CHECKPOINT_WEBHOOK_SECRET               # or secret: ...
        format: json                                        # or slack
        timeout: 5                                          # seconds per attempt
        max_attempts: 8                                     # then failed; an admin may re-send
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from checkpoint.errors import ConfigError
from checkpoint.events.audit import HEAD

# Event names a webhook may subscribe to (each is the event kind in the log). The first ten
# are the notifications people ask for; the others are there for finer feeds.
EVENTS: dict[str, str] = {
    "opened": "a promote request was opened",
    "edited": "its author changed the title or description",
    "commented": "somebody commented",
    "approved": "the approvals meet the policy (the change is applied next)",
    "rejected": "a reviewer rejected it",
    "withdrawn": "its author withdrew it",
    "applied": "the change is in MLflow",
    "apply_failed": "MLflow refused the change or could not be reached",
    "approvals_dismissed": "approvals were dismissed (the champion or challenger moved)",
    "check_failed": "a check on the request failed or errored",
    "review_approved": "one reviewer approved",
    "review_rejected": "one reviewer rejected",
    "break_glass": "an admin applied it without the approvals",
    "retried": "a failed apply is being tried again",
    "reopened": "an approved request went back to open before applying",
    "outside_change": "a stage or alias moved in MLflow without Checkpoint",
    "approval_expired": "an approval grew older than its rule's approvals_expire_after and no longer counts",
    "scheduled": "the author or a reviewer set the time the request is to apply (apply_at)",
    "waiting": "an approved request waits for a freeze to end or for its apply_at before it applies",
    "released": "a waiting request's freeze ended or its apply_at came: it is being applied",
    "cancelled": "a scheduled or waiting apply was cancelled; the request is withdrawn",
    "status_changed": "CI posted a status (context, state) on the request or on the version it promotes",
    # Not part of "*": subscribe to them by name (BY_NAME).
    "behaviour_finished": "an open request's behavioural diff finished (done or error): the event holds its summary",
    "audit_head": "the audit log's head (ID:HASH, signed with the audit key), every CHECKPOINT_AUDIT_HEAD_INTERVAL",
}
ALL = "*"
# Subscribed to by name only, never by "*": the log's head, and the behavioural diff's summary
# (logged only when a webhook asks for it, so other feeds and logs are as before).
BY_NAME = frozenset({HEAD, "behaviour_finished"})
FORMATS = ("json", "slack")
# Backoff between attempts: ``backoff * 2**(attempt-1)`` seconds, at most ``max_backoff``.
DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF = 1.0, 300.0
_KEYS = {
    "name",
    "url",
    "url_env",
    "events",
    "secret",
    "secret_env",
    "format",
    "timeout",
    "max_attempts",
    "backoff",
    "max_backoff",
}


# The name this section's errors had before there was one ConfigError.
WebhookConfigError = ConfigError


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str = field(repr=False)  # a Slack-style URL is itself a secret
    events: frozenset[str]
    secret: str | None = field(default=None, repr=False)
    format: str = "json"
    timeout: float = 5.0
    max_attempts: int = 8
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF

    @property
    def lease(self) -> float:
        """How long a claim lasts: longer than one attempt can take (connect + read timeouts)."""
        return 2 * self.timeout + 30.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return min(self.backoff * 2 ** max(attempts - 1, 0), self.max_backoff)


@dataclass(frozen=True)
class Webhooks:
    hooks: tuple[Webhook, ...] = ()

    def subscribers(self, kind: str) -> tuple[str, ...]:
        """The webhooks that want events of ``kind`` (the store's outbox hook)."""
        return tuple(h.name for h in self.hooks if kind in h.events)

    def get(self, name: str) -> Webhook | None:
        return next((h for h in self.hooks if h.name == name), None)

    def __bool__(self) -> bool:
        return bool(self.hooks)


def load(env: Mapping[str, str] | None = None) -> Webhooks:
    """The webhooks the variables in ``env`` configure (none without a policy file or the key)."""
    from checkpoint.policy_file import from_env

    return from_env(env).webhooks


def parse(items: object, env: Mapping[str, str] | None = None) -> Webhooks:
    """The ``webhooks`` list; ``env`` holds the variables a ``url_env``/``secret_env`` names."""
    env = os.environ if env is None else env  # a caller without Settings.environ: the process's own
    if not isinstance(items, list):
        raise WebhookConfigError(f"webhooks: expected a list of webhooks, got {type(items).__name__}")
    hooks = tuple(_webhook(i, item, env) for i, item in enumerate(items))
    names = [h.name for h in hooks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise WebhookConfigError(f"webhooks: the name(s) {', '.join(twice)} appear more than once; names must be unique")
    return Webhooks(hooks)


def _webhook(index: int, item: object, env: Mapping[str, str]) -> Webhook:
    where = f"webhooks[{index}]"
    if not isinstance(item, dict):
        raise WebhookConfigError(f"{where}: expected a mapping with name, url, events, secret_env")
    unknown = set(item) - _KEYS
    if unknown:
        raise WebhookConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(_KEYS))}"
        )
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise WebhookConfigError(f"{where}.name: expected a name of 1 to 200 characters")
    name = name.strip()
    if name.startswith("email:"):  # the outbox's name for a person's email rows (storage/mail.py)
        raise WebhookConfigError(f"{where}.name: names starting with email: are the outbox's own for people's email")
    where = f"webhooks[{index}] ({name})"
    url = _from_value_or_env(item, "url", where, env, required=True)
    assert url is not None  # required=True raises rather than answer None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigError(f"{where}.url: expected an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise WebhookConfigError(f"{where}.url: the port is not a number") from exc
    secret = _from_value_or_env(item, "secret", where, env, required=False)
    return Webhook(
        name=name,
        url=url,
        events=_events(item.get("events"), where),
        secret=secret,
        format=_choice(item.get("format", "json"), FORMATS, f"{where}.format"),
        timeout=_number(item.get("timeout", 5), f"{where}.timeout", 0.1, 120),
        max_attempts=int(_number(item.get("max_attempts", 8), f"{where}.max_attempts", 1, 100, whole=True)),
        backoff=_number(item.get("backoff", DEFAULT_BACKOFF), f"{where}.backoff", 0.01, 3600),
        max_backoff=_number(item.get("max_backoff", DEFAULT_MAX_BACKOFF), f"{where}.max_backoff", 0.01, 86400),
    )


def _from_value_or_env(item: dict, key: str, where: str, env: Mapping[str, str], *, required: bool) -> str | None:
    """``key`` given inline, or ``key_env`` naming the variable that holds it (never both)."""
    inline, variable = item.get(key), item.get(f"{key}_env")
    if inline is not None and variable is not None:
        raise WebhookConfigError(f"{where}: give {key} or {key}_env, not both")
    if variable is not None:
        if not isinstance(variable, str) or not variable.strip():
            raise WebhookConfigError(f"{where}.{key}_env: expected the name of an environment variable")
        value = env.get(variable.strip(), "").strip()
        if not value:
            raise WebhookConfigError(f"{where}.{key}_env: the environment variable {variable.strip()} is not set or empty")
        return value
    if inline is None:
        if required:
            raise WebhookConfigError(f"{where}: {key} (or {key}_env) is required")
        return None
    if not isinstance(inline, str) or not inline.strip():
        raise WebhookConfigError(f"{where}.{key}: expected a non-empty string")
    return inline.strip()


def _events(value: object, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise WebhookConfigError(f'{where}.events: expected a list of event names, or ["*"] for all of them')
    if ALL in value:
        return frozenset(EVENTS) - BY_NAME | frozenset(v for v in value if v in BY_NAME)
    unknown = [v for v in value if v not in EVENTS]
    if unknown:
        raise WebhookConfigError(f"{where}.events: unknown event(s) {', '.join(unknown)}; known: {', '.join(EVENTS)}, *")
    return frozenset(value)


def _choice(value: object, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise WebhookConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _number(value: object, where: str, low: float, high: float, whole: bool = False) -> float:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise WebhookConfigError(f"{where}: expected {kind} from {low:g} to {high:g}, got {value!r}")
    return float(value)
