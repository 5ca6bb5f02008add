"""Issue #12, class 9: an audit chain an insider cannot quietly rewrite.

The insider here has what a database administrator has: SQL at the database (SQLite and
PostgreSQL alike), the code (so the hash construction), but not the audit key, which lives in
Checkpoint's environment. Each attack is made the way such a person would make it, then checked
with `checkpoint audit verify` (or the API) as an auditor would run it.
"""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from checkpoint import create_app
from checkpoint.events import audit
from checkpoint.services import services
from checkpoint.settings import Settings
from checkpoint.storage import db
from tests.support.audit import KEY, KEYS, cli, execute, seed, store_for
from tests.support.governed import api
from tests.support.processes import serve_refusal
from tests.support.serving import close_app

OLD_KEY = "retired-audit-key-" + "a1" * 20
OLD_KEYS = audit.Keyring.of(OLD_KEY)
ROTATED = audit.Keyring.of(KEY, OLD_KEY)  # after rotation: KEY signs, OLD_KEY still verifies
STRANGER = "someone-elses-key-" + "c3" * 20  # a key the insider made up
HEAD = re.compile(r"head (\d+):([0-9a-f]{64})")


def rows_of(url: str) -> list[dict]:
    return list(store_for(url).audit_rows())


def rechain(url: str, start: int, edit: dict, *, key: bytes | None, key_id: str | None, keep_key_id: bool = False) -> None:
    """The insider's rewrite: ``edit`` the event with id ``start``, then recompute ``prev_hash``
    and ``hash`` of it and of every later row (plain SHA-256 with ``key=None``), straight in SQL."""
    rows = rows_of(url)
    previous = next((r["hash"] for r in reversed(rows) if r["id"] < start), audit.GENESIS)
    with db.make_engine(url).begin() as conn:
        for row in (r for r in rows if r["id"] >= start):
            if row["id"] == start:
                row = {**row, **edit}
                conn.execute(sa.text("UPDATE events SET actor = :actor WHERE id = :id"), {"actor": row["actor"], "id": row["id"]})
            digest = audit.event_hash(row, previous, key)
            kid = row["key_id"] if keep_key_id else key_id
            conn.execute(
                sa.text("UPDATE events SET prev_hash = :p, hash = :h, key_id = :k WHERE id = :id"),
                {"p": previous, "h": digest, "k": kid, "id": row["id"]},
            )
            previous = digest


def approval(url: str) -> dict:
    """The second request's approval: the row an insider would change to make someone else the approver."""
    return [r for r in rows_of(url) if r["kind"] == "review_approved"][1]


# -- the insider's rewrites -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "key", "key_id", "keep", "problem"),
    [
        ("plain-sha256", None, None, True, "contents do not match its hash"),
        ("wrong-key", STRANGER.encode(), None, True, "contents do not match its hash"),
        ("wrong-key-own-id", STRANGER.encode(), audit.key_id(STRANGER), False, f"audit key {audit.key_id(STRANGER)}"),
        ("as-unkeyed-legacy", None, None, False, "has no audit key but follows keyed event"),
    ],
)
def test_edited_approval_rechained_without_the_key_is_named(database_url, tmp_path, how, key, key_id, keep, problem):
    """Changing an approval's actor and re-chaining every later row (as the unkeyed chain allowed)
    no longer reads as intact: verify names the edited row, whichever way the rest was recomputed."""
    seed(store_for(database_url))
    assert cli("verify", url=database_url, tmp_path=tmp_path).returncode == 0
    victim = approval(database_url)
    rechain(database_url, victim["id"], {"actor": "mallory"}, key=key, key_id=key_id, keep_key_id=keep)
    assert approval(database_url)["actor"] == "mallory"  # the forgery is in place, every link consistent

    broken = cli("verify", url=database_url, tmp_path=tmp_path)
    assert broken.returncode == 1, broken.stdout
    assert f"BROKEN at event #{victim['id']}: " in broken.stdout and problem in broken.stdout
    # The API says the same.
    verdict = audit.verify(rows_of(database_url), keys=KEYS)
    assert (verdict.ok, verdict.broken_at) == (False, victim["id"])


