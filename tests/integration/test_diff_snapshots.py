"""The request page's diff from its snapshot (review/diff_snapshots.py), against a real MLflow,
on SQLite and PostgreSQL: taken when the request opens, never shown as current once a side
moved, its time on the page, one write when two instances race, and a page that still works
when MLflow cannot be read."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
from mlflow import MlflowClient

from checkpoint import create_app
from checkpoint.demo.mlflow_server import free_port
from checkpoint.review import diff
from checkpoint.review.diff_snapshots import snapshot_key
from checkpoint.services import services
from checkpoint.storage.entities import EventKind
from tests.support.apps import background_task, close_app, live
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.clock import MovableClock
from tests.support.governed import api, make_model
from tests.support.race import race

TASK = "diff-snapshots"
START = datetime(2026, 12, 4, 12, 3, 20, tzinfo=UTC)


@pytest.fixture
def checkpoint_clock() -> MovableClock:
    return MovableClock(START)


@pytest.fixture
def checkpoint_config() -> dict:
    """No background thread: each test runs the snapshot task itself, when it chooses."""
    return {"background": False}


def page(base: str, request_id: int) -> str:
    answer = requests.get(f"{base}/checkpoint/requests/{request_id}", auth=("carol", "x"), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def as_of(text: str) -> str:
    found = re.search(r'Read from MLflow as of\s+<time datetime="([^"]+)">([^<]+)</time>', text)
    assert found, text
    return found.group(2)


def opened_on_champion(base: str, mlflow_url: str, versions: int = 2) -> tuple[str, list[str], int]:
    """A model whose v1 holds ``champion``, and a request to move the alias to v2."""
    name, made = make_model(mlflow_url, versions=versions)
    MlflowClient(mlflow_url).set_registered_model_alias(name, "champion", made[0])
    answer = api(
        base,
        "POST",
        "/requests",
        user="alice",
        json={"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": made[1]}},
    )
    assert answer.status_code in (200, 201), answer.text
    return name, made, answer.json()["id"]


def test_the_snapshot_is_taken_on_open_and_the_page_shows_its_time(live_checkpoint, mlflow_server, checkpoint_clock):
    base, app = live_checkpoint.url, live_checkpoint.app
    store = services(app).store
    name, made, request_id = opened_on_champion(base, mlflow_server.url)
    asked = store.diff_snapshot(request_id)
    assert asked is not None and asked.wanted_at == START and asked.data is None  # asked for at opening

    checkpoint_clock.advance(timedelta(seconds=40))
    assert background_task(app, TASK)() == 1
    taken = store.diff_snapshot(request_id)
    assert taken.data is not None and taken.wanted_at is None and taken.claimed_at is None
    assert taken.taken_at == START + timedelta(seconds=40)
    challenger, champion = diff.decode_sides(taken.data)
    assert (challenger.version, champion.version) == (made[1], made[0]) and challenger.params == {"i": "1"}
    assert background_task(app, TASK)() == 0  # nothing asked any more

    # The page renders it, with its time, consistent with the page's other times (UTC minutes).
    checkpoint_clock.advance(timedelta(minutes=2))
    text = page(base, request_id)
    assert as_of(text) == "2026-12-04 12:04 UTC" and "refreshing" not in text
    # Data logged since is not the snapshot's: the page shows what it read, and says when.
    run_id = challenger.run_id
    MlflowClient(mlflow_server.url).log_metric(run_id, "late_metric", 0.5)
    assert "late_metric" not in page(base, request_id)

    # Old enough: the page shows it, says "refreshing", and asks for a new read...
    checkpoint_clock.advance(timedelta(minutes=5))
    text = page(base, request_id)
    assert "late_metric" not in text and as_of(text) == "2026-12-04 12:04 UTC"
    assert "refreshing: a newer read is under way" in text
    assert store.diff_snapshot(request_id).wanted_at is not None
    # ...which the background serves: now the page shows the new data and the new time.
    assert background_task(app, TASK)() == 1
    assert "late_metric" in diff.decode_sides(store.diff_snapshot(request_id).data)[0].metrics
    text = page(base, request_id)
    assert "late_metric" in text and as_of(text) == "2026-12-04 12:11 UTC" and "refreshing" not in text


def test_a_moved_champion_is_never_shown_from_the_old_snapshot(live_checkpoint, mlflow_server, checkpoint_clock):
    base, app = live_checkpoint.url, live_checkpoint.app
    store = services(app).store
    name, made, request_id = opened_on_champion(base, mlflow_server.url, versions=3)
    background_task(app, TASK)()
    old_key = store.diff_snapshot(request_id).key
    assert "against " in page(base, request_id) and f"{name} v{made[0]} (champion)" in page(base, request_id)

    # Someone moves the alias straight in MLflow: the page compares with v3 at once.
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", made[2])
    checkpoint_clock.advance(timedelta(seconds=30))
    text = page(base, request_id)
    assert f"{name} v{made[2]} (champion)" in text and f"{name} v{made[0]} (champion)" not in text
    assert "Moved since the request was opened: champion was v1 at opening, is v3 now" in text
    assert as_of(text) == "2026-12-04 12:03 UTC"  # read now (12:03:50), not the old snapshot's
    stored = store.diff_snapshot(request_id)
    assert stored.key != old_key and stored.taken_at == START + timedelta(seconds=30)
    assert diff.decode_sides(stored.data)[1].version == made[2]


def test_new_digests_recorded_on_the_request_make_the_snapshot_unused(live_checkpoint, mlflow_server, checkpoint_clock):
    """A change of the challenger's content digest (recorded by the workflow) changes the key."""
    base, app = live_checkpoint.url, live_checkpoint.app
    store = services(app).store
    _, _, request_id = opened_on_champion(base, mlflow_server.url)
    background_task(app, TASK)()
    before = store.diff_snapshot(request_id)
    item = store.get(request_id)
    store.update_fields(
        request_id, actor="test", event=EventKind.SNAPSHOTS_REFRESHED, data={}, challenger={**item.challenger, "digest": "0" * 64}
    )
    checkpoint_clock.advance(timedelta(seconds=5))
    page(base, request_id)
    after = store.diff_snapshot(request_id)
    assert after.key != before.key and after.taken_at == START + timedelta(seconds=5)


