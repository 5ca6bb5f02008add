"""The demo's history, played through Checkpoint itself: the first time the demo seeds, its
fraud-detector champion gets a past, and one request waits for the demo's freeze.

The seed (``seed.py``) fills MLflow before Checkpoint runs: everything it sets has no history.
A timeline with one bar and a rollback with nothing to go back to would show nothing, so this
module opens, reviews and applies real promote requests through Checkpoint's JSON API, as the
users named in the data would have, against the demo's MLflow, before ``checkpoint serve``
starts on the same database. Only the clock is moved: the app gets a clock set days back, so the
bars have a width; MLflow changes now, as the requests apply.

The history (fraud-detector ``@champion``): v1 from before Checkpoint; request 1 puts v2 there
(sam asks, maria approves); request 2 (on-call, during an incident) puts v1 back with
break-glass. So v2 held the target through a reviewed request with the files it has now: rolling
back to it is a *verified* rollback, the policy's ``rollback:`` fast path. Then, at the real time,
request 3 moves demand-forecast ``@champion`` during the demo's freeze: approved, it waits, and
the served Checkpoint applies it when the freeze ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from checkpoint.demo.data import FREEZE_MODEL, FREEZE_NAME, ON_CALL, DemoError

# How far back the history starts; each step below is placed relative to that.
HISTORY_START = timedelta(days=6)


class _StoryClock:
    """The clock the story's app reads: stands where the story puts it, moves only forward."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = max(self._now, moment)


@dataclass(frozen=True)
class Told:
    """What the story did: the request ids, for the banner and the tests."""

    upgrade: int  # fraud-detector @champion -> v2, approved and applied
    incident: int  # fraud-detector @champion -> v1, break-glass
    frozen: int  # demand-forecast @champion -> v3, approved during the freeze, waiting


def _call(client: Any, method: str, path: str, user: str, body: dict | None = None) -> dict:
    answer = client.open(f"/checkpoint/api/v1{path}", method=method, json=body, auth=(user, "demo"))
    if answer.status_code >= 300:
        raise DemoError(
            f"the demo's history step {method} {path} as {user} got {answer.status_code}: {answer.get_data(as_text=True)}"
        )
    return answer.get_json()


def _open(client: Any, user: str, model: str, version: str, title: str, description: str) -> dict:
    change = {"kind": "set_alias", "name": model, "alias": "champion", "version": version}
    return _call(client, "POST", "/requests", user, {"change": change, "title": title, "description": description})


def _approve(client: Any, user: str, request_id: int, comment: str) -> dict:
    return _call(client, "POST", f"/requests/{request_id}/reviews", user, {"verdict": "approve", "comment": comment})


def play(env: Mapping[str, str], now: datetime, say: Callable[[str], None]) -> Told:
    """Write the history into the Checkpoint configured by ``env`` (its ``CHECKPOINT_*``
    variables), with MLflow freshly seeded; ``now`` is inside the demo's freeze.

    Only after a fresh seed: a re-run finds the models and leaves them (and this history) as
    they are; a history cut short by a failure is started over with ``--reset``."""
    from checkpoint.app import create_app
    from checkpoint.services import services
    from checkpoint.settings import Settings
    from checkpoint.storage import db

    # No behavioural diffs asked for the history: its requests are decided before a diff could
    # matter, and each would cost the demo's first minutes a model run (a page view still asks).
    quiet = {"CHECKPOINT_BACKGROUND": "false", "CHECKPOINT_LOG_LEVEL": "ERROR", "CHECKPOINT_EVALUATOR": "off"}
    settings = Settings.from_env({**env, **quiet})
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    engine.dispose()
    start = now - HISTORY_START
    clock = _StoryClock(start)
    app = create_app(settings, clock=clock)
    try:
        client = app.test_client()
        say("fraud-detector: request 1 makes v2 the champion (sam.okafor asks, maria.chen approves)")
        upgrade = _open(
            client,
            "sam.okafor",
            "fraud-detector",
            "2",
            "Champion: gradient boosting on October data",
            "v2 beats the random forest on val_auc and keeps every input column.",
        )
        clock.set(start + timedelta(days=1))  # v1 was found in place a day before: the bar has a width
        applied = _approve(client, "maria.chen", upgrade["id"], "Metrics and signature look right. Ship it.")
        _expect(applied, "applied")

        say(f"fraud-detector: request 2 puts v1 back during an incident ({ON_CALL}, break-glass)")
        clock.set(start + timedelta(days=4, hours=2))
        incident = _open(
            client,
            ON_CALL,
            "fraud-detector",
            "1",
            "Incident: back to the random forest",
            "v2 blocks too many genuine refunds since the October data change. Putting v1 back until we know why.",
        )
        glass = {"reason": "Refunds blocked in production; paged at 02:10."}
        _expect(_call(client, "POST", f"/requests/{incident['id']}/break-glass", ON_CALL, glass), "applied")

        clock.set(now)
        say(f"{FREEZE_MODEL}: request 3 moves the champion to v3 during freeze '{FREEZE_NAME}'")
        frozen = _open(
            client,
            "lee.park",
            FREEZE_MODEL,
            "3",
            "Champion: random forest on Q3 sales",
            "Fresher data. Approved during the freeze, it applies when the freeze ends.",
        )
        waiting = _approve(client, "raj.iyer", frozen["id"], "Fine by me once the freeze is over.")
        _expect(waiting, "approved")
        if not waiting.get("waiting_for"):
            raise DemoError(f"request {frozen['id']} was approved during freeze '{FREEZE_NAME}' but is not waiting for it")
    finally:
        services(app).close()
    return Told(upgrade=upgrade["id"], incident=incident["id"], frozen=frozen["id"])


def _expect(request: dict, state: str) -> None:
    if request.get("state") != state:
        raise DemoError(f"the demo's history: request {request.get('id')} is {request.get('state')}, expected {state}")
