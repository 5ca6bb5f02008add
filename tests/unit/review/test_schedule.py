"""When an approved request applies: the later of its apply_at and the end of a freeze, the
apply_at a caller may give (every bad one a 400 naming the field), and the lines people read."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from checkpoint.review import freezes, schedule
from checkpoint.review.policy import Policy
from checkpoint.review.workflow_base import WorkflowError
from checkpoint.storage.entities import PromoteRequest, Waiting

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # a Saturday, inside the weekend freeze
WEEKEND = freezes.parse(
    [
        {
            "name": "weekend",
            "targets": ["alias:champion"],
            "every": "Fri 16:00 - Mon 08:00",
            "timezone": "Europe/Berlin",
            "reason": "no weekend changes",
        }
    ]
)
POLICY = Policy(freezes=WEEKEND)
MONDAY_8_CET = datetime(2026, 1, 12, 7, 0, tzinfo=UTC)
REQUEST = PromoteRequest(
    id=1,
    kind="set_alias",
    model_name="fraud",
    version="2",
    target="alias:champion",
    change={},
    title="t",
    description="",
    author="alice",
    state="approved",
    state_reason="",
    challenger={},
    champion=None,
    created_at=NOW,
    updated_at=NOW,
    applied_at=None,
    apply_result="",
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("apply_at", "now", "expected"),
    [
        (None, NOW, Waiting("freeze", MONDAY_8_CET, "weekend")),  # frozen: until the end
        (None, at("2026-01-13T12:00Z"), None),  # a Tuesday: at once
        (at("2026-01-13T09:00Z"), at("2026-01-13T08:00Z"), Waiting("schedule", at("2026-01-13T09:00Z"))),
        (at("2026-01-13T09:00Z"), at("2026-01-13T09:00Z"), None),  # its time has come
        (at("2026-01-10T18:00Z"), NOW, Waiting("freeze", MONDAY_8_CET, "weekend")),  # scheduled inside: the freeze wins
        (at("2026-01-12T09:00Z"), NOW, Waiting("schedule", at("2026-01-12T09:00Z"))),  # after the freeze: the schedule wins
        (at("2026-01-16T16:00Z"), at("2026-01-13T12:00Z"), Waiting("freeze", at("2026-01-19T07:00Z"), "weekend")),
    ],
)
def test_the_later_of_schedule_and_freeze_wins(apply_at, now, expected):
    assert schedule.waiting_for(POLICY, replace(REQUEST, apply_at=apply_at), now) == expected


def test_a_freeze_on_another_target_holds_nothing():
    assert schedule.waiting_for(POLICY, replace(REQUEST, target="alias:challenger"), NOW) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (12, r"^apply_at: expected an ISO timestamp"),
        ("tomorrow", r"^apply_at: 'tomorrow' is not an ISO timestamp"),
        ("2026-01-11T08:00", r"^apply_at: '2026-01-11T08:00' has no offset"),
        ("2026-01-10T11:59:59Z", r"^apply_at: .* is in the past"),
        ("2026-01-10T12:00:00Z", r"^apply_at: .* is in the past"),  # now is not ahead
        ("2027-02-10T12:00:00Z", r"^apply_at: .* more than a year ahead"),
    ],
)
def test_a_bad_apply_at_is_a_400_naming_the_field(value, message):
    with pytest.raises(WorkflowError, match=message) as caught:
        schedule.check_apply_at(value, NOW)
    assert caught.value.status == 400


def test_a_good_apply_at_is_read_in_utc():
    assert schedule.check_apply_at(None, NOW) is None
    assert schedule.check_apply_at("2026-01-11T09:00:00+01:00", NOW) == at("2026-01-11T08:00:00Z")
    assert schedule.check_apply_at("2026-01-11T08:00:00Z", NOW) == at("2026-01-11T08:00:00Z")


def test_the_lines_people_read():
    waiting = schedule.waiting_for(POLICY, REQUEST, NOW)
    assert waiting is not None
    assert schedule.describe(POLICY, waiting) == "waiting for freeze 'weekend' to end at Mon 08:00 CET"
    later = Waiting("schedule", at("2026-01-13T09:00Z"))
    assert schedule.describe(POLICY, later) == "scheduled to apply at 2026-01-13 09:00 UTC"
    assert schedule.freeze_note(POLICY, replace(REQUEST, state="open"), NOW) == (
        "freeze 'weekend' (no weekend changes) holds alias:champion: once approved it applies at 2026-01-12T07:00:00Z"
    )
    assert schedule.freeze_note(POLICY, REQUEST, at("2026-01-13T12:00Z")) is None


def test_a_freeze_on_any_change_of_a_batch_holds_all_of_it():
    """A batch whose first change no freeze covers waits for the one that covers its second."""
    parts = (
        {"change": {"kind": "set_alias", "name": "fraud", "alias": "challenger", "version": "2"}, "target": "alias:challenger"},
        {"change": {"kind": "set_alias", "name": "churn", "alias": "champion", "version": "4"}, "target": "alias:champion"},
    )
    batch = replace(REQUEST, kind="batch", target="alias:challenger", changes=parts)
    assert schedule.waiting_for(POLICY, replace(REQUEST, target="alias:challenger"), NOW) is None  # the first alone
    assert schedule.waiting_for(POLICY, batch, NOW) == Waiting(schedule.FREEZE, MONDAY_8_CET, "weekend")
    assert "holds alias:champion" in (schedule.freeze_note(POLICY, batch, NOW) or "")
    assert schedule.waiting_for(POLICY, batch, MONDAY_8_CET) is None
