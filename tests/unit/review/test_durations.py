"""The policy file's durations as tables: every spelling read, every bad one refused with why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from checkpoint.review.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        (" 7d ", timedelta(days=7)),
        ("1d12h", timedelta(hours=36)),
        ("1w2d3h4m", timedelta(weeks=1, days=2, hours=3, minutes=4)),
        ("0d1m", timedelta(minutes=1)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_a_duration_is_read(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (7, r"7 has no unit; write it with one \(90m, 24h, 7d, 2w or 1d12h\)"),
        (1.5, r"1\.5 has no unit"),
        (True, r"expected a duration such as .*, got True"),
        (None, r"got None"),
        (["7d"], r"got \['7d'\]"),
        ("", r"got an empty string"),
        ("   ", r"got an empty string"),
        ("7", r"expected a duration such as .*, got '7'"),
        ("d", r"got 'd'"),
        ("7 d", r"got '7 d'"),
        ("-7d", r"got '-7d'"),
        ("7.5h", r"got '7\.5h'"),
        ("7days", r"'7days': unknown unit 'days'"),
        ("1M", r"'1M': unknown unit 'M'"),  # months or minutes? neither: refused
        ("7D", r"'7D': unknown unit 'D'"),
        ("10s", r"'10s': unknown unit 's'"),
        ("12h1d", r"'12h1d': write each unit once, largest first"),
        ("1d1d", r"'1d1d': write each unit once"),
        ("0m", r"'0m': a duration must be longer than zero"),
        ("0w0d", r"longer than zero"),
        ("3651d", r"'3651d': at most 3650 days"),
        ("9999999w", r"at most 3650 days"),
        ("12345678d", r"got '12345678d'"),  # more digits than any real duration
    ],
)
def test_a_bad_duration_is_refused_saying_why(value, message):
    with pytest.raises(DurationError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=7), "1w"),
        (timedelta(hours=36), "1d12h"),
        (timedelta(days=15, minutes=1), "2w1d1m"),
        (timedelta(seconds=30), "0m"),
    ],
)
def test_a_duration_is_written_back_in_the_spelling_that_reads_it(duration, text):
    assert format_duration(duration) == text
    if duration >= timedelta(minutes=1):
        assert parse_duration(text) == duration
