"""The clock: the system's is aware UTC; the tests' movable one moves forward only, from any thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from checkpoint.clock import SYSTEM, Clock
from tests.support.clock import MovableClock

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_the_system_clock_is_aware_utc_and_a_clock():
    before = datetime.now(UTC)
    now = SYSTEM.now()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)
    assert isinstance(SYSTEM, Clock) and isinstance(MovableClock(START), Clock)


def test_a_movable_clock_stands_still_until_moved():
    clock = MovableClock(START)
    assert clock.now() == clock.now() == START
    assert clock.advance(timedelta(days=7)) == START + timedelta(days=7) == clock.now()
    assert clock.set(START + timedelta(days=8)) == clock.now()
    plus_one = timezone(timedelta(hours=1))
    assert clock.set(datetime(2026, 12, 9, 12, 0, tzinfo=plus_one)).tzinfo is UTC
    assert clock.now() == datetime(2026, 12, 9, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("move", "message"),
    [
        (lambda c: c.advance(timedelta(seconds=-1)), "moves forward only"),
        (lambda c: c.set(START - timedelta(seconds=1)), "moves forward only"),
        (lambda c: c.set(datetime(2027, 1, 1)), "no time zone"),
    ],
)
def test_a_movable_clock_refuses_to_go_back_or_guess_a_zone(move, message):
    clock = MovableClock(START)
    with pytest.raises(ValueError, match=message):
        move(clock)
    assert clock.now() == START


def test_moves_from_many_threads_all_land():
    clock = MovableClock(START)
    threads = [threading.Thread(target=lambda: [clock.advance(timedelta(seconds=1)) for _ in range(200)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert clock.now() == START + timedelta(seconds=1600)
