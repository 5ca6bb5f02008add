"""The tamper-evident audit trail: every event is hash-chained to the one before it.

An event's ``hash`` is SHA-256 over its previous event's hash and its own canonical JSON
(sorted keys, no spaces, UTC timestamp with microseconds, the id included). Changing a
row's content breaks its own hash; deleting or reordering rows breaks the next row's
``prev_hash``. Removing the newest events leaves a shorter valid chain, which is why
``verify`` prints the head (count and last hash): an auditor compares it with one kept
elsewhere, e.g. from the previous export.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64
FIELDS = ("id", "request_id", "model_name", "kind", "actor", "data", "created_at")
EXPORT_FIELDS = (*FIELDS, "prev_hash", "hash")


def timestamp(value: datetime) -> str:
    """One spelling of an instant, whatever the database handed back (SQLite: naive UTC)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def canonical(event: dict) -> str:
    body = {key: event[key] for key in FIELDS}
    body["created_at"] = timestamp(event["created_at"])
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event: dict, prev_hash: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical(event)}".encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    count: int
    head: str
    broken_at: int | None = None
    problem: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.count} events, head {self.head}"
        return f"audit chain BROKEN at event #{self.broken_at}: {self.problem} ({self.count} events checked before it)"


def verify(rows: Iterable[dict], anchor: str = GENESIS) -> Verdict:
    """Walk the events in id order; stop at the first broken link.

    ``anchor`` is the hash the first row must follow: the genesis for the whole log, the
    first row's own ``prev_hash`` for an export that starts ``--since`` a date.
    """
    previous, count = anchor, 0
    last_id: int | None = None
    for row in rows:
        if row["prev_hash"] != previous:
            where = f"event #{last_id}" if last_id is not None else "the start of the log"
            return Verdict(False, count, previous, row["id"],
                           f"its prev_hash does not match {where}: an event between them was deleted, "
                           "inserted or reordered")  # fmt: skip
        if event_hash(row, previous) != row["hash"]:
            return Verdict(False, count, previous, row["id"], "its contents do not match its hash: the row was edited")
        previous, last_id, count = row["hash"], row["id"], count + 1
    return Verdict(True, count, previous)


def _plain(row: dict) -> dict:
    out = {key: row[key] for key in EXPORT_FIELDS}
    out["created_at"] = timestamp(row["created_at"])
    return out


def export_jsonl(rows: Iterable[dict]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(_plain(row), sort_keys=True, ensure_ascii=False) + "\n"


def export_csv(rows: Iterable[dict]) -> Iterator[str]:
    """CSV with ``data`` as a JSON cell; reading it back and json-decoding ``data`` round-trips."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        plain = _plain(row)
        plain["data"] = json.dumps(plain["data"], sort_keys=True, ensure_ascii=False)
        plain["request_id"] = "" if plain["request_id"] is None else plain["request_id"]
        writer.writerow(plain)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def parse_export(text: str, fmt: str) -> list[dict]:
    """Rows of an export, back as the dicts :func:`verify` takes (so an export can be verified offline)."""
    rows: list[dict] = []
    if fmt == "jsonl":
        for line in text.splitlines():
            if line.strip():
                rows.append(json.loads(line))
    else:
        for row in csv.DictReader(io.StringIO(text)):
            row["id"] = int(row["id"])
            row["request_id"] = int(row["request_id"]) if row["request_id"] else None
            row["data"] = json.loads(row["data"])
            rows.append(row)
    for row in rows:
        row["created_at"] = datetime.fromisoformat(row["created_at"])
    return rows
