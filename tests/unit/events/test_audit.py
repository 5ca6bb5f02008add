"""The audit chain in memory: keyed hashes in the documented format (stored chains must keep
verifying after any refactor), verify() on intact chains, and every kind of tampering it must
catch, with the message an auditor reads."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from checkpoint.events import audit

KEY = "k" * 64
OLD_KEY = "o" * 64
KEYS = audit.Keyring.of(KEY)
ROTATED = audit.Keyring.of(KEY, OLD_KEY)  # newest first
T0 = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)


def event(id_: int, kind: str = "commented", **extra) -> dict:
    return {
        "id": id_,
        "request_id": 1,
        "model_name": "fraud",
        "kind": kind,
        "actor": "alice",
        "data": {"n": id_},
        "created_at": T0 + timedelta(seconds=id_),
        **extra,
    }


def chain(n: int, secrets: list[str | None] | None = None, start: int = 1) -> list[dict]:
    """``n`` events chained from the genesis, event i made with secrets[i] (None: unkeyed)."""
    secrets = secrets if secrets is not None else [KEY] * n
    rows, previous = [], audit.GENESIS
    for i, secret in zip(range(start, start + n), secrets, strict=True):
        row = event(i)
        key = secret.encode() if secret else None
        row.update(prev_hash=previous, key_id=audit.key_id(secret) if secret else None, hash=audit.event_hash(row, previous, key))
        rows.append(row)
        previous = row["hash"]
    return rows


# -- the format --------------------------------------------------------------------------------


def test_the_keyed_hash_is_hmac_sha256_over_the_previous_hash_and_canonical_json():
    row = event(7)
    canonical = (
        '{"actor":"alice","created_at":"2026-01-02T03:04:12.600000+00:00","data":{"n":7},"id":7,'
        '"kind":"commented","model_name":"fraud","request_id":1}'
    )
    assert audit.canonical(row) == canonical
    message = f"{'a' * 64}\n{canonical}".encode()
    assert audit.event_hash(row, "a" * 64, KEY.encode()) == hmac.new(KEY.encode(), message, hashlib.sha256).hexdigest()
    assert audit.event_hash(row, "a" * 64) == hashlib.sha256(message).hexdigest()  # before keys existed


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2026, 1, 2, 3, 4, 5),  # SQLite hands back naive UTC
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=["naive", "utc", "plus-two"],
)
def test_one_spelling_of_an_instant(created_at):
    assert audit.timestamp(created_at) == "2026-01-02T03:04:05.000000+00:00"


def test_non_ascii_stays_readable_in_the_canonical_form():
    assert '"actor":"zoë"' in audit.canonical({**event(1), "actor": "zoë"})


def test_a_key_id_names_a_key_without_revealing_it():
    kid = audit.key_id(KEY)
    assert len(kid) == 32 and KEY not in kid
    assert kid == audit.key_id(KEY.encode()) != audit.key_id(OLD_KEY)
    assert kid == hmac.new(KEY.encode(), b"checkpoint audit key id v1", hashlib.sha256).hexdigest()[:32]


def test_keyring_is_newest_first_without_blanks_or_repeats():
    ring = audit.Keyring.of(KEY, "", OLD_KEY, KEY)
    assert ring.keys == (KEY.encode(), OLD_KEY.encode())
    assert ring.current == (audit.key_id(KEY), KEY.encode())
    assert (ring.rank(audit.key_id(OLD_KEY)), ring.rank("nope")) == (1, None)
    assert not audit.Keyring() and audit.Keyring().current is None


def test_signed_heads():
    ref = "12:" + "c" * 64
    signature = audit.sign_head(KEY.encode(), ref)
    assert audit.head_is_signed(ROTATED, ref, audit.key_id(KEY), signature)
    assert not audit.head_is_signed(ROTATED, "13:" + "c" * 64, audit.key_id(KEY), signature)
    assert not audit.head_is_signed(ROTATED, ref, audit.key_id(OLD_KEY), signature)
    assert not audit.head_is_signed(audit.Keyring.of(OLD_KEY), ref, audit.key_id(KEY), signature)


# -- intact chains -----------------------------------------------------------------------------


def test_an_intact_keyed_chain_verifies():
    rows = chain(5)
    verdict = audit.verify(rows, keys=KEYS)
    assert verdict.ok and verdict.count == 5 and verdict.head == rows[-1]["hash"]
    assert verdict.head_ref == f"5:{rows[-1]['hash']}"
    assert verdict.keys_used == (audit.key_id(KEY),)
    assert verdict.describe() == f"audit chain intact: 5 events, head 5:{rows[-1]['hash']}"


def test_unkeyed_events_before_keyed_ones_are_covered():
    rows = chain(4, [None, None, KEY, KEY])
    verdict = audit.verify(rows, keys=KEYS)
    assert verdict.ok and verdict.unkeyed == 2
    assert verdict.describe().endswith("(2 events from before the audit key, covered by the keyed ones after them)")


def test_a_chain_without_any_key_says_so():
    verdict = audit.verify(chain(3, [None] * 3))
    assert verdict.ok
    assert verdict.describe().endswith("(no audit key: anyone who can write to the database could have rewritten it)")


def test_a_rotation_verifies_with_the_retired_key_given():
    rows = chain(4, [OLD_KEY, OLD_KEY, KEY, KEY])
    verdict = audit.verify(rows, keys=ROTATED)
    assert verdict.ok and verdict.keys_used == (audit.key_id(OLD_KEY), audit.key_id(KEY))


def test_an_export_from_a_date_verifies_from_its_own_anchor():
    rows = chain(6)[3:]
    assert not audit.verify(rows, keys=KEYS).ok
    assert audit.verify(rows, anchor=rows[0]["prev_hash"], keys=KEYS).ok


def test_an_empty_log_is_intact():
    assert audit.verify([], keys=KEYS) == audit.Verdict(True, 0, audit.GENESIS)


# -- tampering ---------------------------------------------------------------------------------


def edited(rows, index, **changes):
    rows = [dict(r) for r in rows]
    rows[index].update(changes)
    return rows


TAMPERING = [
    ("edited-data", lambda r: edited(r, 2, data={"n": 99}), 3, "its contents do not match its hash: the row was edited"),
    ("edited-actor", lambda r: edited(r, 0, actor="mallory"), 1, "its contents do not match its hash"),
    ("edited-time", lambda r: edited(r, 4, created_at=T0), 5, "its contents do not match its hash"),
    (
        "deleted",
        lambda r: r[:2] + r[3:],
        4,
        "its prev_hash does not match event #2: an event between them was deleted, inserted or reordered",
    ),
    ("first-deleted", lambda r: r[1:], 2, "its prev_hash does not match the start of the log"),
    ("reordered", lambda r: [r[0], r[2], r[1], *r[3:]], 3, "its prev_hash does not match event #1"),
    (
        "rewritten-unkeyed",
        lambda r: _unkeyed_tail(r[:3]),
        4,
        "it has no audit key but follows keyed event #1: events were rewritten without the key",
    ),
    ("unknown-key", lambda r: _rekeyed(r, "x" * 64), 1, "which was not given: set CHECKPOINT_AUDIT_KEY"),
]


def _unkeyed_tail(head: list[dict]) -> list[dict]:
    """Two more events appended without the key (what an insider without it can do)."""
    rows, previous = [], head[-1]["hash"]
    for i in (4, 5):
        row = event(i)
        row.update(prev_hash=previous, key_id=None, hash=audit.event_hash(row, previous))
        rows.append(row)
        previous = row["hash"]
    return head + rows


def _rekeyed(rows: list[dict], secret: str) -> list[dict]:
    """The whole chain recomputed under a key the verifier was not given."""
    return chain(len(rows), [secret] * len(rows))


@pytest.mark.parametrize(("tamper", "at", "problem"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING])
def test_tampering_is_caught_where_it_happened(tamper, at, problem):
    verdict = audit.verify(tamper(chain(5)), keys=KEYS)
    assert not verdict.ok
    assert verdict.broken_at == at
    assert problem in verdict.problem
    assert verdict.describe().startswith(f"audit chain BROKEN at event #{at}: ")


def test_a_chain_recomputed_without_the_key_is_caught():
    """An insider who rewrites every row with plain SHA-256 while a key is in use."""
    verdict = audit.verify(chain(3, [None] * 3), keys=KEYS)
    assert not verdict.ok and verdict.broken_at == 3
    assert "the newest event has no audit key while one is in use" in verdict.problem


def test_a_retired_key_used_after_rotation_is_caught():
    verdict = audit.verify(chain(3, [KEY, OLD_KEY, OLD_KEY]), keys=ROTATED)
    assert not verdict.ok and verdict.broken_at == 2
    assert "which was retired before a key used earlier in the log" in verdict.problem


def test_kept_heads_catch_a_cut_tail_and_a_rewrite():
    rows = chain(6)
    kept = {6: rows[5]["hash"]}
    assert audit.verify(rows, keys=KEYS, expect=kept).ok
    cut = audit.verify(rows[:4], keys=KEYS, expect=kept)
    assert not cut.ok and cut.broken_at == 6 and "it is not in the log any more" in cut.problem
    wrong = audit.verify(rows, keys=KEYS, expect={3: "0" * 64})
    assert not wrong.ok and wrong.broken_at == 3 and "its hash is not the one you kept for it" in wrong.problem


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["12:" + "A" * 64], {12: "a" * 64}),
        ([" #12 : " + "b" * 64 + " "], {12: "b" * 64}),
        ([], {}),
    ],
)
def test_parse_expect(values, expected):
    assert audit.parse_expect(values) == expected


@pytest.mark.parametrize("value", ["12", "12:" + "a" * 63, "x:" + "a" * 64, "12:" + "g" * 64])
def test_parse_expect_refuses_what_is_not_a_head(value):
    with pytest.raises(ValueError, match=r"is not ID:HASH \(an event id, a colon, 64 hex digits\)"):
        audit.parse_expect([value])


# -- exports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_reads_back_and_verifies_offline(fmt):
    rows = chain(3, [None, KEY, KEY])
    rows[0]["request_id"] = None
    rows[0]["hash"] = audit.event_hash(rows[0], audit.GENESIS)
    rows = chain_again(rows)
    text = "".join(audit.export_jsonl(rows) if fmt == "jsonl" else audit.export_csv(rows))
    back = audit.parse_export(text, fmt)
    assert [r["id"] for r in back] == [1, 2, 3] and back[0]["request_id"] is None
    assert back[1]["data"] == {"n": 2}
    assert audit.verify(back, keys=KEYS).ok
    # An edit in the export is an edit.
    tampered = text.replace('"n": 2', '"n": 3') if fmt == "jsonl" else text.replace('""n"": 2', '""n"": 3')
    assert tampered != text
    assert not audit.verify(audit.parse_export(tampered, fmt), keys=KEYS).ok


def chain_again(rows: list[dict]) -> list[dict]:
    """Re-link ``rows`` after an edit made on purpose (their keys kept)."""
    previous = audit.GENESIS
    for row in rows:
        key = KEY.encode() if row["key_id"] else None
        row.update(prev_hash=previous, hash=audit.event_hash(row, previous, key))
        previous = row["hash"]
    return rows
