"""What held each governed target of a model, from when to when: periods built from the event
log alone, and "which version held it at a moment" answered over them.

A target is ``alias:NAME``, ``stage:STAGE`` (a governed stage) or ``model:NAME`` (a protected
model's latest version). Its lane is a list of periods ``[start, until)``, half-open, ``until``
None while it still holds. The sources, and what each one says:

* ``applied`` of a request: the request's change happened at that moment (who asked, who
  approved, break-glass or not). A transition also ends the version's period in the stage it
  left, and with ``archive_existing_versions`` every other holder of the stage; deleting a
  version ends its periods everywhere; deleting or renaming the model ends every lane (the name
  no longer names that model: a renamed model's lanes start again, unknown, under its new name).
* ``outside_change``: the target was found holding a version Checkpoint did not put there. With
  ``first_seen`` it is the first thing Checkpoint knew of the target: it held that version at
  that moment, since when is unknown. For a stage, older events name only the newest holder (so
  only known holders above it are ended); newer ones carry every holder (``holders``).

Before the first event of a target, and after a delete of a protected model's latest version
when no earlier version is known to be alive, the lane holds an ``unknown`` period with no
version: never a guess. Alias and model lanes have one holder at a time (a period with no
version: nothing held it); stage lanes may have several overlapping periods.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from checkpoint.review import changes
from checkpoint.storage.entities import EventKind, PromoteRequest
from checkpoint.storage.store import Store

REQUEST, ROLLBACK, BREAK_GLASS, OUTSIDE, UNKNOWN = "request", "rollback", "break_glass", "outside_change", "unknown"


@dataclass(frozen=True)
class Asked:
    """What the timeline needs of a request: its change, who asked, who approved, why."""

    id: int
    kind: str
    target: str
    version: str | None
    change: dict
    author: str
    approvers: tuple[str, ...] = ()
    title: str = ""
    workspace: str = ""

    @classmethod
    def of(cls, item: PromoteRequest) -> Asked:
        return cls(
            id=item.id,
            kind=item.kind,
            target=item.target,
            version=item.version,
            change=item.change,
            author=item.author,
            approvers=tuple(sorted({r.reviewer for r in item.approvals})),
            title=item.title,
            workspace=item.workspace or "",
        )


@dataclass(frozen=True)
class Period:
    target: str
    version: str | None  # None: nothing held it (how != unknown) or Checkpoint does not know (how == unknown)
    start: datetime | None  # None: since before anything Checkpoint recorded
    until: datetime | None = None  # None: still holds
    how: str = UNKNOWN
    request_id: int | None = None
    actor: str | None = None  # who asked (None for outside changes and unknown periods)
    approvers: tuple[str, ...] = ()
    note: str = ""  # why: the request's title, the break-glass reason, what was seen in MLflow
    first_seen: bool = False

    def covers(self, moment: datetime) -> bool:
        """Half-open: a period holds from its start (included) until its end (excluded)."""
        return (self.start is None or self.start <= moment) and (self.until is None or moment < self.until)


@dataclass(frozen=True)
class Lane:
    target: str
    periods: tuple[Period, ...]

    @property
    def known_since(self) -> datetime | None:
        """When Checkpoint first knew what held the target."""
        return next((p.start for p in self.periods if p.how != UNKNOWN), None)


@dataclass(frozen=True)
class Answer:
    """What held ``target`` at ``at``: ``known`` False (with the ``reason``) when the log cannot say."""

    target: str
    at: datetime
    known: bool
    versions: tuple[str, ...] = ()  # newest first (a stage may have several)
    periods: tuple[Period, ...] = ()
    reason: str | None = None

    @property
    def version(self) -> str | None:
        return self.versions[0] if self.versions else None


def earlier_holders(lane: Lane) -> list[Period]:
    """The versions that held ``lane`` before what holds it now, the most recent period of each,
    newest first: what a rollback offers to put back (the first is "the previous holder")."""
    now = {p.version for p in lane.periods if p.until is None}
    seen: set[str] = set()
    out = []
    for period in sorted(lane.periods, key=_period_order, reverse=True):
        version = period.version
        if version is None or period.how == UNKNOWN or period.until is None or version in now or version in seen:
            continue
        seen.add(version)
        out.append(period)
    return out


def _newest_first(versions: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(versions), key=lambda v: (len(v), v), reverse=True))


@dataclass
class _Builder:
    """The lanes as the events are replayed, oldest first."""

    stages: tuple[str, ...]
    latest: bool  # the model is protected: every new version goes through Checkpoint
    done: dict[str, list[Period]] = field(default_factory=dict)  # ended periods, by target
    open: dict[str, list[Period]] = field(default_factory=dict)  # holding now, by target
    alive: set[str] = field(default_factory=set)  # versions of the model created while Checkpoint watched

    def lane(self, target: str) -> bool:
        kind, _, name = target.partition(":")
        return kind == "alias" or (kind == "stage" and name in self.stages) or (kind == "model" and self.latest)

    def end(self, target: str, moment: datetime, keep=lambda p: False) -> None:
        """End the holding periods of ``target`` that ``keep`` does not keep."""
        staying = []
        for period in self.open.get(target, []):
            if keep(period):
                staying.append(period)
            else:
                self.done.setdefault(target, []).append(replace(period, until=moment))
        self.open[target] = staying

    def start(self, period: Period, alone: bool = True) -> None:
        """``period`` begins; with ``alone`` it replaces whatever held the target."""
        assert period.start is not None
        if alone:
            self.end(period.target, period.start)
        elif any(p.version == period.version and p.version is not None for p in self.open.get(period.target, [])):
            return  # already holding: the period continues
        self.open.setdefault(period.target, []).append(period)

    def holds(self, target: str, version: str | None) -> bool:
        current = self.open.get(target, [])
        return len(current) == 1 and current[0].version == version and current[0].how != UNKNOWN

    def end_version(self, version: str, moment: datetime, base: Period) -> None:
        """``version`` was deleted: it leaves every stage; aliases on it are gone; the model's latest falls back."""
        self.alive.discard(version)
        for target in list(self.open):
            holding = [p for p in self.open[target] if p.version == version]
            if not holding:
                continue
            if target.startswith("stage:"):
                self.end(target, moment, keep=lambda p: p.version != version)
            elif target.startswith("alias:"):
                self.start(replace(base, target=target, version=None))
            else:
                fallback = max(self.alive, key=lambda v: (len(v), v), default=None)
                if fallback is None:
                    gone = f"v{version} was deleted; no earlier version is known to exist"
                    self.start(Period(target, None, moment, None, UNKNOWN, note=gone))
                else:
                    self.start(replace(base, target=target, version=fallback))

    def end_model(self, base: Period) -> None:
        """The name stops naming a model (deleted or renamed): every lane ends."""
        assert base.start is not None
        for target in list(self.open):
            if target.startswith("stage:"):
                self.end(target, base.start)
            else:
                self.start(replace(base, target=target, version=None))
        self.alive.clear()

    def lanes(self) -> list[Lane]:
        out = []
        for target in sorted(set(self.done) | set(self.open), key=_lane_order):
            periods = sorted(self.done.get(target, []) + self.open.get(target, []), key=_period_order)
            if not periods:
                continue
            first = periods[0]
            if first.start is not None:
                periods.insert(0, Period(target, None, None, first.start, UNKNOWN))
            out.append(Lane(target, tuple(periods)))
        return out


