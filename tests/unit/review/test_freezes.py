"""Freeze windows as tables: every malformed entry refused naming its key, membership at the
window's edges, across both daylight-saving changes (the window stays in wall-clock time),
one-off windows, chained windows, and when a held target is next free."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from checkpoint.errors import ConfigError
from checkpoint.policy_file import load
from checkpoint.review import freezes
from checkpoint.settings import Settings

WEEKEND = {
    "name": "weekend",
    "models": ["*"],
    "targets": ["alias:champion", "stage:production", "model:prod.*"],
    "every": "Fri 16:00 - Mon 08:00",
    "timezone": "Europe/Berlin",
    "reason": "No production changes over the weekend",
}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def one(**changes) -> freezes.Freeze:
    (freeze,) = freezes.parse([{**WEEKEND, **changes}])
    return freeze


def test_a_weekly_freeze_is_read():
    freeze = one()
    assert freeze.name == "weekend" and freeze.zone == "Europe/Berlin"
    assert freeze.targets == ("alias:champion", "stage:Production", "model:prod.*")  # a stage spelled canonically
    assert freeze.weekly is not None and freeze.weekly.describe() == "Fri 16:00 - Mon 08:00"
    assert freeze.reason == "No production changes over the weekend"


def test_no_key_means_no_freezes():
    assert freezes.parse(None) == ()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"name": "x"}, r"^freezes: expected a list"),
        (["weekend"], r"^freezes\[0\]: expected a mapping"),
        ([{**WEEKEND, "color": "red"}], r"^freezes\[0\]: unknown key\(s\) color"),
        ([{**WEEKEND, "name": ""}], r"^freezes\[0\]\.name: expected a non-empty string"),
        ([{**WEEKEND, "name": 3}], r"^freezes\[0\]\.name:"),
        ([WEEKEND, WEEKEND], r"^freezes: the name\(s\) weekend appear more than once"),
        ([{**WEEKEND, "every": "Fri 16:00"}], r"freezes\[0\] \(weekend\)\.every: expected a weekly window"),
        ([{**WEEKEND, "every": 5}], r"freezes\[0\] \(weekend\)\.every: expected a weekly window"),
        ([{**WEEKEND, "every": "Fry 16:00 - Mon 08:00"}], r"\.every: 'Fry' in .* is not a weekday"),
        ([{**WEEKEND, "every": "Fri 25:00 - Mon 08:00"}], r"\.every: '25:00' in .* is not a time of day"),
        ([{**WEEKEND, "every": "Fri 16:61 - Mon 08:00"}], r"\.every: '16:61' in .* is not a time of day"),
        ([{**WEEKEND, "every": "Fri 16:00 - Fri 16:00"}], r"\.every: .* starts and ends at the same time"),
        ([{**WEEKEND, "from": "2026-12-24T00:00"}], r"\.every: give either every or from/until, not both"),
        ([{"name": "n", "targets": ["*"]}], r"freezes\[0\] \(n\)\.every: a freeze needs every"),
        ([{**WEEKEND, "timezone": "Mars/Olympus"}], r"\.timezone: 'Mars/Olympus' is not a known zone"),
        ([{**WEEKEND, "timezone": ""}], r"\.timezone: expected an IANA zone name"),
        ([{**WEEKEND, "timezone": "../etc/passwd"}], r"\.timezone: '../etc/passwd' is not a known zone"),
        ([{**WEEKEND, "targets": []}], r"\.targets: expected a list of non-empty strings"),
        ([{**WEEKEND, "targets": ["stage:Prod"]}], r"\.targets: 'stage:Prod' names no stage"),
        ([{**WEEKEND, "models": [""]}], r"\.models: expected a list of non-empty strings"),
        ([{**WEEKEND, "reason": ["x"]}], r"\.reason: expected a string"),
        ([{"name": "n", "from": "2026-12-24T00:00"}], r"\(n\)\.until: expected an ISO timestamp"),
        ([{"name": "n", "until": "2026-12-24T00:00"}], r"\(n\)\.from: expected an ISO timestamp"),
        ([{"name": "n", "from": "Christmas", "until": "2026-12-27"}], r"\(n\)\.from: 'Christmas' is not an ISO timestamp"),
        ([{"name": "n", "from": "2026-12-27T00:00", "until": "2026-12-24T00:00"}], r"\(n\)\.until: .* is not after from"),
        ([{"name": "n", "from": "2026-12-24T00:00", "until": "2026-12-24T00:00"}], r"\(n\)\.until: .* is not after from"),
    ],
)
def test_every_malformed_entry_is_refused_naming_its_key(items, message):
    with pytest.raises(ConfigError, match=message):
        freezes.parse(items)


def test_the_policy_file_refuses_a_bad_freeze_at_start(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text("freezes:\n  - {name: weekend, targets: ['*'], every: 'Fri 16:00 - Mon 8am'}\n")
    env = {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001", "CHECKPOINT_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"freezes\[0\] \(weekend\)\.every"):
        load(Settings.from_env({**env, "CHECKPOINT_POLICY_FILE": str(path)}))
    path.write_text("freezes:\n  - {name: weekend, targets: ['alias:champion'], every: 'Fri 16:00 - Mon 08:00'}\n")
    loaded = load(Settings.from_env({**env, "CHECKPOINT_POLICY_FILE": str(path)}))
    assert [f.name for f in loaded.rules.freezes] == ["weekend"]


@pytest.mark.parametrize(
    ("at", "frozen"),
    [
        # Winter (CET, UTC+1): Fri 16:00 local is 15:00 UTC, Mon 08:00 local is 07:00 UTC.
        ("2026-01-09T14:59:59Z", False),
        ("2026-01-09T15:00:00Z", True),  # the window opens at its start
        ("2026-01-10T12:00:00Z", True),
        ("2026-01-12T06:59:59Z", True),
        ("2026-01-12T07:00:00Z", False),  # and is closed at its end (half-open)
        ("2026-01-14T12:00:00Z", False),
        # Summer (CEST, UTC+2): the same wall-clock window is an hour earlier in UTC.
        ("2026-07-10T13:59:59Z", False),
        ("2026-07-10T14:00:00Z", True),
        ("2026-07-13T05:59:59Z", True),
        ("2026-07-13T06:00:00Z", False),
        # Spring forward (Sun 29 March 2026): opens Fri at 16:00 CET, closes Mon at 08:00 CEST.
        ("2026-03-27T14:59:59Z", False),
        ("2026-03-27T15:00:00Z", True),
        ("2026-03-30T05:59:59Z", True),
        ("2026-03-30T06:00:00Z", False),
        # Fall back (Sun 25 October 2026): opens Fri at 16:00 CEST, closes Mon at 08:00 CET.
        ("2026-10-23T13:59:59Z", False),
        ("2026-10-23T14:00:00Z", True),
        ("2026-10-25T00:30:00Z", True),  # the repeated hour, twice over
        ("2026-10-25T01:30:00Z", True),
        ("2026-10-26T06:59:59Z", True),
        ("2026-10-26T07:00:00Z", False),
    ],
)
def test_window_membership_at_the_edges_and_across_dst(at, frozen):
    assert (one().window_at(utc(at)) is not None) is frozen


@pytest.mark.parametrize(
    ("at", "start", "end", "shown"),
    [
        ("2026-01-10T12:00:00Z", "2026-01-09T15:00:00Z", "2026-01-12T07:00:00Z", "Mon 08:00 CET"),
        ("2026-03-28T12:00:00Z", "2026-03-27T15:00:00Z", "2026-03-30T06:00:00Z", "Mon 08:00 CEST"),  # 63 h
        ("2026-10-24T12:00:00Z", "2026-10-23T14:00:00Z", "2026-10-26T07:00:00Z", "Mon 08:00 CET"),  # 65 h
    ],
)
def test_the_window_and_its_end_in_wall_clock_time(at, start, end, shown):
    freeze = one()
    assert freeze.window_at(utc(at)) == (utc(start), utc(end))
    assert freeze.ends_local(utc(end)) == shown


def test_a_window_across_the_week_boundary_and_one_within_a_day():
    nights = one(every="Sun 22:00 - Sun 23:30", timezone="UTC")
    assert nights.window_at(utc("2026-01-11T22:30:00Z")) is not None
    assert nights.window_at(utc("2026-01-11T23:30:00Z")) is None
    week = one(every="Sat 00:00 - Fri 00:00", timezone="UTC")  # six days, starting on Saturday
    assert week.window_at(utc("2026-01-14T12:00:00Z")) is not None  # a Wednesday
    assert week.window_at(utc("2026-01-16T12:00:00Z")) is None  # Friday


def test_a_one_off_window_reads_naive_times_in_its_zone():
    freeze = freezes.parse(
        [
            {
                "name": "xmas",
                "targets": ["*"],
                "from": "2026-12-24T00:00",
                "until": "2026-12-27T00:00Z",
                "timezone": "Europe/Berlin",
            }
        ]
    )[0]
    assert (freeze.starts, freeze.ends) == (utc("2026-12-23T23:00:00Z"), utc("2026-12-27T00:00:00Z"))
    assert freeze.window_at(utc("2026-12-23T22:59:59Z")) is None
    assert freeze.window_at(utc("2026-12-23T23:00:00Z")) is not None
    assert freeze.window_at(utc("2026-12-27T00:00:00Z")) is None
    assert freeze.describe() == "xmas: 2026-12-24 00:00 - 2026-12-27 01:00 (Europe/Berlin)"
    assert one().describe() == "weekend: Fri 16:00 - Mon 08:00 (Europe/Berlin) — No production changes over the weekend"


def test_yaml_datetimes_are_accepted():
    freeze = freezes.parse([{"name": "n", "from": datetime(2026, 12, 24), "until": datetime(2026, 12, 25, tzinfo=UTC)}])[0]
    assert (freeze.starts, freeze.ends) == (utc("2026-12-24T00:00:00Z"), utc("2026-12-25T00:00:00Z"))


@pytest.mark.parametrize(
    ("model", "target", "covered"),
    [
        ("fraud", "alias:champion", True),
        ("fraud", "alias:CHAMPION", True),  # aliases compare in lower case, as in the rules
        ("fraud", "stage:Production", True),
        ("fraud", "alias:challenger", False),
        ("prod.fraud", "model:prod.fraud", True),
        ("fraud", "stage:Staging", False),
    ],
)
def test_which_targets_a_freeze_covers(model, target, covered):
    assert one().covers(model, target) is covered


def test_held_follows_windows_back_to_back_and_ignores_other_targets():
    weekend = one()
    monday = one(name="monday", every="Mon 08:00 - Mon 12:00")
    hold = freezes.held((weekend, monday), "fraud", "alias:champion", utc("2026-01-10T12:00:00Z"))
    assert hold is not None
    assert (hold.freeze.name, hold.until) == ("monday", utc("2026-01-12T11:00:00Z"))  # Mon 12:00 CET
    assert freezes.held((weekend,), "fraud", "alias:challenger", utc("2026-01-10T12:00:00Z")) is None
    assert freezes.held((weekend,), "fraud", "alias:champion", utc("2026-01-13T12:00:00Z")) is None
