#!/usr/bin/env python3
"""A small webhook receiver that verifies Checkpoint's (and MLflow 3's) signed deliveries.

Standard library only, so it runs anywhere Python 3.9+ does:

    CHECKPOINT_WEBHOOK_SECRET=s3cret python3 scripts/webhook_receiver.py --port 8765

Each POST must carry ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (unix seconds, at most
``--tolerance`` seconds away from now: an old delivery replayed is refused) and
``X-MLflow-Signature: v1,<base64(HMAC-SHA256(secret, "<id>.<timestamp>.<raw body>"))>``.
A verified delivery is answered 200 and printed on one line; a bad or missing signature 401,
a stale timestamp or a malformed request 400. A delivery id seen before is answered 200 and
marked as a duplicate (deliveries are at least once: receivers dedupe on the id).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PORT = 8765
SECRET_ENV = "CHECKPOINT_WEBHOOK_SECRET"
MAX_BODY = 1024 * 1024


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers, body: bytes, now: float | None = None, tolerance: float = 300.0) -> tuple[int, str] | None:
    """The status and reason to refuse this delivery with, or None when it is genuine and fresh.

    ``headers`` is any mapping with case-insensitive ``get`` (``http.server``'s message, or a dict
    with the exact header names).
    """
    delivery_id = headers.get("X-MLflow-Delivery-Id")
    timestamp = headers.get("X-MLflow-Timestamp")
    signature = headers.get("X-MLflow-Signature")
    if not delivery_id or not timestamp:
        return 400, "missing X-MLflow-Delivery-Id or X-MLflow-Timestamp"
    if not signature:
        return 401, "missing X-MLflow-Signature (is a secret configured for this webhook?)"
    if not timestamp.isdigit():
        return 400, f"X-MLflow-Timestamp {timestamp[:32]!r} is not unix seconds"
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > tolerance:
        return 400, f"timestamp is {age:.0f} s away from now (more than {tolerance:.0f} s): stale or replayed"
    wanted = expected_signature(secret, delivery_id, timestamp, body)
    # Several space-separated signatures are accepted, so a secret can be rotated without a gap.
    if not any(hmac.compare_digest(wanted, given) for given in signature.split()):
        return 401, "signature does not match (wrong secret, or the body was changed)"
    return None


def summary(delivery_id: str, event: str, body: bytes) -> str:
    """One line: delivery id, event, request and title (or a chat message's text)."""
    try:
        message = json.loads(body)
    except ValueError:
        return f"{delivery_id} {event}: (not JSON, {len(body)} bytes)"
    if not isinstance(message, dict):
        return f"{delivery_id} {event}: {str(message)[:200]}"
    if "text" in message and "data" not in message:
        return f"{delivery_id} {event}: {str(message['text'])[:300]}"
    data = message.get("data") if isinstance(message.get("data"), dict) else {}
    action = message.get("action") or event
    request = f"request #{data['request_id']}" if data.get("request_id") else data.get("model") or data.get("name") or "-"
    title = f" {data['title']!r}" if data.get("title") else ""
    actor = f" by {data['actor']}" if data.get("actor") else ""
    url = f" {data['url']}" if data.get("url") else ""
    return f"{delivery_id} {message.get('entity', '?')}.{action} {request}{title}{actor}{url}"


class Receiver(BaseHTTPRequestHandler):
    server_version = "checkpoint-webhook-receiver/1"
    secret = ""
    tolerance = 300.0
    seen: OrderedDict[str, None] = OrderedDict()

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            self._answer(400, "a body with Content-Length up to 1 MiB is required")
            return
        body = self.rfile.read(int(length))
        refusal = verify(self.secret, self.headers, body, tolerance=self.tolerance)
        if refusal:
            status, problem = refusal
            print(f"REFUSED {self.headers.get('X-MLflow-Delivery-Id', '?')}: {problem}", flush=True)
            self._answer(status, problem)
            return
        delivery_id = self.headers["X-MLflow-Delivery-Id"]
        duplicate = delivery_id in self.seen
        self.seen[delivery_id] = None
        while len(self.seen) > 10000:
            self.seen.popitem(last=False)
        event = self.headers.get("X-Checkpoint-Event", "")
        print(f"verified{' (duplicate)' if duplicate else ''} {summary(delivery_id, event, body)}", flush=True)
        self._answer(200, "ok")

    def _answer(self, status: int, text: str) -> None:
        data = json.dumps({"status": status, "message": text}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        """Quiet: the one line per delivery above is the log."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print Checkpoint / MLflow webhook deliveries whose signature verifies.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--secret", default=None, help=f"the webhook secret (default: ${SECRET_ENV}; prefer the variable)")
    parser.add_argument("--tolerance", type=float, default=300.0, help="largest accepted clock difference, s (300)")
    args = parser.parse_args(argv)
    secret = args.secret or os.environ.get(SECRET_ENV, "")
    if not secret:
        parser.error(f"give the webhook's secret with --secret or ${SECRET_ENV}")
    handler = type("ConfiguredReceiver", (Receiver,), {"secret": secret, "tolerance": args.tolerance, "seen": OrderedDict()})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    print(f"webhook receiver: listening on http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
