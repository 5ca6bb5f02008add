"""What a webhook receives: MLflow's webhook shape, or a Slack line, signed as MLflow 3 signs.

Signing follows MLflow 3's webhooks, so one receiver verifies both::

    X-MLflow-Delivery-Id: <uuid4>          X-MLflow-Timestamp: <unix seconds>
    X-MLflow-Signature: v1,<base64(HMAC-SHA256(secret, "<delivery id>.<timestamp>.<raw body>"))>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from checkpoint import urls
from checkpoint.events.audit import HEAD
from checkpoint.events.webhooks.config import Webhook
from checkpoint.review.behaviour.summary import line as behaviour_line
from checkpoint.review.representation import event_fields
from checkpoint.storage.entities import Outgoing

ENTITY = "promote_request"
SIGNATURE_VERSION = "v1"


def payload(outgoing: Outgoing, public_url: str | None) -> dict:
    """MLflow's webhook shape (entity, action, timestamp, data), built only from stored rows,
    so every attempt of one delivery carries the same body."""
    event, item = outgoing.event, outgoing.request
    if event.kind == HEAD:  # about the log, not a request: the head and its signature, as recorded
        url = urls.audit_verify(public_url, str(event.data.get("head", "")))  # checks the head against the log
        data: dict = {"event_id": event.id, "url": url, "model": None, "actor": event.actor, **event.data}
        return {"entity": "audit_log", "action": event.kind, "timestamp": event.created_at.isoformat(), "data": data}
    workspace = item.workspace if item else (event.data.get("workspace") or "")
    data = {
        "request_id": event.request_id,
        "url": urls.request_url(public_url, event.request_id, event.model_name, workspace),
        **event_fields(
            model=event.model_name,
            workspace=workspace,  # MLflow's workspace of the model
            target=item.target if item else event.data.get("target"),
            version=item.version if item else event.data.get("version"),
            title=outgoing.title if item else None,
            author=item.author if item else None,
            state=outgoing.state,
        ),
        "actor": event.actor,
        "event_id": event.id,
        "event": event.data,
    }
    if outgoing.comment is not None:
        data["comment"] = outgoing.comment
    if getattr(item, "challenger", None):  # as of the event: every attempt sends the same
        data["behaviour"] = outgoing.behaviour
    found = getattr(item, "rollback", None)  # written once, at opening: every attempt sends the same
    if found is not None:
        data["rollback"] = found
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
        "opened": "opened",
        "edited": "edited",
        "commented": "commented on",
        "approved": "approved",
        "rejected": "rejected",
        "withdrawn": "withdrew",
        "applied": "applied",
        "apply_failed": "failed to apply",
        "approvals_dismissed": "dismissed approvals of",
        "check_failed": "reported a failed check on",
        "review_approved": "approved (review)",
        "review_rejected": "rejected (review)",
        "break_glass": "BROKE GLASS on",
        "retried": "retried",
        "reopened": "reopened",
        "outside_change": "saw an outside change to",
        "approval_expired": "expired an approval on",
        "scheduled": "scheduled",
        "waiting": "approved (waiting to apply)",
        "released": "released",
        "cancelled": "cancelled the scheduled apply of",
        "status_changed": "posted a status on",
        "behaviour_finished": "finished the behavioural diff of",
    }.get(action, action)
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
    if action == "status_changed":
        on = "" if event.get("scope") == "request" else f" (on v{event.get('version')} of {event.get('model')})"
        detail = f"{event.get('context')} is {event.get('state')}{on}: {event.get('description') or 'no description'}"
    if action == "behaviour_finished":
        detail = behaviour_line(event)
    if action == "approval_expired":
        detail = f"{event.get('reviewer')}'s approval is older than {event.get('expire_after')} and no longer counts"
    if action == "scheduled":
        detail = f"to apply at {event.get('apply_at')}" if event.get("apply_at") else "to apply once approved"
    if action in ("waiting", "released"):
        waited = event.get("waiting_for") or event.get("waited_for") or {}
        what = f"freeze '{waited.get('name')}'" if waited.get("kind") == "freeze" else "its apply_at"
        detail = f"{'until' if action == 'waiting' else 'after'} {what} ({waited.get('until')})"
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