def test_two_instances_write_each_snapshot_once(live_checkpoint, mlflow_server, checkpoint_clock, tmp_path):
    base, app = live_checkpoint.url, live_checkpoint.app
    config = {"registry_url": mlflow_server.url, "database_url": live_checkpoint.database_url, "background": False}
    other = create_app({**config, "data_dir": tmp_path / "b"}, clock=checkpoint_clock)
    try:
        ids = [opened_on_champion(base, mlflow_server.url)[2] for _ in range(3)]
        written = race(background_task(app, TASK), background_task(other, TASK))
        assert sum(written) == 3, written
        assert race(background_task(app, TASK), background_task(other, TASK)) == [0, 0]
        store = services(app).store
        assert all(store.diff_snapshot(i).data is not None for i in ids)
        # A claim whose worker died lapses after the lease: then another takes it over.
        store.want_diff_snapshots([ids[0]])
        lease_before = checkpoint_clock.now() - timedelta(seconds=120)
        assert store.claim_diff_snapshot(ids[0], lease_before) is not None
        assert background_task(other, TASK)() == 0  # held by the (dead) claimer
        checkpoint_clock.advance(timedelta(seconds=121))
        assert background_task(other, TASK)() == 1
    finally:
        close_app(other)


def test_a_failing_mlflow_leaves_the_page_working_and_says_so(live_checkpoint, mlflow_server, checkpoint_clock, tmp_path):
    base, app = live_checkpoint.url, live_checkpoint.app
    store = services(app).store
    _, _, with_snapshot = opened_on_champion(base, mlflow_server.url)
    _, _, without = opened_on_champion(base, mlflow_server.url)
    assert background_task(app, TASK)() == 2
    with services(app).engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM diff_snapshots WHERE request_id = {without}")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every MLflow read fails
    config = {"registry_url": dead, "database_url": live_checkpoint.database_url, "background": False}
    broken = create_app({**config, "data_dir": tmp_path / "broken"}, clock=checkpoint_clock)
    try:
        with live(broken, live_checkpoint.database_url) as served:
            checkpoint_clock.advance(timedelta(minutes=1))
            text = page(served.url, with_snapshot)
            assert "MLflow could not be read for the diff" in text
            assert "Shown: the last diff read, which may no longer be of the versions the target holds now" in text
            assert as_of(text) == "2026-12-04 12:03 UTC" and 'id="diff-h"' in text
            text = page(served.url, without)
            assert "MLflow could not be read for the diff" in text and 'id="diff-h"' not in text
            assert "Read from MLflow as of" not in text
            # A refresh that fails keeps the last snapshot and its error, and ends its claim.
            store.want_diff_snapshots([with_snapshot])
            assert background_task(broken, TASK)() == 0
            failed = store.diff_snapshot(with_snapshot)
            assert failed.error and failed.claimed_at is None and failed.wanted_at is None and failed.data is not None
        text = page(base, with_snapshot)  # the healthy instance: the snapshot, and the failed refresh said
        assert as_of(text) == "2026-12-04 12:03 UTC" and "the last refresh failed:" in text
    finally:
        close_app(broken)


