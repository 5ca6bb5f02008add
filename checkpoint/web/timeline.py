"""The timeline over HTTP: ``GET /checkpoint/api/v1/models/<name>/timeline``, the answer of
``/which?at=``, and the page ``/checkpoint/models/<name>/timeline`` (one lane per target, each
period a bar in server-rendered SVG, with the same periods as a table below).

Times in and out are ISO 8601; a time without a zone is UTC. Who may see a model's timeline is
who may read the model in MLflow (as for ``which`` and the history page): 403 for anyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Blueprint, jsonify, render_template, request

from checkpoint import urls
from checkpoint.errors import CheckpointError
from checkpoint.events import timeline
from checkpoint.web.api import workspace_arg
from checkpoint.web.context import current_services, current_user, public_base, reader, workflow

api = Blueprint("timeline_api", __name__, url_prefix="/checkpoint/api/v1")
pages = Blueprint("timeline", __name__, url_prefix="/checkpoint")


@pages.context_processor
def _user():
    return {"user": current_user().name, "auth_mode": current_services().auth.mode}


def parse_moment(raw: str, name: str = "at") -> datetime:
    """:func:`timeline.parse_moment` (no zone: UTC), or a 400 naming the parameter ``name``."""
    try:
        return timeline.parse_moment(raw)
    except ValueError as exc:
        raise CheckpointError(
            400, "INVALID_PARAMETER_VALUE", f"{name} must be an ISO 8601 time such as 2026-11-01T12:00Z, got {raw[:64]!r}"
        ) from exc


def refuse_unreadable(model: str, workspace: str) -> None:
    if not reader().can_read(model, workspace):
        raise CheckpointError(403, "PERMISSION_DENIED", "Permission denied: MLflow does not let you read this model")


def lanes_of(model: str, workspace: str) -> list[timeline.Lane]:
    flow = workflow()
    gov = flow.governance
    return timeline.for_model(flow.store, model, workspace, gov.governed_stages, gov.model_protected(model))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def period_json(period: timeline.Period) -> dict:
    return {
        "version": period.version,
        "from": _iso(period.start),
        "until": _iso(period.until),
        "request_id": period.request_id,
        "request_url": urls.request_page(public_base(), period.request_id) if period.request_id else None,
        "actor": period.actor,
        "approvers": list(period.approvers),
        "how": period.how,
        "note": period.note,
        "first_seen": period.first_seen,
    }


def which_at_json(model: str, workspace: str, target: str, raw_at: str) -> dict:
    """The ``which`` answer at a past moment, from the timeline (the caller may read ``model``)."""
    moment = parse_moment(raw_at)
    answer = timeline.which_at(lanes_of(model, workspace), target, moment)
    return {
        "at": moment.isoformat(),
        "known": answer.known,
        "reason": answer.reason,
        "versions": list(answer.versions),
        "version": answer.version,
        "periods": [period_json(p) for p in answer.periods],
    }


def _workspace() -> str:
    """The ``workspace`` parameter, canonical; "" (the default workspace) when absent or empty."""
    return workspace_arg(request.args.get("workspace") or None) or ""


@api.get("/models/<path:name>/timeline")
def timeline_json(name: str):
    """Every governed target of the model with its periods, oldest first."""
    workspace = _workspace()
    refuse_unreadable(name, workspace)
    lanes = lanes_of(name, workspace)
    return jsonify(
        model=name,
        workspace=workspace or "default",
        targets=[{"target": lane.target, "periods": [period_json(p) for p in lane.periods]} for lane in lanes],
    )


# -- the page ------------------------------------------------------------------------------

WIDTH, LABEL, ROW, GAP, TOP = 1000, 150, 26, 14, 34
FIRST_SEEN = "first_seen"  # a page's own label, not a ``how``: the API keeps how + first_seen
HOW_LABEL = {
    timeline.REQUEST: "request",
    timeline.ROLLBACK: "rollback",
    timeline.BREAK_GLASS: "break-glass",
    timeline.OUTSIDE: "outside change",
    timeline.UNKNOWN: "unknown",
    FIRST_SEEN: "found in place",
}


def shown_how(period: timeline.Period) -> str:
    """How a period reads on the page: an outside change that was Checkpoint's first record of the
    target is no change anyone made behind its back, only what held it when Checkpoint first looked
    (a seeded or pre-existing champion), so it is "found in place", not a warning."""
    return FIRST_SEEN if period.first_seen and period.how == timeline.OUTSIDE else period.how


@dataclass(frozen=True)
class Bar:
    period: timeline.Period
    x: float
    y: float
    width: float
    title: str  # the hover text (an SVG <title>, escaped like every text)


@dataclass(frozen=True)
class Chart:
    height: int
    lanes: list[tuple[str, float, float]]  # target, y, height
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    start: datetime
    end: datetime


def _hover(period: timeline.Period) -> str:
    version = f"v{period.version}" if period.version else ("unknown" if period.how == timeline.UNKNOWN else "no version")
    until = period.until.strftime("%Y-%m-%d %H:%M:%S UTC") if period.until else "now"
    since = period.start.strftime("%Y-%m-%d %H:%M:%S UTC") if period.start else "before Checkpoint's first record"
    if period.first_seen and period.start:
        since = f"held at {since} (Checkpoint's first record; since when is unknown)"
    lines = [f"{version}: {since} → {until}", HOW_LABEL[shown_how(period)]]
    if period.request_id:
        lines[-1] += f" #{period.request_id}"
    if period.actor:
        lines.append(f"asked by {period.actor}" + (f", approved by {', '.join(period.approvers)}" if period.approvers else ""))
    if period.note:
        lines.append(period.note)
    return "\n".join(lines)


def chart(lanes: list[timeline.Lane], now: datetime) -> Chart:
    """Where each period's bar goes: x along time (the first record to now, plus a margin on the
    left for the unknown time before it), stage holders that overlap on rows of their own."""
    starts = [p.start for lane in lanes for p in lane.periods if p.start is not None]
    ends = [p.until for lane in lanes for p in lane.periods if p.until is not None]
    first = min(starts, default=now)
    last = max([now, *ends])
    span = max((last - first).total_seconds(), 1.0)
    start = first - timedelta(seconds=span * 0.1)  # a tenth of the width: the unknown time before the first record
    scale = (WIDTH - LABEL - 10) / (last - start).total_seconds()
    shown = "%H:%M:%S.%f" if span < 60 else "%H:%M:%S" if span < 3600 else "%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"

    def x(moment: datetime | None) -> float:
        return LABEL + (0.0 if moment is None else (moment - start).total_seconds() * scale)

    bars, rows, y = [], [], float(TOP)
    for lane in lanes:
        tracks: list[datetime] = []  # when each row of this lane is free again
        placed = []
        for period in lane.periods:
            if period.version is None and period.how != timeline.UNKNOWN:
                continue  # nothing held it: a gap in the lane (the table says so)
            begin = period.start or start
            track = next((i for i, free in enumerate(tracks) if free <= begin), len(tracks))
            if track == len(tracks):
                tracks.append(begin)
            tracks[track] = period.until or last + timedelta(days=36500)
            placed.append((period, track))
        height = max(len(tracks), 1) * ROW
        for period, track in placed:
            left, right = x(period.start), x(period.until or last)
            bars.append(Bar(period, left, y + track * ROW + 3, max(right - left, 2.0), _hover(period)))
        rows.append((lane.target, y, float(height)))
        y += height + GAP
    marks = [first + (last - first) * i / 4 for i in range(5)]
    cut = 3 if shown.endswith("%f") else 0  # milliseconds, not microseconds
    ticks = [(x(mark), mark.strftime(shown)[: len(mark.strftime(shown)) - cut]) for mark in marks]
    return Chart(int(y) + 4, rows, bars, ticks, start, last)


@pages.get("/models/<path:name>/timeline")
def timeline_page(name: str):
    """One lane per governed target of the model, bars along time linking to their requests."""
    workspace = _workspace()
    refuse_unreadable(name, workspace)
    lanes = lanes_of(name, workspace)
    # What each alias and stage lane may be rolled back to (its earlier holders): a Roll back link per period.
    earlier = {
        lane.target: {p.version for p in timeline.earlier_holders(lane)}
        for lane in lanes
        if lane.target.startswith(("alias:", "stage:"))
    }
    return render_template(
        "ui/timeline.html",
        earlier=earlier,
        name=name,
        workspace=workspace,
        lanes=lanes,
        chart=chart(lanes, datetime.now(UTC)),
        how_label=HOW_LABEL,
        shown_how=shown_how,
        width=WIDTH,
        label_width=LABEL,
        row=ROW,
    )
