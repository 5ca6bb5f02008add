"""The ``soak`` check a rule's ``soak:`` key implies: the challenger must first have held another
target for a minimum time (``soak: {held: "alias:challenger", for: 24h}``).

What held what, since when, is read from the timeline (``events/timeline.py``: periods from the
event log), never from MLflow's own time stamps. The soak counts from the start of the
challenger's **current uninterrupted holding** of the target: back-to-back periods of the same
version join; a gap, another holder or an ``unknown`` period ends the walk back. A period before
Checkpoint knew the target is unknown, never held: a holder Checkpoint first *noticed* at some
moment is held since that moment, however long it may have held before.

If the challenger stops holding the target before the time is up, the check **fails** (it no longer
holds it) and, should it hold it again, the soak **starts again** from that new holding.

``held`` names a target of the challenger's own model (``alias:NAME``, ``stage:STAGE``) or, for
MLflow's environment models (dev → staging → prod copies), ``model:PATTERN``: the challenger must
have been the latest version of a model matching the pattern. Across a copy, "the same model" is
the copy's **pinned source** (``models:/staging.fraud/5``, pinned when the request opens): that
version of that model is the one that soaked. The files are the content digest's business (it is
bound to every review and compared before the apply), not the soak's.

The stored reason is stable (it names the end as an ISO time), so re-evaluating it changes
nothing until the state does; the time remaining is worked out when it is shown (:func:`shown`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from checkpoint.events.timeline import UNKNOWN, Lane, Period
from checkpoint.review.checks.kinds import Check
from checkpoint.review.checks.results import FAIL, PASS, PENDING, Result, Unevaluable
from checkpoint.review.checks.subject import Subject
from checkpoint.review.durations import DurationError, format_duration, parse_duration
from checkpoint.review.governance import STAGES

NAME = "soak"  # the check's name on every request of a rule with ``soak:``
KINDS = ("alias", "stage", "model")

# What the check needs of the event log: the lane of ``target`` of model ``name`` (None: no record).
LaneOf = Callable[[str, str], Lane | None]


@dataclass(frozen=True)
class SoakCheck(Check):
    """Required: the challenger held ``held`` for at least ``duration`` (by the workflow's clock)."""

    held: str = ""
    duration: timedelta = timedelta(0)
    kind: ClassVar[str] = "soak"

    def describe(self) -> str:
        return f"held {self.held} for at least {format_duration(self.duration)}"

    def _evaluate(self, subject: Subject) -> Result:
        if subject.lane_of is None or subject.at is None:
            raise Unevaluable("the soak needs the event log, which this evaluation has no access to")
        found = soaking(subject)
        if found is None:
            return Result(FAIL, f"this request ({subject.request.kind}) names no version that could have held {self.held}")
        model, version = found
        target = self.target_for(model)
        if target is None:
            pattern = self.held.partition(":")[2]
            return Result(FAIL, f"the challenger is {model} v{version}, not a version of a model matching {pattern}")
        return judge(self, subject.lane_of(model, target), model, version, subject.at).result

    def target_for(self, model: str) -> str | None:
        """The lane of ``model`` the challenger must have held (None: ``model`` does not match a
        ``model:`` pattern)."""
        kind, _, value = self.held.partition(":")
        if kind != "model":
            return self.held
        return f"model:{model}" if fnmatch.fnmatchcase(model, value) else None


def soaking(subject: Subject) -> tuple[str, str] | None:
    """The (model, version) that must have soaked: a copy's pinned source, else the request's version."""
    request = subject.request
    if request.kind == "create_version":
        ref = subject.change.source_ref()  # type: ignore[attr-defined]
        if ref is None or ref.name is None or ref.version is None:
            return None
        return ref.name, str(ref.version)
    return (request.model_name, str(request.version)) if request.version else None


def holding_since(lane: Lane | None, version: str, at: datetime) -> datetime | None:
    """When ``version``'s current uninterrupted holding of ``lane`` began, as the log knows it
    (None: it does not hold the lane at ``at``). Unknown periods never count as held."""
    if lane is None:
        return None
    mine = [(p.start, p) for p in lane.periods if p.version == version and p.how != UNKNOWN and p.start is not None]
    since = next((start for start, p in mine if p.covers(at)), None)
    if since is None:
        return None
    for _ in range(len(mine)):  # bounded: each step moves to an earlier period
        before = next((start for start, p in mine if p.until == since and start < since), None)
        if before is None:
            break
        since = before
    return since


def last_held(lane: Lane | None, version: str, at: datetime) -> Period | None:
    """The latest period (ended before ``at``) in which ``version`` held the lane."""
    if lane is None:
        return None
    ended = [p for p in lane.periods if p.version == version and p.how != UNKNOWN and p.until is not None and p.until <= at]
    return max(ended, key=lambda p: p.until or at, default=None)


@dataclass(frozen=True)
class Soak:
    """The soak of one challenger at one moment: the check's result and when it passes."""

    result: Result
    since: datetime | None = None
    until: datetime | None = None  # when it passes (None: it does not hold the target)


def judge(check: SoakCheck, lane: Lane | None, model: str, version: str, at: datetime) -> Soak:
    """Whether ``version`` of ``model`` has held ``lane`` long enough at ``at``."""
    target = lane.target if lane is not None else check.target_for(model) or check.held
    who = f"{model} v{version}"
    if lane is None:
        return Soak(Result(FAIL, f"never held {target}: Checkpoint has no record of {target} of {model}"))
    since = holding_since(lane, version, at)
    if since is None:
        earlier = last_held(lane, version, at)
        if earlier is None:
            return Soak(Result(FAIL, f"never held {target}: {who} has not held it since Checkpoint knew it"))
        assert earlier.start is not None and earlier.until is not None
        return Soak(
            Result(
                FAIL,
                f"no longer holds {target} (held it {stamp(earlier.start)} – {stamp(earlier.until)}); "
                "the soak starts again if it holds it again",
            )
        )
    until = since + check.duration
    span = format_duration(check.duration)
    if at >= until:
        return Soak(Result(PASS, f"held {target} since {stamp(since)}: at least {span}"), since, until)
    return Soak(Result(PENDING, f"held {target} since {stamp(since)}; the {span} soak ends {stamp(until)}"), since, until)


def stamp(moment: datetime) -> str:
    """A moment as the reasons spell it (ISO, UTC, to the second): :func:`ends` reads it back."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


_ENDS = re.compile(r"soak ends (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


def ends(reason: str) -> datetime | None:
    """When a pending soak (its reason, stored or shown) passes; None for any other reason."""
    found = _ENDS.search(reason)
    return datetime.fromisoformat(found.group(1).replace("Z", "+00:00")) if found else None


def remaining(left: timedelta) -> str:
    """ "5 h 12 m", "2 d 3 h", "under a minute"."""
    minutes = int(left.total_seconds() // 60)
    if minutes <= 0:
        return "under a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{mins} m"] * bool(mins and not days)
    return " ".join(parts) or "under a minute"


def shown(reason: str, at: datetime) -> str:
    """A stored pending soak reason as a person reads it at ``at``: the time remaining first."""
    end = ends(reason)
    if end is None:
        return reason
    if at >= end:
        return f"time reached; passes at the background work's next round ({reason})"
    return f"{remaining(end - at)} remaining ({reason})"


def parse_soak(raw: object, where: str, targets: tuple[str, ...] = ()) -> SoakCheck:
    """A rule's ``soak:`` (``{held: "alias:challenger", for: 24h}``) as its check; ValueError
    naming ``where``'s key otherwise. ``targets``: the rule's own (a soak on one of them could
    never pass: the challenger would have to hold what the request is asking it to take)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}.soak: expected a mapping such as {{held: 'alias:challenger', for: 24h}}, got {raw!r}")
    unknown = set(map(str, raw)) - {"held", "for"}
    if unknown:
        raise ValueError(f"{where}.soak: unknown key(s) {', '.join(sorted(unknown))}; known: for, held")
    asked = raw.get("held")
    held = asked if isinstance(asked, str) else ""
    kind, sep, value = held.partition(":")
    if kind not in KINDS or not sep or not value.strip() or value != value.strip():
        raise ValueError(
            f"{where}.soak.held: expected alias:NAME, stage:STAGE or model:PATTERN "
            f"(e.g. alias:challenger, model:staging.*), got {asked!r}"
        )
    if kind != "model" and any(ch in value for ch in "*?["):
        raise ValueError(f"{where}.soak.held: {held!r}: only a model:PATTERN may hold a pattern")
    if kind == "stage":
        stage = next((s for s in STAGES if s.lower() == value.lower()), None)
        if stage is None:
            raise ValueError(f"{where}.soak.held: {held!r} names no stage; stages are {', '.join(STAGES)}")
        held = f"stage:{stage}"
    if held.lower() in {t.lower() for t in targets}:
        raise ValueError(f"{where}.soak.held: {held!r} is a target of this rule itself: a challenger could never soak there")
    if "for" not in raw:
        raise ValueError(f"{where}.soak.for: missing; how long it must have held {held} (e.g. 24h)")
    try:
        duration = parse_duration(raw["for"])
    except DurationError as exc:
        raise ValueError(f"{where}.soak.for: {exc}") from exc
    return SoakCheck(NAME, True, held, duration)
