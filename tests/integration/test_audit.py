"""The tamper-evident audit trail: the hash chain, `checkpoint audit verify|export`, the API,
and "outside change" events for promotions made in MLflow without Checkpoint.

Tampering is done the way an insider would: SQL straight at the database, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import json

import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient

from checkpoint.events import audit
from checkpoint.services import services
from checkpoint.storage import db
from checkpoint.storage.entities import OUTSIDE_CHANGE
from tests.support.audit import KEY, KEYS, cli, execute, seed, store_for
from tests.support.governed import api, make_model
from tests.support.race import race


def event_ids(url: str) -> list[int]:
    with db.make_engine(url).connect() as conn:
        return list(conn.execute(sa.text("SELECT id FROM events ORDER BY id")).scalars())


def test_every_event_is_chained_to_the_one_before(database_url):
    store = store_for(database_url)
    seed(store)
    rows = list(store.audit_rows())
    assert len(rows) == 12
    assert rows[0]["prev_hash"] == audit.GENESIS
    for before, after in zip(rows, rows[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    assert {r["key_id"] for r in rows} == {audit.key_id(KEY)}
    verdict = audit.verify(rows, keys=KEYS)
    assert verdict.ok and verdict.count == 12 and verdict.head == rows[-1]["hash"]
    assert verdict.head_ref == f"{rows[-1]['id']}:{rows[-1]['hash']}" and verdict.unkeyed == 0


def test_verify_passes_then_names_an_edited_row(database_url, tmp_path):
    seed(store_for(database_url))
    ok = cli("verify", url=database_url, tmp_path=tmp_path, CHECKPOINT_REGISTRY_URL="")  # reads only the database
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact: 12 events" in ok.stdout

    victim = event_ids(database_url)[5]
    execute(database_url, "UPDATE events SET actor = 'mallory' WHERE id = :id", id=victim)
    broken = cli("verify", url=database_url, tmp_path=tmp_path)
    assert broken.returncode == 1
    assert f"BROKEN at event #{victim}" in broken.stdout and "edited" in broken.stdout


def test_verify_names_the_row_after_a_deleted_one(database_url, tmp_path):
    seed(store_for(database_url))
    ids = event_ids(database_url)
    execute(database_url, "DELETE FROM events WHERE id = :id", id=ids[4])
    broken = cli("verify", url=database_url, tmp_path=tmp_path)
    assert broken.returncode == 1
    assert f"BROKEN at event #{ids[5]}" in broken.stdout
    assert f"does not match event #{ids[3]}" in broken.stdout


def test_verify_names_reordered_rows(database_url, tmp_path):
    """Swapping two events' contents (keeping their ids) is caught at the first of them."""
    seed(store_for(database_url))
    ids = event_ids(database_url)
    first, second = ids[2], ids[3]
    with db.make_engine(database_url).begin() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                sa.text("SELECT id, kind, actor, data FROM events WHERE id IN (:a, :b)"), {"a": first, "b": second}
            )
        }
        for target, source in ((first, second), (second, first)):
            data = rows[source].data
            conn.execute(
                sa.text("UPDATE events SET kind = :kind, actor = :actor, data = :data WHERE id = :id"),
                {
                    "kind": rows[source].kind,
                    "actor": rows[source].actor,
                    "id": target,
                    "data": data if isinstance(data, str) else json.dumps(data),
                },
            )
    broken = cli("verify", url=database_url, tmp_path=tmp_path)
    assert broken.returncode == 1
    assert f"BROKEN at event #{first}" in broken.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_round_trips_and_verifies_offline(database_url, tmp_path, fmt):
    store = store_for(database_url)
    seed(store)
    out = tmp_path / f"audit.{fmt}"
    done = cli("export", "--format", fmt, "--output", str(out), url=database_url, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    parsed = audit.parse_export(out.read_text(encoding="utf-8"), fmt)
    original = list(store.audit_rows())
    assert [r["id"] for r in parsed] == [r["id"] for r in original]
    for got, want in zip(parsed, original, strict=True):
        assert {k: got[k] for k in audit.FIELDS if k != "created_at"} == {k: want[k] for k in audit.FIELDS if k != "created_at"}
        assert audit.timestamp(got["created_at"]) == audit.timestamp(want["created_at"])
        assert (got["prev_hash"], got["hash"]) == (want["prev_hash"], want["hash"])
    checked = cli("verify", "--file", str(out), url=database_url, tmp_path=tmp_path)
    assert checked.returncode == 0 and "intact: 12 events" in checked.stdout

    tampered = out.read_text(encoding="utf-8").replace("carol", "mallory", 1)
    out.write_text(tampered, encoding="utf-8")
    rejected = cli("verify", "--file", str(out), url=database_url, tmp_path=tmp_path)
    assert rejected.returncode == 1 and "edited" in rejected.stdout


def test_export_since_keeps_later_events_and_their_links(sqlite_url, tmp_path):
    store = store_for(sqlite_url)
    seed(store, requests_=1)
    cutoff = list(store.audit_rows())[-1]["created_at"]
    store.add_comment(1, "dave", "later")
    done = cli("export", "--since", audit.timestamp(cutoff), url=sqlite_url, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = audit.parse_export(done.stdout, "jsonl")
    assert [r["kind"] for r in rows] == ["approved", "commented"]
    assert audit.verify(rows, anchor=rows[0]["prev_hash"], keys=KEYS).ok
    bad = cli("export", "--since", "last tuesday", url=sqlite_url, tmp_path=tmp_path)
    assert bad.returncode == 2 and "not an ISO date" in bad.stderr


def test_concurrent_writers_keep_one_unbroken_chain(database_url):
    """Eight threads commenting at once (four requests): the chain has no fork."""
    store = store_for(database_url)
    ids = seed(store, requests_=4)

    def writer(n: int) -> None:
        for i in range(10):
            store.add_comment(ids[n % 4], f"user{n}", f"comment {i}")

    outcomes = race(*[lambda n=n: writer(n) for n in range(8)], capture=True)
    errors = [e for e in outcomes if isinstance(e, BaseException)]
    if database_url.startswith("sqlite"):
        # SQLite may refuse a writer whose snapshot went stale ("database is locked"); none may fork the chain.
        assert all("locked" in str(e) for e in errors), errors
    else:
        assert errors == []
    verdict = audit.verify(store.audit_rows(), keys=KEYS)
    assert verdict.ok, verdict.describe()
    written = sum(1 for r in store.audit_rows() if r["kind"] == "commented" and r["actor"].startswith("user"))
    assert verdict.count == 16 + written
    assert written >= 80 - 10 * len(errors)


def open_alias(base: str, name: str, version: str, title: str) -> requests.Response:
    return api(
        base,
        "POST",
        "/requests",
        json={"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": version}, "title": title},
    )


@pytest.fixture
def auditor(checkpoint_config) -> str:
    """An admin (``CHECKPOINT_ADMINS``); listed before the app fixture, so the app reads it."""
    checkpoint_config["admins"] = "auditor"
    return "auditor"


def test_api_verify_and_export(auditor, live_checkpoint, mlflow_server):
    name, versions = make_model(mlflow_server.url)
    made = open_alias(live_checkpoint.url, name, versions[0], "first champion")
    assert made.status_code == 201, made.text
    verdict = api(live_checkpoint.url, "GET", "/audit/verify").json()
    assert verdict["ok"] is True and verdict["count"] >= 1 and verdict["broken_at"] is None
    keys = services(live_checkpoint.app).store.keys  # generated into the data dir
    assert verdict["key_id"] == keys.ids[0] and verdict["unkeyed"] == 0

    refused = api(live_checkpoint.url, "GET", "/audit/export")  # bob is no admin: the full log is not his
    assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"
    exported = api(live_checkpoint.url, "GET", "/audit/export", auditor, params={"format": "jsonl"})
    assert exported.status_code == 200 and exported.headers["Content-Type"].startswith("application/x-ndjson")
    rows = audit.parse_export(exported.text, "jsonl")
    assert audit.verify(rows, keys=keys).ok and rows[-1]["hash"] == verdict["head"]
    assert rows[-1]["id"] == verdict["head_id"] and rows[-1]["key_id"] == keys.ids[0]
    assert any(r["kind"] == "opened" and r["request_id"] == made.json()["id"] for r in rows)

    as_csv = api(live_checkpoint.url, "GET", "/audit/export", auditor, params={"format": "csv"})
    assert audit.verify(audit.parse_export(as_csv.text, "csv"), keys=keys).ok
    for params, message in (({"format": "xml"}, "format must be jsonl or csv"), ({"since": "yesterday"}, "not an ISO date")):
        bad = api(live_checkpoint.url, "GET", "/audit/export", auditor, params=params)
        assert bad.status_code == 400 and message in bad.json()["message"]


def test_outside_change_is_recorded_once_and_shown_in_history(auditor, live_checkpoint, mlflow_server):
    """A champion set directly in MLflow is logged the first time Checkpoint reads it, and again
    when it moves behind Checkpoint's back after an applied request."""
    mlflow = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, versions = make_model(mlflow_server.url, versions=3)
    mlflow.set_registered_model_alias(name, "champion", versions[0])  # behind Checkpoint's back

    def outside() -> list[dict]:
        rows = api(live_checkpoint.url, "GET", "/audit/export", auditor).text
        return [r for r in audit.parse_export(rows, "jsonl") if r["kind"] == OUTSIDE_CHANGE and r["model_name"] == name]

    first = open_alias(live_checkpoint.url, name, versions[1], "v2 please")
    assert first.status_code == 201, first.text
    assert [(r["data"]["version"], r["data"]["first_seen"]) for r in outside()] == [(versions[0], True)]
    again = open_alias(live_checkpoint.url, name, versions[2], "v3 please")
    assert again.status_code == 201
    assert len(outside()) == 1  # nothing moved: not recorded twice

    approved = api(
        live_checkpoint.url, "POST", f"/requests/{first.json()['id']}/reviews", user="carol", json={"verdict": "approve"}
    )
    assert approved.json()["state"] == "applied", approved.text
    open_alias(live_checkpoint.url, name, versions[0], "back to v1")
    assert len(outside()) == 1  # Checkpoint put v2 there itself

    mlflow.set_registered_model_alias(name, "champion", versions[2])  # behind its back again
    open_alias(live_checkpoint.url, name, versions[0], "v1 again")
    moved = outside()
    assert [(r["data"]["version"], r["data"]["previous"]) for r in moved] == [(versions[0], None), (versions[2], versions[1])]

    page = requests.get(f"{live_checkpoint.url}/checkpoint/models/{name}/history", auth=("bob", "x"), timeout=30)
    assert page.status_code == 200
    # The champion Checkpoint first found in place is no warning; the move behind its back is.
    assert page.text.count("outside change") == 1 and page.text.count("found in place") == 1
    assert "set before Checkpoint watched it" in page.text
    assert f"#{first.json()['id']}" in page.text
