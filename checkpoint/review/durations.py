"""Durations in the policy file: ``90m``, ``24h``, ``7d``, ``2w``, or several parts largest
first (``1d12h``). One parser for every key that takes one (``approvals_expire_after``, and
the time-based keys that follow it), so they all read and refuse the same spellings.

A bare number is refused: ``7`` could be minutes, hours or days, and a wrong guess here
decides how long an approval authorises a production change.
"""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
# Ten years: longer is a typo (and far beyond it, timedelta overflows).
LONGEST = timedelta(days=3650)
_PART = re.compile(r"(\d{1,7})([A-Za-z]+)")
EXAMPLES = "90m, 24h, 7d, 2w or 1d12h"


class DurationError(ValueError):
    """A value that is not a duration; the message says what is wrong, for the caller to place."""


def parse_duration(value: object) -> timedelta:
    """``value`` (a string from the policy file) as a positive timedelta, or DurationError."""
    if isinstance(value, bool) or not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise DurationError(f"{value!r} has no unit; write it with one ({EXAMPLES})")
        raise DurationError(f"expected a duration such as {EXAMPLES}, got {value!r}")
    text = value.strip()
    if not text:
        raise DurationError(f"expected a duration such as {EXAMPLES}, got an empty string")
    total, position, last_unit = timedelta(0), 0, None
    order = list(UNITS)
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        amount, unit = int(match.group(1)), match.group(2)
        if unit not in UNITS:
            raise DurationError(f"{value!r}: unknown unit {unit!r}; units are w (weeks), d, h, m (minutes)")
        if last_unit is not None and order.index(unit) <= order.index(last_unit):
            raise DurationError(f"{value!r}: write each unit once, largest first (e.g. 1d12h)")
        total += amount * UNITS[unit]
        position, last_unit = match.end(), unit
    if position != len(text) or last_unit is None:
        raise DurationError(f"expected a duration such as {EXAMPLES}, got {value!r}")
    if total <= timedelta(0):
        raise DurationError(f"{value!r}: a duration must be longer than zero")
    if total > LONGEST:
        raise DurationError(f"{value!r}: at most {LONGEST.days} days")
    return total


def format_duration(duration: timedelta) -> str:
    """The shortest spelling :func:`parse_duration` reads back as ``duration`` (whole minutes)."""
    minutes = int(duration.total_seconds() // 60)
    if minutes <= 0:
        return "0m"
    out = []
    for unit, size in UNITS.items():
        count, minutes = divmod(minutes, int(size.total_seconds() // 60))
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