def _lane_order(target: str) -> tuple[int, str]:
    return ({"alias": 0, "stage": 1, "model": 2}.get(target.partition(":")[0], 3), target)


def _period_order(period: Period) -> tuple[datetime, str]:
    return (period.start or datetime.min.replace(tzinfo=UTC), period.version or "")


def created_version(asked: Asked, result: str) -> str | None:
    """The version a ``create_version`` request created, from its apply result (``'NAME' version N
    created from ...``): read after the exact model name, so no name or source can fake it."""
    prefix = f"'{asked.change.get('name', '')}' version "
    if not result.startswith(prefix):
        return None
    found = re.match(r"([0-9]+) created from ", result[len(prefix) :])
    return found.group(1) if found else None


def how_of(data: dict) -> str:
    """How an applied request put its version there. ``rollback`` on the ``applied`` event is a
    rollback request's record (``review/rollback.py``): it put back an earlier holder."""
    if data.get("break_glass"):
        return BREAK_GLASS
    if data.get("rollback"):
        return ROLLBACK
    return REQUEST


def build(
    events: Iterable,
    requests: Mapping[int, Asked],
    workspace: str = "",
    stages: tuple[str, ...] = ("Staging", "Production"),
    latest: bool = True,
) -> list[Lane]:
    """Every lane of one model (in MLflow ``workspace``) from its events (``Event`` entities, any
    kind, any order: replayed by id) and the requests their ``applied`` events belong to.
    ``stages``: the governed stages (only those are lanes); ``latest``: whether the model is
    protected, so its latest version is a lane (a version created outside review, as an
    unprotected model's may be, would go unseen: its latest version is no lane)."""
    builder = _Builder(tuple(stages), latest)
    reasons: dict[int, str] = {}  # who broke the glass for a request, and why (its break_glass event)
    for event in sorted(events, key=lambda e: e.id):
        data = event.data or {}
        if event.kind == EventKind.BREAK_GLASS and event.request_id is not None:
            reasons[event.request_id] = f"break-glass by {event.actor}: {data.get('reason', '')}"
        elif event.kind == EventKind.APPLIED and event.request_id in requests:
            asked = requests[event.request_id]
            if asked.workspace == workspace:
                _applied(builder, asked, event.created_at, data, reasons.get(asked.id, ""))
        elif event.kind in BATCH_STEPS and event.request_id in requests and not data.get("already_true"):
            step = _step(requests[event.request_id], data)  # one change of a batch, or its compensation
            if step is not None and step.workspace == workspace:
                _applied(builder, step, event.created_at, {}, "")
        elif event.kind == EventKind.OUTSIDE_CHANGE and data.get("workspace", "") == workspace and not data.get("files"):
            _outside(builder, event.created_at, data)
    return builder.lanes()


