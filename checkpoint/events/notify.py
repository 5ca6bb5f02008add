"""Webhook notifications: their configuration, the signed payload, and the sender.

Deliveries come from an outbox: :meth:`Store._append` writes one ``deliveries`` row per
subscribed webhook in the event's own transaction, so an event is never recorded without
its notifications nor notified without being recorded. The :class:`Sender` runs on the
background thread of every worker (``Background.every``), claims due rows with a
conditional UPDATE, and POSTs them with a timeout: nothing is ever sent inside an HTTP
request, so a slow or dead receiver cannot slow one. Delivery is at least once (a crash
after the POST and before the row is marked sends it again); receivers dedupe on the
delivery id, which stays the same across retries and re-sends.

Signing follows MLflow 3's webhooks, so one receiver verifies both::

    X-MLflow-Delivery-Id: <uuid4>          X-MLflow-Timestamp: <unix seconds>
    X-MLflow-Signature: v1,<base64(HMAC-SHA256(secret, "<delivery id>.<timestamp>.<raw body>"))>

Configured in the policy file (``CHECKPOINT_POLICY_FILE``)::

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

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests
import yaml

from checkpoint.events.audit import HEAD
from checkpoint.review.policy import PolicyError
from checkpoint.storage.store import Outgoing, Store, now

log = logging.getLogger("checkpoint.notify")  # the name operators filter the JSON logs on

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
    # Not part of "*": subscribe to it by name, to keep copies of the head outside the database.
    "audit_head": "the audit log's head (ID:HASH, signed with the audit key), every CHECKPOINT_AUDIT_HEAD_INTERVAL",
}
ALL = "*"
FORMATS = ("json", "slack")
ENTITY = "promote_request"
SIGNATURE_VERSION = "v1"
# Backoff between attempts: ``backoff * 2**(attempt-1)`` seconds, at most ``max_backoff``.
DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF = 1.0, 300.0
# How many deliveries one round sends at once, and how long a round may keep the thread.
PARALLEL, ROUND_SECONDS = 4, 30.0
_KEYS = {"name", "url", "url_env", "events", "secret", "secret_env", "format", "timeout", "max_attempts", "backoff",
         "max_backoff"}  # fmt: skip


class WebhookConfigError(PolicyError):
    """The ``webhooks`` section of the policy file is invalid."""


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


# -- configuration ----------------------------------------------------------------------


def load(env: Mapping[str, str] | None = None) -> Webhooks:
    """The ``webhooks`` list of the policy file (none without a file or the key)."""
    env = os.environ if env is None else env
    path = env.get("CHECKPOINT_POLICY_FILE") or None
    if not path or not Path(path).is_file():
        return Webhooks()  # a missing file is governance.load()'s error to report
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise WebhookConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or data.get("webhooks") is None:
        return Webhooks()
    return parse(data["webhooks"], env)


def parse(items: object, env: Mapping[str, str] | None = None) -> Webhooks:
    env = os.environ if env is None else env
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
        raise WebhookConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                                 f"known: {', '.join(sorted(_KEYS))}")  # fmt: skip
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise WebhookConfigError(f"{where}.name: expected a name of 1 to 200 characters")
    name = name.strip()
    where = f"webhooks[{index}] ({name})"
    url = _from_value_or_env(item, "url", where, env, required=True)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigError(f"{where}.url: expected an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise WebhookConfigError(f"{where}.url: the port is not a number") from exc
    secret = _from_value_or_env(item, "secret", where, env, required=False)
    return Webhook(
        name=name, url=url, events=_events(item.get("events"), where), secret=secret,
        format=_choice(item.get("format", "json"), FORMATS, f"{where}.format"),
        timeout=_number(item.get("timeout", 5), f"{where}.timeout", 0.1, 120),
        max_attempts=int(_number(item.get("max_attempts", 8), f"{where}.max_attempts", 1, 100, whole=True)),
        backoff=_number(item.get("backoff", DEFAULT_BACKOFF), f"{where}.backoff", 0.01, 3600),
        max_backoff=_number(item.get("max_backoff", DEFAULT_MAX_BACKOFF), f"{where}.max_backoff", 0.01, 86400),
    )  # fmt: skip


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
        return frozenset(EVENTS) - {HEAD} | frozenset(v for v in value if v == HEAD)
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


# -- the payload ------------------------------------------------------------------------


def request_url(base: str | None, request_id: int | None, model: str, workspace: str = "") -> str:
    """The page a person opens: the request, or the model's history (in its MLflow workspace)
    for an outside change."""
    path = f"/checkpoint/requests/{request_id}" if request_id else f"/checkpoint/models/{quote(model, safe='')}/history"
    if not request_id and workspace:
        path += f"?workspace={quote(workspace, safe='')}"
    return f"{base.rstrip('/')}{path}" if base else path


def payload(outgoing: Outgoing, public_url: str | None) -> dict:
    """MLflow's webhook shape (entity, action, timestamp, data), built only from stored rows,
    so every attempt of one delivery carries the same body."""
    event, item = outgoing.event, outgoing.request
    if event.kind == HEAD:  # about the log, not a request: the head and its signature, as recorded
        check = f"/checkpoint/api/v1/audit/verify?expect={quote(str(event.data.get('head', '')))}"
        url = f"{public_url.rstrip('/')}{check}" if public_url else check  # checks the head against the log
        data = {"event_id": event.id, "url": url, "model": None, "actor": event.actor, **event.data}
        return {"entity": "audit_log", "action": event.kind, "timestamp": event.created_at.isoformat(), "data": data}
    workspace = item.workspace if item else (event.data.get("workspace") or "")
    data: dict = {
        "request_id": event.request_id,
        "url": request_url(public_url, event.request_id, event.model_name, workspace),
        "model": event.model_name,
        "workspace": workspace or "default",  # MLflow's workspace of the model
        "target": item.target if item else event.data.get("target"),
        "version": item.version if item else event.data.get("version"),
        "title": outgoing.title if item else None,
        "author": item.author if item else None,
        "state": outgoing.state,
        "actor": event.actor,
        "event_id": event.id,
        "event": event.data,
    }
    if outgoing.comment is not None:
        data["comment"] = outgoing.comment
    return {"entity": ENTITY, "action": event.kind, "timestamp": event.created_at.isoformat(), "data": data}


def describe(message: dict) -> str:
    """One readable line for chat: who did what to which request."""
    data, action = message["data"], message["action"]
    if action == HEAD:
        return f"audit log head {data['head']} ({data['events']} events, audit key {data['key_id']})"
    event = data.get("event") or {}
    subject = f"#{data['request_id']} “{data['title']}”" if data.get("request_id") else data["model"]
    where = f"{data['model']} v{data['version']} → {data['target']}" if data.get("version") else data["model"]
    what = {
        "opened": "opened", "edited": "edited", "commented": "commented on", "approved": "approved",
        "rejected": "rejected", "withdrawn": "withdrew", "applied": "applied", "apply_failed": "failed to apply",
        "approvals_dismissed": "dismissed approvals of", "check_failed": "reported a failed check on",
        "review_approved": "approved (review)", "review_rejected": "rejected (review)", "break_glass": "BROKE GLASS on",
        "retried": "retried", "reopened": "reopened", "outside_change": "saw an outside change to",
    }.get(action, action)  # fmt: skip
    line = f"{data['actor']} {what} {subject} ({where})"
    detail = data.get("comment") or event.get("error") or event.get("reason")
    if action == "check_failed":
        detail = f"check {event.get('check')} is {event.get('status')}: {event.get('reason') or 'no reason given'}"
    if action == "outside_change":
        detail = f"{event.get('target')} now holds v{event.get('version')} (was v{event.get('previous')})"
        if event.get("files"):
            detail = (
                f"the files of v{event.get('version')} ({event.get('target')}) changed: digest "
                f"{str(event.get('digest_before'))[:12]} → {str(event.get('digest_after'))[:12]}"
            )
    if detail:
        detail = " ".join(str(detail).split())
        line += f": {detail[:200]}{'…' if len(detail) > 200 else ''}"
    return line


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def body(webhook: Webhook, outgoing: Outgoing, public_url: str | None) -> bytes:
    message = payload(outgoing, public_url)
    if webhook.format == "slack":
        url = message["data"]["url"]
        link = f" <{url}|open>" if url.startswith(("http://", "https://")) else f" {url}"
        message = {"text": f"Checkpoint: {_slack_escape(describe(message))}{link}"}
    return json.dumps(message, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, delivery_id: str, timestamp: str, raw: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``<delivery id>.<timestamp>.<raw body>`` (MLflow's scheme)."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(webhook: Webhook, delivery_id: str, event: str, raw: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    out = {
        "Content-Type": "application/json",
        "User-Agent": "checkpoint-webhooks/1",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": stamp,
        "X-Checkpoint-Event": event,
    }
    if webhook.secret:
        out["X-MLflow-Signature"] = sign(webhook.secret, delivery_id, stamp, raw)
    return out


# -- the sender -------------------------------------------------------------------------


@dataclass
class Round:
    """What one round did, by delivery id: for logs and tests."""

    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass
class Sender:
    store: Store
    webhooks: Webhooks
    public_url: str | None = None

    @property
    def interval(self) -> float:
        """How often the background thread looks for retries that came due (new events wake it)."""
        return min(max(min((h.backoff for h in self.webhooks.hooks), default=1.0), 0.1), 5.0)

    def run(self) -> Round:
        """Send every due delivery, a few at a time, until none is left or the round is long enough."""
        done = Round()
        leases = {h.name: h.lease for h in self.webhooks.hooks}
        started = time.monotonic()
        for _ in range(1000):
            batch = self.store.claim_deliveries(leases, limit=PARALLEL)
            if not batch:
                break
            if len(batch) == 1:
                results = [self._send(batch[0])]
            else:
                with ThreadPoolExecutor(len(batch), thread_name_prefix="checkpoint-webhook") as pool:
                    results = list(pool.map(self._send, batch))
            for outgoing, outcome in zip(batch, results, strict=True):
                getattr(done, outcome).append(outgoing.delivery.id)
            if time.monotonic() - started > ROUND_SECONDS:
                break
        return done

    def _send(self, outgoing: Outgoing) -> str:
        """POST one claimed delivery and record the outcome: ``delivered``, ``retrying`` or ``failed``."""
        delivery = outgoing.delivery
        webhook = self.webhooks.get(delivery.webhook)
        if webhook is None:  # claim_deliveries only hands out configured webhooks
            return "retrying"
        raw = body(webhook, outgoing, self.public_url)
        status, error, wait = None, "", None
        try:
            answer = requests.post(
                webhook.url, data=raw, headers=headers(webhook, delivery.id, outgoing.event.kind, raw),
                timeout=(webhook.timeout, webhook.timeout), allow_redirects=False,
            )  # fmt: skip
            with answer:
                status = answer.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status} {answer.reason or ''}: {answer.text[:300]}".strip()
                    wait = _retry_after(answer.headers.get("Retry-After"))
        except requests.Timeout:
            error = f"no answer within {webhook.timeout:g} s"
        except requests.ConnectionError as exc:
            error = f"could not connect to {_where(webhook.url)}: {_reason(exc)}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__} sending to {_where(webhook.url)}"
        if not error:
            self.store.delivery_done(delivery.id, status)
            return "delivered"
        if delivery.attempts >= webhook.max_attempts:
            log.warning("webhook %s: delivery %s failed for good after %d attempts: %s", webhook.name, delivery.id,
                        delivery.attempts, error)  # fmt: skip
            self.store.delivery_done(delivery.id, status, f"gave up after {delivery.attempts} attempts: {error}")
            return "failed"
        delay = min(max(wait or 0.0, webhook.delay(delivery.attempts)), webhook.max_backoff)
        log.info("webhook %s: delivery %s attempt %d failed (%s); next in %.1f s", webhook.name, delivery.id,
                 delivery.attempts, error, delay)  # fmt: skip
        self.store.delivery_done(delivery.id, status, error, retry_at=now() + timedelta(seconds=delay))
        return "retrying"


def _where(url: str) -> str:
    """Host and port only: a webhook URL's path may hold a token."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _reason(exc: Exception) -> str:
    """The innermost cause's class and message without the URL (``Connection refused``)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset",
                   "Remote end closed connection", "certificate verify failed", "timed out"):  # fmt: skip
        if marker in text:
            return marker
    return type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    """A 429/503's ``Retry-After``, in seconds or as an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now()).total_seconds(), 0.0) if when.tzinfo else None