def test_whole_log_rewritten_as_unkeyed_is_broken(database_url, tmp_path):
    """Rewriting every event as a pre-key (plain SHA-256) event leaves no keyed event to contradict
    it, but a keyed Checkpoint's log never ends in an unkeyed event: the newest is named."""
    seed(store_for(database_url))
    first = rows_of(database_url)[0]
    rechain(database_url, first["id"], {"actor": "mallory"}, key=None, key_id=None)
    assert {r["key_id"] for r in rows_of(database_url)} == {None}
    assert audit.verify(rows_of(database_url)).ok  # the plain chain itself is consistent...
    broken = cli("verify", url=database_url, tmp_path=tmp_path)  # ...but the auditor has the key
    assert broken.returncode == 1
    assert f"BROKEN at event #{rows_of(database_url)[-1]['id']}" in broken.stdout
    assert "newest event has no audit key" in broken.stdout


# -- deleted tails and kept heads -----------------------------------------------------------


def test_deleting_the_newest_rows_is_caught_by_an_expected_head(database_url, tmp_path):
    store = store_for(database_url)
    seed(store)
    done = cli("verify", url=database_url, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    head_id, head = HEAD.search(done.stdout).groups()
    kept = f"{head_id}:{head}"
    rows = rows_of(database_url)
    assert (int(head_id), head) == (rows[-1]["id"], rows[-1]["hash"])

    # The legitimate path: the log grows; the kept head is still in it, and an earlier one too.
    store.add_comment(1, "dave", "later")
    earlier = f"{rows[3]['id']}:{rows[3]['hash']}"
    grown = cli("verify", "--expect", kept, "--expect", earlier, url=database_url, tmp_path=tmp_path)
    assert grown.returncode == 0 and "intact: 13 events" in grown.stdout, grown.stdout + grown.stderr

    # The insider deletes the newest three events: a shorter chain, valid on its own.
    execute(database_url, "DELETE FROM events WHERE id >= :id", id=rows[-2]["id"])
    assert cli("verify", url=database_url, tmp_path=tmp_path).returncode == 0
    caught = cli("verify", "--expect", earlier, "--expect", kept, url=database_url, tmp_path=tmp_path)
    assert caught.returncode == 1
    assert f"BROKEN at event #{head_id}: it is not in the log any more" in caught.stdout

    # A head whose hash differs (the log was rewritten since it was kept) fails too.
    other = f"{rows[3]['id']}:{'0' * 64}"
    rewritten = cli("verify", "--expect", other, url=database_url, tmp_path=tmp_path)
    assert rewritten.returncode == 1 and "not the one you kept" in rewritten.stdout


@pytest.mark.parametrize("bad", ["12", "12:abc", "x:" + "0" * 64, "12:" + "g" * 64])
def test_expect_must_be_id_colon_hash(sqlite_url, tmp_path, bad):
    seed(store_for(sqlite_url), requests_=1)
    refused = cli("verify", "--expect", bad, url=sqlite_url, tmp_path=tmp_path)
    assert refused.returncode == 2 and "is not ID:HASH" in refused.stderr and "Traceback" not in refused.stderr


def test_api_verify_checks_expected_heads(live_checkpoint):
    store = services(live_checkpoint.app).store
    seed(store)
    verdict = api(live_checkpoint.url, "GET", "/audit/verify").json()
    assert verdict["ok"] is True and verdict["count"] == 12 and verdict["unkeyed"] == 0
    kept = f"{verdict['head_id']}:{verdict['head']}"
    again = api(live_checkpoint.url, "GET", "/audit/verify", params={"expect": kept})
    assert again.status_code == 200 and again.json()["ok"] is True

    execute(live_checkpoint.database_url, "DELETE FROM events WHERE id = :id", id=verdict["head_id"])
    gone = api(live_checkpoint.url, "GET", "/audit/verify", params={"expect": kept}).json()
    assert gone["ok"] is False and gone["broken_at"] == verdict["head_id"] and "not in the log" in gone["problem"]
    for bad in ("latest", f"{verdict['head_id']}:short"):
        refused = api(live_checkpoint.url, "GET", "/audit/verify", params={"expect": bad})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "ID:HASH" in refused.json()["message"]


# -- rotation -------------------------------------------------------------------------------


def test_rotation_keeps_old_events_verifying_with_the_retired_key(database_url, tmp_path):
    seed(store_for(database_url, OLD_KEYS), requests_=1)  # before the rotation
    seed(store_for(database_url, ROTATED), requests_=1)  # after it: KEY signs
    rows = rows_of(database_url)
    assert [r["key_id"] for r in rows] == [audit.key_id(OLD_KEY)] * 4 + [audit.key_id(KEY)] * 4
    verdict = audit.verify(rows, keys=ROTATED)
    assert verdict.ok and verdict.keys_used == (audit.key_id(OLD_KEY), audit.key_id(KEY))

    both = cli("verify", url=database_url, tmp_path=tmp_path, CHECKPOINT_AUDIT_OLD_KEYS=OLD_KEY)
    assert both.returncode == 0 and "intact: 8 events" in both.stdout, both.stdout + both.stderr
    key_file = tmp_path / "audit-keys"
    key_file.write_text(f"# current first, then retired\n{KEY}\n\n{OLD_KEY}\n", encoding="utf-8")
    from_file = cli(
        "verify", url=database_url, tmp_path=tmp_path, CHECKPOINT_AUDIT_KEY="", CHECKPOINT_AUDIT_KEY_FILE=str(key_file)
    )
    assert from_file.returncode == 0 and "intact: 8 events" in from_file.stdout, from_file.stdout + from_file.stderr

    only_new = cli("verify", url=database_url, tmp_path=tmp_path)
    assert only_new.returncode == 1
    missing = f"BROKEN at event #{rows[0]['id']}: it was made with audit key {audit.key_id(OLD_KEY)}, which was not given"
    assert missing in only_new.stdout
    assert OLD_KEY not in only_new.stdout and KEY not in only_new.stdout


def test_export_verifies_offline_with_the_key_only(sqlite_url, tmp_path):
    seed(store_for(sqlite_url))
    out = tmp_path / "audit.csv"
    assert cli("export", "--format", "csv", "--output", str(out), url=sqlite_url, tmp_path=tmp_path).returncode == 0
    assert audit.parse_export(out.read_text(encoding="utf-8"), "csv")[0]["key_id"] == audit.key_id(KEY)
    assert cli("verify", "--file", str(out), url=sqlite_url, tmp_path=tmp_path).returncode == 0
    keyless = cli("verify", "--file", str(out), url=sqlite_url, tmp_path=tmp_path, CHECKPOINT_AUDIT_KEY="")
    assert keyless.returncode == 1 and "which was not given" in keyless.stdout
    assert not (tmp_path / "data" / "audit_key").exists()  # the audit commands never generate a key


# -- the generated key, and the events from before keys -------------------------------------


def make_app(url: str, data_dir: Path, **config):
    return create_app(
        {"registry_url": "http://127.0.0.1:9", "database_url": url, "data_dir": data_dir, "background": False, **config}
    )


def test_generated_key_is_private_reused_and_announced(sqlite_url, tmp_path, caplog):
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="checkpoint.app"):
        first = make_app(sqlite_url, data)
    path = data / "audit_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "only as safe as that directory" in caplog.text and str(path) in caplog.text
    key = path.read_text().strip()
    assert len(key) == 64
    seed(services(first).store, requests_=1)
    close_app(first)

    second = make_app(sqlite_url, data)  # a restart: the same key, not a new one
    assert path.read_text().strip() == key
    store = services(second).store
    store.add_comment(1, "dave", "after the restart")
    close_app(second)
    rows = rows_of(sqlite_url)
    assert {r["key_id"] for r in rows} == {audit.key_id(key)}
    assert audit.verify(rows, keys=audit.Keyring.of(key)).ok
    # The audit commands find the generated key in the same data directory.
    found = cli("verify", url=sqlite_url, tmp_path=tmp_path, CHECKPOINT_AUDIT_KEY="")
    assert found.returncode == 0 and "intact: 5 events" in found.stdout, found.stdout + found.stderr


