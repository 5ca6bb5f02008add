"""The outbox's delivery loop: claim due deliveries, POST them, record the outcome.

Runs on the background thread of every worker; never inside an HTTP request, so a slow or
dead receiver cannot slow one. At least once: receivers dedupe on the delivery id.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from checkpoint.clock import SYSTEM, Clock
from checkpoint.events.webhooks.config import Webhooks
from checkpoint.events.webhooks.payload import body, headers
from checkpoint.storage.entities import Outgoing
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.notify")  # the name operators filter the JSON logs on

# How many deliveries one round sends at once, and how long a round may keep the thread.
PARALLEL, ROUND_SECONDS = 4, 30.0


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
    # The time a retry is due from. Not the signature's X-MLflow-Timestamp: the receiver checks
    # that against its own clock (replays), so it is the machine's time; a round's own time
    # limit is this process's elapsed time (time.monotonic).
    clock: Clock = SYSTEM

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
                webhook.url,
                data=raw,
                headers=headers(webhook, delivery.id, outgoing.event.kind, raw),
                timeout=(webhook.timeout, webhook.timeout),
                allow_redirects=False,
            )
            with answer:
                status = answer.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status} {answer.reason or ''}: {answer.text[:300]}".strip()
                    wait = _retry_after(answer.headers.get("Retry-After"), self.clock)
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
            log.warning(
                "webhook %s: delivery %s failed for good after %d attempts: %s",
                webhook.name,
                delivery.id,
                delivery.attempts,
                error,
            )
            self.store.delivery_done(delivery.id, status, f"gave up after {delivery.attempts} attempts: {error}")
            return "failed"
        delay = min(max(wait or 0.0, webhook.delay(delivery.attempts)), webhook.max_backoff)
        log.info(
            "webhook %s: delivery %s attempt %d failed (%s); next in %.1f s",
            webhook.name,
            delivery.id,
            delivery.attempts,
            error,
            delay,
        )
        self.store.delivery_done(delivery.id, status, error, retry_at=self.clock.now() + timedelta(seconds=delay))
        return "retrying"


def _where(url: str) -> str:
    """Host and port only: a webhook URL's path may hold a token."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _reason(exc: Exception) -> str:
    """The innermost cause's class and message without the URL (``Connection refused``)."""
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "Connection reset",
        "Remote end closed connection",
        "certificate verify failed",
        "timed out",
    ):
        if marker in text:
            return marker
    return type(exc).__name__


def _retry_after(value: str | None, clock: Clock = SYSTEM) -> float | None:
    """A 429/503's ``Retry-After``, in seconds or as an HTTP date (counted from ``clock``'s now)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - clock.now()).total_seconds(), 0.0) if when.tzinfo else None