@pytest.mark.browser
def test_the_page_shows_the_snapshot_time_in_a_browser(live_checkpoint, mlflow_server, browser_page, screenshot):  # noqa: F811
    base, app = live_checkpoint.url, live_checkpoint.app
    _, _, request_id = opened_on_champion(base, mlflow_server.url)
    background_task(app, TASK)()
    browser_page.goto(f"{base}/checkpoint/whoami")
    browser_page.fill("input[name=name]", "carol")
    browser_page.click("button[type=submit]")
    browser_page.goto(f"{base}/checkpoint/requests/{request_id}")
    line = browser_page.locator(".cp-diff-as-of")
    assert line.inner_text().startswith("Read from MLflow as of 2026-12-04 12:03 UTC")
    line.scroll_into_view_if_needed()
    screenshot("diff-as-of")


def test_a_page_viewed_while_the_read_is_under_way_waits_for_it(live_checkpoint, mlflow_server, checkpoint_clock):
    """Opened and viewed at once: the page does not read the same runs a second time while the
    background thread reads them; it shows that read when written (its time: the claim's)."""
    base, app = live_checkpoint.url, live_checkpoint.app
    store, snapshots = services(app).store, services(app).snapshots
    _, _, request_id = opened_on_champion(base, mlflow_server.url)
    claimed = store.claim_diff_snapshot(request_id, checkpoint_clock.now() - timedelta(seconds=120))
    assert claimed == START
    checkpoint_clock.advance(timedelta(minutes=1))  # a read of its own would say 12:04
    viewed = race(lambda: page(base, request_id), lambda: _write_claimed(app, request_id, claimed))[0]
    assert as_of(viewed) == "2026-12-04 12:03 UTC"
    stored = store.diff_snapshot(request_id)
    assert stored.taken_at == START and stored.claimed_at is None and snapshots is not None


def _write_claimed(app, request_id: int, claimed: datetime) -> bool:
    """What the background thread's claimed read writes (read here, after the page started)."""
    snapshots, store = services(app).snapshots, services(app).store
    item = store.get(request_id)
    registry = services(app).workflow.registry_for(item.workspace)
    challenger, champion = snapshots.sides(item, registry)
    data, raw = diff.encode_sides(*diff.load_sides(registry, challenger, champion, fresh=True))
    key = snapshot_key(item, challenger, champion)
    return store.save_diff_snapshot(request_id, key, data, raw, claimed, claimed_at=claimed)


def test_a_snapshot_over_the_size_bound_is_not_kept_and_the_page_reads_mlflow(
    live_checkpoint, mlflow_server, checkpoint_clock, monkeypatch
):
    from checkpoint.review import diff_snapshots

    base, app = live_checkpoint.url, live_checkpoint.app
    store = services(app).store
    _, _, request_id = opened_on_champion(base, mlflow_server.url)
    monkeypatch.setattr(diff_snapshots, "MAX_STORED", 100)
    assert background_task(app, TASK)() == 0
    refused = store.diff_snapshot(request_id)
    assert refused.data is None and "not kept" in refused.error and refused.claimed_at is None
    checkpoint_clock.advance(timedelta(minutes=2))
    text = page(base, request_id)  # read now, shown with that time, still not kept
    assert as_of(text) == "2026-12-04 12:05 UTC" and 'id="diff-h"' in text
    assert store.diff_snapshot(request_id).data is None
