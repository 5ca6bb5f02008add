"""The audit trail over HTTP: verify the hash chain, export the log (JSON lines or CSV).

The same data as ``checkpoint audit verify|export``, for an auditor without shell access.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from checkpoint.errors import CheckpointError
from checkpoint.events import audit
from checkpoint.web.context import store as _store

bp = Blueprint("audit", __name__, url_prefix="/checkpoint/api/v1/audit")


@bp.get("/verify")
def verify():
    """The chain checked with the server's audit keys; ``expect=ID:HASH`` (repeatable) also
    checks heads an auditor kept, so a log cut short does not read as intact. Open to everyone
    signed in: the verdict holds counts, hashes and event numbers, no content of any event."""
    try:
        expect = audit.parse_expect(request.args.getlist("expect"))
    except ValueError as exc:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"expect: {exc}") from exc
    store = _store()
    verdict = audit.verify(store.audit_rows(), keys=store.keys, expect=expect)
    return jsonify(
        ok=verdict.ok,
        count=verdict.count,
        head=verdict.head,
        head_id=verdict.head_id,
        broken_at=verdict.broken_at,
        problem=verdict.problem or None,
        unkeyed=verdict.unkeyed,
        key_id=store.keys.current[0] if store.keys.current else None,
        message=verdict.describe(),
    )


@bp.get("/export")
def export():
    """The whole log, every model's events: for admins only, in every identity mode."""
    user = g.user
    if not user.is_admin:
        raise CheckpointError(403, "PERMISSION_DENIED", f"{user.name} is not an admin: the audit export is for admins")
    fmt = request.args.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"format must be jsonl or csv, not {fmt[:40]!r}")
    since = None
    raw = request.args.get("since", "").strip()
    if raw:
        try:
            since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise CheckpointError(
                400, "INVALID_PARAMETER_VALUE", f"since={raw[:40]!r} is not an ISO date or time, e.g. 2026-11-01"
            ) from exc
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since
    rows = _store().audit_rows(since=since)
    chunks = audit.export_jsonl(rows) if fmt == "jsonl" else audit.export_csv(rows)
    mimetype = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    stamp = _store().clock.now().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        stream_with_context(chunks),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="checkpoint-audit-{stamp}.{fmt}"'},
    )