# A batch request's steps (review/batching.py): each a change made in MLflow, logged under its model.
BATCH_STEPS = (EventKind.CHANGE_APPLIED, EventKind.CHANGE_REVERTED)


def _step(batch: Asked, data: dict) -> Asked | None:
    """One step of a batch as a request of its own kind (its change, target and version)."""
    try:
        change = changes.from_json(data.get("change") or {})
    except (changes.ChangeError, TypeError):
        return None
    return replace(
        batch,
        kind=change.kind,
        target=change.target(),
        version=change.version,
        change=change.to_json(),
        workspace=change.workspace,
    )


def _applied(builder: _Builder, asked: Asked, moment: datetime, data: dict, reason: str) -> None:
    how = how_of(data)
    glass = reason if how == BREAK_GLASS else ""
    note = " — ".join(part for part in (asked.title, glass) if part)
    base = Period(asked.target, asked.version, moment, None, how, asked.id, asked.author, asked.approvers, note)
    kind, target = asked.kind, asked.target
    if kind == "set_alias":
        if not builder.holds(target, asked.version):
            builder.start(base)
    elif kind == "delete_alias":
        if not builder.holds(target, None):
            builder.start(replace(base, version=None))
    elif kind == "transition" and asked.version is not None:
        version = asked.version
        for other in [t for t in builder.open if t.startswith("stage:") and t != target]:
            builder.end(other, moment, keep=lambda p: p.version != version)  # a version is in one stage
        if builder.lane(target):
            if asked.change.get("archive_existing_versions"):
                builder.end(target, moment, keep=lambda p: p.version == version)
            builder.start(base, alone=False)
    elif kind == "create_version" and builder.latest:
        made = created_version(asked, str(data.get("result", "")))
        if made is not None:  # None: already true (nothing created) or a result this code cannot read
            builder.alive.add(made)
            builder.start(replace(base, version=made))
    elif kind == "delete_version" and asked.version is not None:
        builder.end_version(asked.version, moment, base)
    elif kind in ("delete_model", "rename"):
        builder.end_model(base)


