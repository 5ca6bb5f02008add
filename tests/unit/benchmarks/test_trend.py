"""benchmarks/trend.py: how scale_bench.py names a cost's growth and finds where it crosses a limit.

The benchmarks are scripts, not a package; the module is loaded from its file."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[3] / "benchmarks" / "trend.py"
spec = importlib.util.spec_from_file_location("benchmark_trend", PATH)
assert spec is not None and spec.loader is not None
trend = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = trend  # dataclasses look their module up there
spec.loader.exec_module(trend)


@pytest.mark.parametrize(
    ("costs", "expected"),
    [
        ([5.0, 5.1, 4.9, 5.0], "flat"),
        ([1.0, 10.0, 100.0, 1000.0], "linear"),
        ([1.0, 100.0, 10_000.0, 1_000_000.0], "superlinear"),
        ([1.0, 3.2, 10.0, 32.0], "sublinear"),
        ([100.0, 10.0, 1.0, 0.1], "falling"),
    ],
)
def test_names_the_slope_of_a_log_log_fit(costs, expected):
    sizes = [1e3, 1e4, 1e5, 1e6]
    assert trend.name(trend.fit(sizes, costs).slope) == expected


def test_the_fit_recovers_a_power_law():
    sizes = [100.0, 1000.0, 10_000.0]
    fit = trend.fit(sizes, [3 * s**0.5 for s in sizes])
    assert math.isclose(fit.slope, 0.5) and math.isclose(fit.scale, 3.0)
    assert math.isclose(fit.at(40_000), 600.0)


def test_where_a_growing_cost_reaches_a_limit():
    fit = trend.fit([1e4, 1e5], [2.0, 20.0])  # linear: 0.2 ms per thousand
    assert math.isclose(fit.reaches(50.0), 250_000.0)


def test_a_flat_cost_never_reaches_a_limit():
    assert trend.fit([1e3, 1e6], [9.0, 9.5]).reaches(50.0) is None


def test_describe_gives_the_last_step_beside_the_whole_range():
    # fixed cost then linear: sublinear overall, linear over the last step
    sizes = [1e3, 1e4, 1e5, 1e6]
    text = trend.describe(sizes, [2.0 + s / 1e4 for s in sizes])
    assert text.startswith("sublinear (log-log slope 0.5")
    assert text.endswith("; last step 0.93)")


def test_two_points_have_no_separate_last_step():
    assert trend.describe([1.0, 2.0], [1.0, 2.0]) == "linear (log-log slope 1.00)"


def test_a_trend_needs_two_sizes():
    with pytest.raises(ValueError, match="two different sizes"):
        trend.fit([5.0, 5.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="two different sizes"):
        trend.fit([1.0, 2.0], [0.0, 1.0])  # a zero cost has no logarithm: left out, one point remains