def test_configured_key_is_used_and_nothing_generated(sqlite_url, tmp_path, caplog):
    data = tmp_path / "data"
    settings = Settings.from_env(
        {
            "CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:9",
            "CHECKPOINT_DATABASE_URL": sqlite_url,
            "CHECKPOINT_DATA_DIR": str(data),
            "CHECKPOINT_AUDIT_KEY": KEY,
            "CHECKPOINT_AUDIT_OLD_KEYS": f" {OLD_KEY} ,",
        }
    )
    assert (settings.audit_key, settings.audit_old_keys) == (KEY, (OLD_KEY,))
    assert KEY not in repr(settings) and OLD_KEY not in repr(settings)
    with caplog.at_level(logging.WARNING, logger="checkpoint.app"):
        application = create_app(settings)
    try:
        assert services(application).store.keys == ROTATED
        assert "CHECKPOINT_AUDIT_KEY" not in caplog.text
        assert not (data / "audit_key").exists()
    finally:
        close_app(application)


def legacy_log(tmp_path: Path, events: int = 4) -> str:
    """A database with events recorded before keys existed (chained by migration 0004)."""
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine, "0003")
    with engine.begin() as conn:
        for i in range(events):
            conn.execute(
                sa.text(
                    "INSERT INTO events (model_name, kind, actor, data, created_at) "
                    "VALUES ('m', 'opened', 'alice', :data, '2026-11-01 10:00:00.000000')"
                ),
                {"data": f'{{"i": {i}}}'},
            )
    db.upgrade(engine)
    engine.dispose()
    return url


