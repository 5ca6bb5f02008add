"""Freeze windows: times when an approved change to a production target waits instead of applying.

    freezes:
      - name: weekend
        models: ["*"]                       # model-name patterns, as a rule's
        targets: ["alias:champion", "stage:Production", "model:prod.*"]
        every: "Fri 16:00 - Mon 08:00"      # weekly, in wall-clock time of the zone below
        timezone: Europe/Berlin             # an IANA zone (default UTC)
        reason: "No production changes over the weekend"
      - name: migration
        targets: ["*"]
        from: "2026-12-24T00:00"            # one-off: ISO timestamps (without an offset: in
        until: "2026-12-27T00:00"           # the entry's timezone)

A weekly window is wall-clock time: "Fri 16:00" in Europe/Berlin is 16:00 in Berlin whether
daylight saving time is on or off, so in UTC it starts at 15:00 in winter and 14:00 in
summer, and a window that spans a DST change is an hour shorter or longer. The weekly
recurrence is ``dateutil.rrule``'s; offsets come from ``zoneinfo``; every instant is
compared in UTC (two aware datetimes in one zone compare by wall time in Python, which is
wrong in the repeated autumn hour). Windows are half-open: a freeze ending at Mon 08:00 no
longer holds at 08:00.

Parsed once at start; every malformed entry stops start-up naming its key
(``freezes[0].every``). What a frozen request does is ``schedule.py``'s business.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule

from checkpoint.errors import ConfigError

# The spellings of a weekday in ``every`` (three letters or the whole name, any case).
DAYS = {name: index for index, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}
_FULL = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6}
_EVERY = re.compile(r"^\s*([A-Za-z]+)\s+(\d{1,2}:\d{2})\s*-\s*([A-Za-z]+)\s+(\d{1,2}:\d{2})\s*$")
_KEYS = {"name", "models", "targets", "every", "from", "until", "timezone", "reason"}
# Windows chained back to back (one freeze ending as another starts) are followed this far.
MAX_CHAIN = 50


@dataclass(frozen=True)
class Weekly:
    """A window that opens every week at (weekday, time) and closes at the next (weekday, time)."""

    start_day: int
    start: time
    end_day: int
    end: time

    def describe(self) -> str:
        names = [d.capitalize() for d in DAYS]
        return f"{names[self.start_day]} {self.start:%H:%M} - {names[self.end_day]} {self.end:%H:%M}"


@dataclass(frozen=True)
class Freeze:
    name: str
    models: tuple[str, ...] = ("*",)
    targets: tuple[str, ...] = ("*",)
    zone: str = "UTC"
    reason: str = ""
    weekly: Weekly | None = None
    # A one-off window (aware datetimes), when ``weekly`` is None.
    starts: datetime | None = None
    ends: datetime | None = None

    def covers(self, model: str, target: str) -> bool:
        """Whether the freeze is about ``target`` of ``model`` (patterns as a rule's)."""
        from checkpoint.review.policy import target_matches  # policy_parsing imports policy, which imports this module

        return any(fnmatch.fnmatchcase(model, p) for p in self.models) and any(target_matches(target, p) for p in self.targets)

    def window_at(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The window (start, end, in UTC) that holds instant ``at``, or None."""
        at = at.astimezone(UTC)
        if self.weekly is None:
            assert self.starts is not None and self.ends is not None  # parse() gives one or the other
            return (self.starts, self.ends) if self.starts <= at < self.ends else None
        for start, end in self._weekly_windows(at):
            if start <= at < end:
                return start, end
        return None

    def _weekly_windows(self, at: datetime) -> list[tuple[datetime, datetime]]:
        """The windows that opened in the eight days before ``at`` (a window lasts under a week)."""
        assert self.weekly is not None
        zone = ZoneInfo(self.zone)
        local = at.astimezone(zone).replace(tzinfo=None)
        begin = local - timedelta(days=8)
        opens = rrule.rrule(
            rrule.WEEKLY,
            dtstart=begin,
            byweekday=self.weekly.start_day,
            byhour=self.weekly.start.hour,
            byminute=self.weekly.start.minute,
            bysecond=0,
        )
        closes = rrule.rrule(
            rrule.WEEKLY,
            dtstart=begin,
            byweekday=self.weekly.end_day,
            byhour=self.weekly.end.hour,
            byminute=self.weekly.end.minute,
            bysecond=0,
        )
        windows = []
        for opened in opens.between(begin, local + timedelta(days=1), inc=True):
            closed = closes.after(opened)
            assert closed is not None  # an unbounded weekly rule always has a next one
            windows.append((_instant(opened, zone), _instant(closed, zone)))
        return windows

    def ends_local(self, end: datetime) -> str:
        """``end`` as people in the freeze's zone read it: "Mon 08:00 CET"."""
        local = end.astimezone(ZoneInfo(self.zone))
        return f"{local:%a %H:%M} {local.tzname()}"

    def describe(self) -> str:
        """ "weekend: Fri 16:00 - Mon 08:00 (Europe/Berlin) — reason", times in the freeze's zone."""
        if self.weekly is not None:
            when = self.weekly.describe()
        else:
            assert self.starts is not None and self.ends is not None
            zone = ZoneInfo(self.zone)
            when = f"{self.starts.astimezone(zone):%Y-%m-%d %H:%M} - {self.ends.astimezone(zone):%Y-%m-%d %H:%M}"
        return f"{self.name}: {when} ({self.zone})" + (f" — {self.reason}" if self.reason else "")


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``zone`` as a UTC instant (a time skipped by DST reads as the
    moment the clock passes it; a repeated one as its first occurrence)."""
    return wall.replace(tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Hold:
    """What holds an apply back: the freeze (or freezes, back to back) and when it ends."""

    freeze: Freeze
    until: datetime


def held(freezes: tuple[Freeze, ...], model: str, target: str, at: datetime) -> Hold | None:
    """The freeze holding ``target`` of ``model`` at ``at``, with the first instant no freeze
    holds it (a window opening as another closes is followed), or None when none does."""
    relevant = [f for f in freezes if f.covers(model, target)]
    current, last = at.astimezone(UTC), None
    for _ in range(MAX_CHAIN):
        found = next(((f, w) for f in relevant if (w := f.window_at(current)) is not None), None)
        if found is None:
            break
        last, current = found[0], found[1][1]
    return None if last is None else Hold(last, current)


# -- parsing ------------------------------------------------------------------------------


def parse(items: object) -> tuple[Freeze, ...]:
    """The policy file's ``freezes`` (None: no key): every bad entry is a ConfigError naming its key."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError(f"freezes: expected a list, got {type(items).__name__}")
    parsed = tuple(_freeze(i, item) for i, item in enumerate(items))
    names = [f.name for f in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"freezes: the name(s) {', '.join(twice)} appear more than once")
    return parsed


def _freeze(index: int, item: object) -> Freeze:
    where = f"freezes[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping with name, targets and every (or from/until)")
    unknown = set(map(str, item)) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KEYS))}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: expected a non-empty string, got {name!r}")
    where = f"{where} ({name.strip()})"
    reason = item.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError(f"{where}.reason: expected a string, got {reason!r}")
    zone = _zone(item.get("timezone", "UTC"), where)
    weekly, starts, ends = None, None, None
    if "every" in item:
        if "from" in item or "until" in item:
            raise ConfigError(f"{where}.every: give either every or from/until, not both")
        weekly = _weekly(item["every"], where)
    elif "from" in item or "until" in item:
        starts, ends = _moment(item.get("from"), zone, f"{where}.from"), _moment(item.get("until"), zone, f"{where}.until")
        if ends <= starts:
            raise ConfigError(f"{where}.until: {item['until']!r} is not after from ({item['from']!r})")
    else:
        raise ConfigError(f"{where}.every: a freeze needs every (weekly) or from/until (one-off)")
    return Freeze(
        name=name.strip(),
        models=_patterns(item, "models", where),
        targets=_patterns(item, "targets", where),
        zone=zone,
        reason=reason.strip(),
        weekly=weekly,
        starts=starts,
        ends=ends,
    )


