"""The one wall clock a Checkpoint process reads.

Every time Checkpoint records (an event's ``created_at``, a review's, an apply's) or compares
with a recorded time (the apply lease, a check's claim, a webhook's retry, an approval's age)
comes from the ``Clock`` that ``Services.build`` is given and passes to the store, the
workflow, the reconciler and the webhook sender. Production uses :data:`SYSTEM`; a test
passes a clock it moves (``tests/support/clock.py``), to one app or to two apps sharing a
database, and never sleeps.

Elapsed-time budgets that record nothing (the background thread's intervals, a webhook
round's time limit, cache lifetimes) stay on ``time.monotonic``: they measure this process's
own waiting, not the time of the world.

Framework-free and dependency-free, so every layer may import it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What reads the time: ``now()`` is an aware datetime in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's clock (keep replicas' clocks in sync, NTP, as leases compare them)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM: Clock = SystemClock()
