"""Diff snapshots' bytes (review/diff/stored.py): both sides round-trip exactly, stay small, and
bytes of another format or corrupted ones decode to nothing instead of raising."""

from __future__ import annotations

import math

from checkpoint.review.diff import ColumnSpec, DatasetInput, Signature, VersionInfo, compute_diff, decode_sides, encode_sides
from checkpoint.review.diff.stored import FORMAT, readable


def wide(version: str, n: int) -> VersionInfo:
    return VersionInfo(
        name="m",
        version=version,
        run_id=f"run{version}",
        params={f"p{i:04d}": f"v{(i * int(version)) % 97}" for i in range(n)},
        metrics={**{f"m{i:04d}": i / 7 for i in range(n)}, "nan_metric": math.nan},
        metric_steps={"m0001": 3},
        metric_histories={"m0001": [(0, 0.5), (3, 0.25)]},
        run_tags={"mlflow.user": "alice"},
        datasets=(DatasetInput("train", "abc", context="training"),),
        mlmodel_read=True,
        signature=Signature(inputs=(ColumnSpec("a", "double"),), outputs=(ColumnSpec("", "long", False),)),
        flavors=("python_function", "sklearn"),
        requirements={"numpy": ">=1.24"},
        problems=["requirements.txt could not be read: RESOURCE_DOES_NOT_EXIST (HTTP 404)"],
    )


def test_both_sides_round_trip_and_give_the_same_diff():
    new, old = wide("2", 2000), wide("1", 2000)
    data, raw = encode_sides(new, old)
    back_new, back_old = decode_sides(data)
    assert back_new.metric_histories == {"m0001": [(0, 0.5), (3, 0.25)]} and back_new.signature == new.signature
    assert back_new.params == new.params and back_old.datasets == old.datasets and back_old.flavors == old.flavors
    assert math.isnan(back_new.metrics["nan_metric"])
    assert repr(compute_diff(back_new, back_old)) == repr(compute_diff(new, old))
    assert raw > 100_000 and len(data) < raw / 3  # compressed: the wide pair is stored in a fraction


def test_a_first_promotion_has_no_champion_side():
    data, _ = encode_sides(wide("1", 3), None)
    challenger, champion = decode_sides(data)
    assert champion is None and challenger.version == "1"


def test_other_formats_and_corrupt_bytes_decode_to_nothing():
    data, _ = encode_sides(wide("1", 3), None)
    assert readable(data) and data[0] == FORMAT
    assert decode_sides(bytes([FORMAT + 1]) + data[1:]) is None and not readable(bytes([FORMAT + 1]))
    assert decode_sides(data[:20]) is None
    assert decode_sides(b"") is None and not readable(b"") and not readable(None)