def test_events_from_before_the_key_are_sealed_at_start_and_still_verify(tmp_path):
    url = legacy_log(tmp_path)
    unsealed = audit.verify(rows_of(url), keys=KEYS)
    assert not unsealed.ok and "Checkpoint has not run with the key yet" in unsealed.problem
    for _restart in range(2):  # sealed once, not at every start
        close_app(make_app(url, tmp_path / "data", audit_key=KEY))
    rows = rows_of(url)
    assert [(r["kind"], r["key_id"]) for r in rows[3:]] == [("opened", None), (audit.SEALED, audit.key_id(KEY))]
    assert rows[-1]["data"] == {"key_id": audit.key_id(KEY), "unkeyed_events": 4, "after_event": rows[3]["id"]}
    verdict = audit.verify(rows, keys=KEYS)
    assert verdict.ok and verdict.unkeyed == 4 and "4 events from before the audit key" in verdict.describe()

    # An unkeyed event is now covered: editing it breaks the keyed successor's link, even re-chained.
    rechain(url, 2, {"actor": "mallory"}, key=None, key_id=None, keep_key_id=True)
    verdict = audit.verify(rows_of(url), keys=KEYS)
    assert not verdict.ok and verdict.broken_at == rows[-1]["id"]


# -- bad keys stop start-up, naming the variable and never the key --------------------------


def test_serve_refuses_a_short_key_without_traceback(tmp_path):
    result = serve_refusal(tmp_path, CHECKPOINT_REGISTRY_URL="http://127.0.0.1:5001", CHECKPOINT_AUDIT_KEY="short-key")
    assert result.stderr.startswith("Error: CHECKPOINT_AUDIT_KEY: the audit key is too short"), result.stderr
    assert "short-key" not in result.stderr


# -- the head, published to a webhook so a copy lives elsewhere -----------------------------


