"""Webhook notifications: their configuration, the signed payload, and the sender.

Deliveries come from an outbox: :meth:`Store._append` writes one ``deliveries`` row per
subscribed webhook in the event's own transaction, so an event is never recorded without
its notifications nor notified without being recorded. The :class:`Sender` runs on the
background thread of every worker (``Background.every``), claims due rows with a
conditional UPDATE, and POSTs them with a timeout: nothing is ever sent inside an HTTP
request, so a slow or dead receiver cannot slow one. Delivery is at least once (a crash
after the POST and before the row is marked sends it again); receivers dedupe on the
delivery id, which stays the same across retries and re-sends.

``config`` (the policy file's ``webhooks`` list), ``payload`` (the body and its MLflow-style
signature) and ``sender`` (the outbox's delivery loop), re-exported here.
"""

from checkpoint.events.webhooks.config import (
    ALL,
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    EVENTS,
    FORMATS,
    Webhook,
    WebhookConfigError,
    Webhooks,
    load,
    parse,
)
from checkpoint.events.webhooks.payload import ENTITY, SIGNATURE_VERSION, body, describe, headers, payload, sign
from checkpoint.events.webhooks.sender import PARALLEL, ROUND_SECONDS, Round, Sender, log

__all__ = [
    "ALL",
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_BACKOFF",
    "ENTITY",
    "EVENTS",
    "FORMATS",
    "PARALLEL",
    "ROUND_SECONDS",
    "SIGNATURE_VERSION",
    "Round",
    "Sender",
    "Webhook",
    "WebhookConfigError",
    "Webhooks",
    "body",
    "describe",
    "headers",
    "load",
    "log",
    "parse",
    "payload",
    "sign",
]
