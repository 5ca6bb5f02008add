"""The tamper-evident audit trail: every event is chained to the one before it, under a key.

An event's ``hash`` is HMAC-SHA256, keyed by the audit key (``CHECKPOINT_AUDIT_KEY``), over
its previous event's hash and its own canonical JSON (sorted keys, no spaces, UTC timestamp
with microseconds, the id included). Changing a row's content breaks its own hash; deleting
or reordering rows breaks the next row's ``prev_hash``; and since the key does not live in
the database, someone who can write to the database cannot recompute the chain after an
edit. ``key_id`` names the key each event was made with (a fingerprint, not the key), so
after a rotation older events still verify with the retired key.

Events recorded before keys existed carry no ``key_id`` and a plain SHA-256. They may only
*precede* keyed ones: an unkeyed event after a keyed one, or a chain whose newest event is
unkeyed while a key is in use, is a break (otherwise an insider rewrites the log, or its
tail, as "old" events). For the same reason an event made with a retired key may not follow
one made with a newer key.

Removing the newest events leaves a shorter valid chain, which is why ``verify`` prints the
head (``ID:HASH``) and takes heads kept elsewhere (``expect``): an auditor who kept one learns
when the log no longer holds it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

# The chain's parts live with the store that writes it; the audit's callers know them by these names.
from checkpoint.storage.hashing import (
    FIELDS as FIELDS,
)
from checkpoint.storage.hashing import (
    GENESIS as GENESIS,
)
from checkpoint.storage.hashing import (
    HEAD as HEAD,
)
from checkpoint.storage.hashing import (
    SEALED as SEALED,
)
from checkpoint.storage.hashing import (
    Keyring as Keyring,
)
from checkpoint.storage.hashing import (
    canonical as canonical,
)
from checkpoint.storage.hashing import (
    event_hash as event_hash,
)
from checkpoint.storage.hashing import (
    head_is_signed as head_is_signed,
)
from checkpoint.storage.hashing import (
    key_id as key_id,
)
from checkpoint.storage.hashing import (
    sign_head as sign_head,
)
from checkpoint.storage.hashing import (
    timestamp as timestamp,
)

EXPORT_FIELDS = (*FIELDS, "key_id", "prev_hash", "hash")


_EXPECT = re.compile(r"^\s*#?(\d{1,10})\s*:\s*([0-9a-fA-F]{64})\s*$")


def parse_expect(values: Iterable[str]) -> dict[int, str]:
    """``ID:HASH`` heads an auditor kept (``verify`` prints them); ValueError names a bad one."""
    out: dict[int, str] = {}
    for value in values:
        found = _EXPECT.match(value)
        if not found:
            raise ValueError(
                f"{value[:80]!r} is not ID:HASH (an event id, a colon, 64 hex digits), "
                "as `checkpoint audit verify` prints the head"
            )
        out[int(found[1])] = found[2].lower()
    return out


@dataclass(frozen=True)
class Verdict:
    ok: bool
    count: int
    head: str
    broken_at: int | None = None
    problem: str = ""
    head_id: int | None = None
    unkeyed: int = 0  # events made before keys (plain SHA-256)
    keys_used: tuple[str, ...] = ()  # the key ids the events were made with, oldest first

    @property
    def head_ref(self) -> str:
        """The head as ``--expect`` takes it."""
        return f"{self.head_id}:{self.head}" if self.head_id is not None else self.head

    def describe(self) -> str:
        if not self.ok:
            return f"audit chain BROKEN at event #{self.broken_at}: {self.problem} ({self.count} events checked before it)"
        text = f"audit chain intact: {self.count} events, head {self.head_ref}"
        if self.unkeyed and self.unkeyed == self.count:
            text += " (no audit key: anyone who can write to the database could have rewritten it)"
        elif self.unkeyed:
            text += f" ({self.unkeyed} events from before the audit key, covered by the keyed ones after them)"
        return text


def _missing_key(kid: str) -> str:
    return (
        f"it was made with audit key {kid}, which was not given: set CHECKPOINT_AUDIT_KEY (or "
        "CHECKPOINT_AUDIT_KEY_FILE) to it, or add it to CHECKPOINT_AUDIT_OLD_KEYS"
    )


def verify(
    rows: Iterable[dict], anchor: str = GENESIS, keys: Keyring | None = None, expect: Mapping[int, str] | None = None
) -> Verdict:
    """Walk the events in id order; stop at the first broken link.

    ``anchor`` is the hash the first row must follow: the genesis for the whole log, the
    first row's own ``prev_hash`` for an export that starts ``--since`` a date. ``expect``
    maps event ids to the hashes an auditor kept: each must still be there, unchanged.
    """
    keys = keys or Keyring()
    expect = dict(expect or {})
    previous, count, unkeyed = anchor, 0, 0
    last_id: int | None = None
    newest_rank: int | None = None  # the newest key seen so far (lowest rank); None before any
    keyed_at: int | None = None  # the first keyed event
    used: list[str] = []

    def broken(at: int, problem: str) -> Verdict:
        return Verdict(False, count, previous, at, problem, last_id, unkeyed, tuple(used))

    for row in rows:
        if row["prev_hash"] != previous:
            where = f"event #{last_id}" if last_id is not None else "the start of the log"
            return broken(
                row["id"], f"its prev_hash does not match {where}: an event between them was deleted, inserted or reordered"
            )
        kid = row.get("key_id") or None
        if kid is None:
            if keyed_at is not None:
                return broken(
                    row["id"], f"it has no audit key but follows keyed event #{keyed_at}: events were rewritten without the key"
                )
            key = None
        else:
            rank = keys.rank(kid)
            if rank is None:
                return broken(row["id"], _missing_key(kid))
            if newest_rank is not None and rank > newest_rank:
                return broken(
                    row["id"],
                    f"it was made with audit key {kid}, which was retired before a key "
                    "used earlier in the log: a retired key was used after rotation",
                )
            key = keys.keys[rank]
            newest_rank = rank if newest_rank is None else min(newest_rank, rank)
        if event_hash(row, previous, key) != row["hash"]:
            how = "the row was edited" if key is not None else "the row was edited (it has no audit key: was it rewritten?)"
            return broken(row["id"], f"its contents do not match its hash: {how}")
        if kid is None:
            unkeyed += 1
        else:
            keyed_at = keyed_at or row["id"]
            if kid not in used:
                used.append(kid)
        if row["id"] in expect and expect.pop(row["id"]) != row["hash"]:
            return broken(row["id"], "its hash is not the one you kept for it: the log was rewritten since")
        previous, last_id, count = row["hash"], row["id"], count + 1
    if keys and count and keyed_at is None:
        return Verdict(
            False,
            count,
            previous,
            last_id,
            "the newest event has no audit key while one is in use: either Checkpoint has not run with "
            "the key yet (starting it once seals the older events) or the log was rewritten without it",
            last_id,
            unkeyed,
            tuple(used),
        )
    if expect:
        gone = min(expect)
        return Verdict(
            False,
            count,
            previous,
            gone,
            f"it is not in the log any more, though you kept {gone}:{expect[gone]}: events were deleted",
            last_id,
            unkeyed,
            tuple(used),
        )
    return Verdict(True, count, previous, None, "", last_id, unkeyed, tuple(used))


def _plain(row: dict) -> dict:
    out = {key: row.get(key) for key in EXPORT_FIELDS}  # exports made before keys have no key_id
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
        plain["key_id"] = plain["key_id"] or ""
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
            row["key_id"] = row.get("key_id") or None
            rows.append(row)
    for row in rows:
        row["created_at"] = datetime.fromisoformat(row["created_at"])
    return rows
