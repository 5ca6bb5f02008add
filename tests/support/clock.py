"""A clock tests move instead of sleeping: hand one to ``create_app(..., clock=)`` (the same
one to every app instance sharing a database) and move time for all of them at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["MovableClock"]


class MovableClock:
    """A ``checkpoint.clock.Clock`` that stands still until moved; safe to read and move from
    several threads (the app's request threads, its background thread, the test)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start) if start is not None else datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta) -> datetime:
        """Move forward by ``by`` (never backwards: time the store recorded must stay in order)."""
        if by < timedelta(0):
            raise ValueError(f"a clock moves forward only; {by} is negative")
        with self._lock:
            self._now += by
            return self._now

    def set(self, moment: datetime) -> datetime:
        """Jump to ``moment`` (not earlier than now)."""
        moment = _aware(moment)
        with self._lock:
            if moment < self._now:
                raise ValueError(f"a clock moves forward only; {moment.isoformat()} is before {self._now.isoformat()}")
            self._now = moment
            return self._now

    def __repr__(self) -> str:
        return f"MovableClock({self.now().isoformat()})"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; give an aware datetime (UTC)")
    return moment.astimezone(UTC)