def test_head_is_published_once_per_interval_and_only_after_news(database_url):
    from datetime import datetime, timedelta

    store = store_for(database_url)
    seed(store, requests_=1)
    start = datetime.fromisoformat(audit.timestamp(rows_of(database_url)[-1]["created_at"])) + timedelta(seconds=1)
    first = store.publish_head(3600, stamp=start)
    rows = rows_of(database_url)
    published = rows[-1]
    assert published["id"] == first and published["kind"] == audit.HEAD and published["key_id"] == KEYS.ids[0]
    ref = f"{rows[-2]['id']}:{rows[-2]['hash']}"
    assert published["data"]["head"] == ref and published["data"]["events"] == len(rows) - 1
    assert audit.head_is_signed(KEYS, ref, published["data"]["key_id"], published["data"]["signature"])
    assert not audit.head_is_signed(KEYS, f"{rows[-3]['id']}:{rows[-3]['hash']}", KEYS.ids[0], published["data"]["signature"])
    assert not audit.head_is_signed(OLD_KEYS, ref, KEYS.ids[0], published["data"]["signature"])

    assert store.publish_head(3600, stamp=start + timedelta(seconds=60)) is None  # too soon
    assert store.publish_head(3600, stamp=start + timedelta(seconds=7200)) is None  # nothing new since
    store.add_comment(1, "dave", "news")
    assert store.publish_head(3600, stamp=start + timedelta(seconds=1800)) is None  # news, but too soon
    second = store.publish_head(3600, stamp=start + timedelta(seconds=3601))
    assert second is not None and second > first
    assert audit.verify(rows_of(database_url), keys=KEYS).ok  # heads are chained events like any other


def test_head_webhook_keeps_a_signed_copy_that_catches_a_cut_log(database_url, tmp_path):
    from checkpoint.events import webhooks as notify
    from tests.support.receiver import SECRET, SECRET_ENV, Receiver, hook, write_policy
    from tests.support.waiting import wait_until

    receiver = Receiver().start()
    try:
        policy = write_policy(
            tmp_path,
            [
                hook(receiver, name="vault", path="/heads", events=["audit_head"]),
                hook(receiver, name="team", path="/all", events=["*"]),
            ],
        )
        application = make_app(database_url, tmp_path / "data", audit_key=KEY, policy_file=policy, environ={SECRET_ENV: SECRET})
        try:
            seed(services(application).store)
            services(application).background.start()  # its first round publishes the head
            (arrival,) = wait_until(lambda: receiver.accepted("/heads"), "the head delivered")
            wait_until(lambda: len(receiver.accepted("/all")) == 12, "the request events delivered")
        finally:
            close_app(application)
    finally:
        receiver.stop()
    message = arrival.message
    assert arrival.headers["X-Checkpoint-Event"] == "audit_head" and message["entity"] == "audit_log"
    data = message["data"]
    rows = rows_of(database_url)
    assert data["head"] == f"{rows[-2]['id']}:{rows[-2]['hash']}" and rows[-1]["kind"] == audit.HEAD
    assert audit.head_is_signed(KEYS, data["head"], data["key_id"], data["signature"])
    assert data["url"] == f"/checkpoint/api/v1/audit/verify?expect={data['head'].replace(':', '%3A')}"
    assert all(a.headers["X-Checkpoint-Event"] != "audit_head" for a in receiver.accepted("/all"))  # not in "*"
    assert notify.describe(message).startswith(f"audit log head {data['head']}")

    # The insider cuts the log back to before the head the vault kept: only the kept copy says so.
    cut = int(data["head"].split(":")[0]) - 2
    execute(database_url, "DELETE FROM deliveries WHERE event_id >= :id", id=cut)
    execute(database_url, "DELETE FROM events WHERE id >= :id", id=cut)
    assert cli("verify", url=database_url, tmp_path=tmp_path).returncode == 0
    caught = cli("verify", "--expect", data["head"], url=database_url, tmp_path=tmp_path)
    assert caught.returncode == 1 and "it is not in the log any more" in caught.stdout
