"""The timeline from hand-built event logs: periods per target (aliases, stages with several
holders, a protected model's latest version), first_seen, unknown before the first record,
deletes and renames, and ``which_at`` on the half-open boundaries."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from checkpoint.events import timeline
from checkpoint.events.timeline import BREAK_GLASS, OUTSIDE, REQUEST, ROLLBACK, UNKNOWN, Period
from tests.support.timeline_log import T0, US, Log, at


def test_alias_periods_who_asked_and_approved():
    log = Log()
    log.outside(0, "alias:champion", "1", first_seen=True)
    first = log.applied(10, "set_alias", "alias:champion", "2", title="May retrain")
    second = log.applied(20, "set_alias", "alias:champion", "3", author="carol", approvers=("bob", "dan"))
    log.outside(30, "alias:champion", "1")
    removed = log.applied(40, "delete_alias", "alias:champion", None)
    assert log.lanes() == {
        "alias:champion": [
            (None, None, 0, UNKNOWN, None),
            ("1", 0, 10, OUTSIDE, None),
            ("2", 10, 20, REQUEST, first),
            ("3", 20, 30, REQUEST, second),
            ("1", 30, 40, OUTSIDE, None),
            (None, 40, None, REQUEST, removed),
        ]
    }
    periods = timeline.build(log.events, log.asked)[0].periods
    assert periods[1].first_seen and periods[1].actor is None and "first seen" in periods[1].note
    assert not periods[4].first_seen
    assert (periods[2].actor, periods[2].approvers, periods[2].note) == ("alice", ("bob",), "May retrain")
    assert (periods[3].actor, periods[3].approvers) == ("carol", ("bob", "dan"))


def test_an_applied_request_that_was_already_true_continues_the_period():
    log = Log()
    first = log.applied(0, "set_alias", "alias:champion", "2")
    log.applied(5, "set_alias", "alias:champion", "2", already_true=True)
    assert log.lanes()["alias:champion"] == [(None, None, 0, UNKNOWN, None), ("2", 0, None, REQUEST, first)]


@pytest.mark.parametrize(
    ("data", "how"),
    [
        ({}, REQUEST),
        ({"break_glass": False}, REQUEST),
        ({"break_glass": True, "reason": "outage"}, BREAK_GLASS),
        ({"rollback": True}, ROLLBACK),
    ],
)
def test_how_a_request_put_its_version_there(data, how):
    log = Log()
    log.applied(0, "set_alias", "alias:prod", "4", **data)
    period = timeline.build(log.events, log.asked)[0].periods[1]
    assert period.how == how
    if how == BREAK_GLASS:
        assert period.note == "break-glass by root: outage"


def test_stage_with_several_holders():
    log = Log()
    a = log.applied(0, "transition", "stage:Production", "1", change={"archive_existing_versions": False})
    b = log.applied(10, "transition", "stage:Production", "2", change={"archive_existing_versions": False})
    c = log.applied(20, "transition", "stage:Staging", "1")  # v1 leaves Production for Staging
    d = log.applied(30, "transition", "stage:Production", "3", change={"archive_existing_versions": True})
    e = log.applied(40, "transition", "stage:Archived", "3", change={"archive_existing_versions": False})
    assert log.lanes() == {
        "stage:Staging": [(None, None, 20, UNKNOWN, None), ("1", 20, None, REQUEST, c)],
        "stage:Production": [
            (None, None, 0, UNKNOWN, None),
            ("1", 0, 20, REQUEST, a),
            ("2", 10, 30, REQUEST, b),  # archived by d
            ("3", 30, 40, REQUEST, d),  # moved on to Archived by e, which is not a lane
        ],
    }
    lanes = timeline.build(log.events, log.asked)
    both = timeline.which_at(lanes, "stage:Production", at(15))
    assert both.known and both.versions == ("2", "1") and both.version == "2"
    empty = timeline.which_at(lanes, "stage:Production", at(45))
    assert empty.known and empty.versions == () and empty.version is None and e


def test_archived_is_a_lane_when_governed():
    log = Log()
    log.applied(0, "transition", "stage:Archived", "3")
    assert list(log.lanes(stages=("Production", "Archived"))) == ["stage:Archived"]


def test_outside_change_of_a_stage_with_and_without_every_holder():
    log = Log()
    log.outside(0, "stage:Production", "5", first_seen=True)
    log.applied(10, "transition", "stage:Production", "6")
    log.applied(12, "transition", "stage:Production", "7")
    log.outside(20, "stage:Production", "6")  # old event: names the newest only; v7 left, v5 may remain
    log.outside(30, "stage:Production", "8", holders=["6", "8"])  # newer: every holder; v5 left
    log.outside(40, "stage:Production", None)  # the stage is empty
    assert log.lanes()["stage:Production"] == [
        (None, None, 0, UNKNOWN, None),
        ("5", 0, 30, OUTSIDE, None),
        ("6", 10, 40, REQUEST, 1),
        ("7", 12, 20, REQUEST, 2),
        ("8", 30, 40, OUTSIDE, None),
    ]


def test_protected_model_latest_version_and_deletes():
    log = Log("prod.fraud")
    made3 = log.applied(0, "create_version", "model:prod.fraud", None, result="'prod.fraud' version 3 created from s3://x")
    made4 = log.applied(10, "create_version", "model:prod.fraud", None, result="'prod.fraud' version 4 created from s3://y")
    log.applied(15, "set_alias", "alias:champion", "4")
    deleted4 = log.applied(20, "delete_version", "delete", "4")
    log.applied(25, "create_version", "model:prod.fraud", None, result="already true in MLflow, nothing applied: x")
    log.applied(30, "delete_version", "delete", "3")
    assert log.lanes() == {
        "alias:champion": [(None, None, 15, UNKNOWN, None), ("4", 15, 20, REQUEST, 3), (None, 20, None, REQUEST, deleted4)],
        "model:prod.fraud": [
            (None, None, 0, UNKNOWN, None),
            ("3", 0, 10, REQUEST, made3),
            ("4", 10, 20, REQUEST, made4),
            ("3", 20, 30, REQUEST, deleted4),  # v3, created while Checkpoint watched, is the latest again
            (None, 30, None, UNKNOWN, None),  # earlier versions, if any, were never seen
        ],
    }
    lanes = timeline.build(log.events, log.asked)
    gone = timeline.which_at(lanes, "model:prod.fraud", at(31))
    assert not gone.known and "v3 was deleted" in (gone.reason or "")


def test_an_unprotected_model_has_no_latest_version_lane():
    """A version of it may be created without review (only a protected tag made this one
    governed): the lane could miss a newer version, so there is none."""
    log = Log("fraud")
    log.applied(0, "create_version", "model:fraud", None, result="'fraud' version 3 created from s3://x")
    log.applied(5, "set_alias", "alias:champion", "3")
    assert list(log.lanes(latest=False)) == ["alias:champion"]
    assert list(log.lanes()) == ["alias:champion", "model:fraud"]


@pytest.mark.parametrize(
    "result",
    ["'prod.fraud' version x created from s", "'prod.fraud2' version 3 created from s", "'prod' version 3 created from s"],
)
def test_a_create_result_that_does_not_name_the_version_is_not_guessed(result):
    log = Log("prod.fraud")
    log.applied(0, "create_version", "model:prod.fraud", None, result=result)
    assert log.lanes() == {}


@pytest.mark.parametrize("kind", ["delete_model", "rename"])
def test_deleting_or_renaming_the_model_ends_every_lane(kind):
    log = Log()
    log.applied(0, "set_alias", "alias:champion", "2")
    log.applied(0, "transition", "stage:Production", "2")
    ended = log.applied(10, kind, "delete" if kind == "delete_model" else "rename:fraud2", None)
    assert log.lanes() == {
        "alias:champion": [(None, None, 0, UNKNOWN, None), ("2", 0, 10, REQUEST, 1), (None, 10, None, REQUEST, ended)],
        "stage:Production": [(None, None, 0, UNKNOWN, None), ("2", 0, 10, REQUEST, 2)],
    }


def test_other_workspaces_and_file_changes_are_not_periods():
    log = Log()
    log.applied(0, "set_alias", "alias:champion", "2", workspace="team-b")
    log.outside(5, "alias:champion", "9", first_seen=True, workspace="team-b")
    log.outside(6, "alias:champion", "2", files=True)
    log.applied(10, "set_alias", "alias:champion", "3")
    assert log.lanes() == {"alias:champion": [(None, None, 10, UNKNOWN, None), ("3", 10, None, REQUEST, 2)]}
    assert log.lanes("team-b") == {
        "alias:champion": [(None, None, 0, UNKNOWN, None), ("2", 0, 5, REQUEST, 1), ("9", 5, None, OUTSIDE, None)]
    }


def _story() -> list[timeline.Lane]:
    log = Log()
    log.outside(0, "alias:champion", "1", first_seen=True)
    log.applied(10, "set_alias", "alias:champion", "2")
    log.applied(20, "delete_alias", "alias:champion", None)
    return timeline.build(log.events, log.asked)


@pytest.mark.parametrize(
    ("moment", "known", "version"),
    [
        (at(0) - US, False, None),  # before the first record
        (at(0), True, "1"),  # first seen: held at that moment
        (at(10) - US, True, "1"),
        (at(10), True, "2"),  # a boundary belongs to the period it starts
        (at(10) + US, True, "2"),
        (at(20) - US, True, "2"),
        (at(20), True, None),  # removed: known, nothing holds it
        (at(99), True, None),
    ],
)
def test_which_at_on_the_boundaries(moment, known, version):
    answer = timeline.which_at(_story(), "alias:champion", moment)
    assert (answer.known, answer.version) == (known, version)
    if not known:
        assert answer.reason == (
            "Checkpoint has no record of alias:champion before that time: its first record of it is at 2026-11-01T12:00:00+00:00"
        )
    else:
        assert answer.reason is None and len(answer.periods) == 1


def test_which_at_for_a_target_never_recorded():
    answer = timeline.which_at(_story(), "alias:prod", at(5))
    assert not answer.known and answer.reason == "Checkpoint has no record of alias:prod" and answer.version is None


@pytest.mark.parametrize(
    ("start", "until", "moment", "covers"),
    [
        (None, None, at(0), True),
        (at(0), None, at(0), True),
        (at(0), None, at(0) - US, False),
        (None, at(5), at(5) - US, True),
        (None, at(5), at(5), False),
    ],
)
def test_periods_are_half_open(start, until, moment, covers):
    assert Period("alias:a", "1", start, until).covers(moment) is covers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-01T12:00Z", T0),
        ("2026-11-01T12:00:00", T0),  # no zone: UTC
        ("2026-11-01 12:00", T0),
        ("2026-11-01T13:00+01:00", T0),
        ("2026-11-01T13:00:00.000 01:00", T0),  # "+01:00" sent unencoded in a query string
        ("2026-11-01T07:00:00-05:00", T0),
        ("  2026-11-01T12:00Z ", T0),
        ("2026-11-01", T0 - timedelta(hours=12)),  # a date is its midnight, UTC
        ("2026-11-01T12:00:00.000001Z", T0 + US),
    ],
)
def test_parse_moment(raw, expected):
    parsed = timeline.parse_moment(raw)
    assert parsed == expected and parsed.tzinfo == UTC


@pytest.mark.parametrize("raw", ["", "yesterday", "2026-13-01", "12:00", "2026-11-01T25:00Z", "2026-11-01T12:00 +x"])
def test_parse_moment_refuses(raw):
    with pytest.raises(ValueError, match="is not an ISO 8601 date or time"):
        timeline.parse_moment(raw)


def test_earlier_holders_newest_first_for_a_rollback():
    log = Log()
    log.outside(0, "alias:champion", "1", first_seen=True)
    log.applied(10, "set_alias", "alias:champion", "2")
    log.applied(20, "set_alias", "alias:champion", "3")
    log.applied(30, "set_alias", "alias:champion", "2")
    log.applied(40, "set_alias", "alias:champion", "4")
    lane = timeline.build(log.events, log.asked)[0]
    assert [(p.version, p.request_id) for p in timeline.earlier_holders(lane)] == [("2", 3), ("3", 2), ("1", None)]
    removed = Log()
    removed.applied(0, "set_alias", "alias:champion", "2")
    removed.applied(10, "delete_alias", "alias:champion", None)
    assert [p.version for p in timeline.earlier_holders(timeline.build(removed.events, removed.asked)[0])] == ["2"]
