"""How a cost grows with a size: the slope of a log-log fit, named, and where it crosses a limit.

Pure (no I/O), so ``tests/unit/benchmarks/test_trend.py`` checks it; ``scale_bench.py`` states
every table's trend with it instead of by eye.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Slopes of log(cost) against log(size): 0 is a flat cost, 1 a cost proportional to the size.
FLAT_BELOW = 0.15
LINEAR_FROM, LINEAR_TO = 0.8, 1.2


@dataclass(frozen=True)
class Fit:
    """``cost ≈ scale · size ** slope``, fitted by least squares on logarithms."""

    slope: float
    scale: float

    def at(self, size: float) -> float:
        return self.scale * size**self.slope

    def reaches(self, limit: float) -> float | None:
        """The size at which the fitted cost reaches ``limit``; None if it never grows to it."""
        if self.slope <= FLAT_BELOW or limit <= 0:
            return None
        return (limit / self.scale) ** (1 / self.slope)


def fit(sizes: list[float], costs: list[float]) -> Fit:
    """Least-squares fit of log(cost) on log(size); needs two distinct sizes and positive values."""
    points = [(math.log(s), math.log(c)) for s, c in zip(sizes, costs, strict=True) if s > 0 and c > 0]
    if len({x for x, _ in points}) < 2:
        raise ValueError("a trend needs positive costs at two different sizes at least")
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return Fit(slope, math.exp(mean_y - slope * mean_x))


def name(slope: float) -> str:
    """flat, sublinear, linear or superlinear (falling for a cost that shrinks)."""
    if slope < -FLAT_BELOW:
        return "falling"
    if slope < FLAT_BELOW:
        return "flat"
    if slope < LINEAR_FROM:
        return "sublinear"
    if slope <= LINEAR_TO:
        return "linear"
    return "superlinear"


def describe(sizes: list[float], costs: list[float]) -> str:
    """The trend over the whole range and, with three points or more, over the last step, e.g.
    ``sublinear (log-log slope 0.42; last step 0.97)``."""
    whole = fit(sizes, costs)
    text = f"{name(whole.slope)} (log-log slope {whole.slope:.2f}"
    if len(sizes) >= 3:
        text += f"; last step {fit(sizes[-2:], costs[-2:]).slope:.2f}"
    return text + ")"