def _outside(builder: _Builder, moment: datetime, data: dict) -> None:
    target, version = str(data.get("target", "")), data.get("version")
    if not builder.lane(target):
        return
    first = bool(data.get("first_seen"))
    seen = f"found at v{version} in MLflow" if version else "found with no version in MLflow"
    base = Period(target, version, moment, None, OUTSIDE, note=seen + (" (first seen)" if first else ""), first_seen=first)
    if not target.startswith("stage:"):
        builder.start(base)
        return
    holders = data.get("holders")
    if isinstance(holders, list):  # every holder of the stage, as seen
        builder.end(target, moment, keep=lambda p: p.version in holders)
        for held in holders:
            builder.start(replace(base, version=str(held)), alone=False)
    elif version is None:
        builder.end(target, moment)
    else:  # only the newest holder is named: known holders above it left; those below may remain
        newest = (len(version), version)
        builder.end(target, moment, keep=lambda p: p.version is not None and (len(p.version), p.version) <= newest)
        builder.start(base, alone=False)


# A "+01:00" offset typed into a URL arrives as " 01:00" (a + in a query string is a space).
_SPACED_OFFSET = re.compile(r"(.*[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?) ([0-9]{2}:?[0-9]{2})")


def parse_moment(raw: str) -> datetime:
    """An ISO 8601 date or time (``2026-11-01T12:00Z``, ``2026-11-01 12:00:00+01:00``,
    ``2026-11-01``) as an aware datetime in UTC. **Without a zone it is UTC**; a date alone is
    its midnight. A ValueError for anything else."""
    text = raw.strip()
    spaced = _SPACED_OFFSET.fullmatch(text)
    if spaced:
        text = f"{spaced.group(1)}+{spaced.group(2)}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{raw[:64]!r} is not an ISO 8601 date or time") from exc
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(UTC)


def which_at(lanes: Iterable[Lane], target: str, at: datetime) -> Answer:
    """What held ``target`` at ``at`` (aware), over the periods [start, until)."""
    lane = next((lane for lane in lanes if lane.target == target), None)
    if lane is None:
        return Answer(target, at, False, reason=f"Checkpoint has no record of {target}")
    covering = tuple(p for p in lane.periods if p.covers(at))
    unknown = next((p for p in covering if p.how == UNKNOWN), None)
    if unknown is not None:
        if unknown.start is None:
            since = lane.known_since
            when = f": its first record of it is at {since.isoformat()}" if since else ""
            return Answer(
                target, at, False, periods=covering, reason=f"Checkpoint has no record of {target} before that time{when}"
            )
        return Answer(
            target, at, False, periods=covering, reason=f"Checkpoint does not know what held {target} then: {unknown.note}"
        )
    return Answer(target, at, True, _newest_first(p.version for p in covering if p.version), covering)


def for_model(
    store: Store, name: str, workspace: str = "", stages: tuple[str, ...] = ("Staging", "Production"), latest: bool = True
) -> list[Lane]:
    """The lanes of the model ``name`` in MLflow ``workspace`` ("" = the default one), read from
    the event log and the requests its ``applied`` events name (``stages``, ``latest``: as :func:`build`)."""
    events = store.events(model=name)
    asked: dict[int, Asked] = {}
    for event in events:
        if event.kind in (EventKind.APPLIED, *BATCH_STEPS) and event.request_id is not None and event.request_id not in asked:
            asked[event.request_id] = Asked.of(store.get(event.request_id))
    return build(events, asked, workspace, stages, latest)
