"""Where the timeline page draws its bars: along time from a margin of unknown to now, overlapping
stage holders on rows of their own, nothing drawn for "nothing held it", hover text that says who."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from checkpoint.events.timeline import OUTSIDE, REQUEST, UNKNOWN, Lane, Period
from checkpoint.web.timeline import LABEL, ROW, WIDTH, chart

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_bars_along_time_with_overlapping_holders_on_their_own_rows():
    alias = Lane(
        "alias:champion",
        (
            Period("alias:champion", None, None, at(0), UNKNOWN),
            Period("alias:champion", "1", at(0), at(5), OUTSIDE, first_seen=True),
            Period("alias:champion", None, at(5), at(6), REQUEST, 7, "alice"),  # removed: no bar
            Period("alias:champion", "2", at(6), None, REQUEST, 8, "alice", ("bob", "carol"), "May data"),
        ),
    )
    stage = Lane(
        "stage:Production",
        (
            Period("stage:Production", None, None, at(2), UNKNOWN),
            Period("stage:Production", "1", at(2), at(8), REQUEST, 3, "alice"),
            Period("stage:Production", "2", at(4), None, REQUEST, 4, "alice"),
            Period("stage:Production", "3", at(9), None, REQUEST, 5, "alice"),  # row 0 is free again
        ),
    )
    drawn = chart([alias, stage], now=at(10))
    assert [(target, height) for target, _, height in drawn.lanes] == [("alias:champion", ROW), ("stage:Production", 2 * ROW)]
    bars = {(b.period.target, b.period.version, b.period.how): b for b in drawn.bars}
    assert len(drawn.bars) == 7 and ("alias:champion", None, REQUEST) not in bars
    unknown = bars[("alias:champion", None, UNKNOWN)]
    first = bars[("alias:champion", "1", OUTSIDE)]
    assert unknown.x == LABEL and abs(unknown.x + unknown.width - first.x) < 0.01  # unknown until the first record
    last = bars[("alias:champion", "2", REQUEST)]
    assert abs(last.x + last.width - (WIDTH - 10)) < 0.01  # still holding: to now, the right edge
    one, two, three = (bars[("stage:Production", v, REQUEST)] for v in "123")
    lane_y = drawn.lanes[1][1]
    assert (one.y, two.y, three.y) == (lane_y + 3, lane_y + ROW + 3, lane_y + 3)
    assert one.x < two.x < one.x + one.width  # overlapping in time
    assert last.title.splitlines() == [
        "v2: 2026-11-01 18:00:00 UTC → now",
        "request #8",
        "asked by alice, approved by bob, carol",
        "May data",
    ]
    assert unknown.title.startswith("unknown: before Checkpoint's first record → 2026-11-01 12:00:00 UTC")
    assert [label for _, label in drawn.ticks] == ["11-01 12:00", "11-01 14:30", "11-01 17:00", "11-01 19:30", "11-01 22:00"]


def test_an_empty_timeline_still_draws():
    drawn = chart([], now=T0)
    assert drawn.bars == [] and drawn.lanes == [] and len(drawn.ticks) == 5