def _patterns(item: dict, key: str, where: str) -> tuple[str, ...]:
    from checkpoint.review.policy_parsing import target_pattern  # policy_parsing imports policy, which imports this module

    value = item.get(key, ["*"])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of non-empty strings, got {value!r}")
    patterns = tuple(v.strip() for v in value)
    return tuple(target_pattern(p, where) for p in patterns) if key == "targets" else patterns


def _zone(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.timezone: expected an IANA zone name such as Europe/Berlin, got {value!r}")
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}.timezone: {value!r} is not a known zone (an IANA name such as Europe/Berlin)") from exc
    return value.strip()


def _day(text: str, key: str, every: str) -> int:
    day = DAYS.get(text.lower(), _FULL.get(text.lower()))
    if day is None:
        raise ConfigError(f"{key}: {text!r} in {every!r} is not a weekday (Mon, Tue, ... Sun)")
    return day


def _clock_time(text: str, key: str, every: str) -> time:
    try:
        return datetime.strptime(text, "%H:%M").time()
    except ValueError as exc:
        raise ConfigError(f"{key}: {text!r} in {every!r} is not a time of day (HH:MM, 00:00 to 23:59)") from exc


def _weekly(value: object, where: str) -> Weekly:
    key = f"{where}.every"
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a weekly window such as 'Fri 16:00 - Mon 08:00', got {value!r}")
    match = _EVERY.match(value)
    if match is None:
        raise ConfigError(f"{key}: expected a weekly window such as 'Fri 16:00 - Mon 08:00', got {value!r}")
    weekly = Weekly(
        _day(match.group(1), key, value),
        _clock_time(match.group(2), key, value),
        _day(match.group(3), key, value),
        _clock_time(match.group(4), key, value),
    )
    if (weekly.start_day, weekly.start) == (weekly.end_day, weekly.end):
        raise ConfigError(f"{key}: {value!r} starts and ends at the same time; a freeze must last less than a week")
    return weekly


def _moment(value: object, zone: str, key: str) -> datetime:
    """An ISO timestamp from the file (YAML may hand a datetime already); naive ones are in ``zone``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ConfigError(f"{key}: {value!r} is not an ISO timestamp such as 2026-12-24T00:00") from exc
    else:
        raise ConfigError(f"{key}: expected an ISO timestamp such as 2026-12-24T00:00, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)
