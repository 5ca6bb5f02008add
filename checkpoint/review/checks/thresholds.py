"""MLflow's ``MetricThreshold`` rule on a ``behaviour`` check, with the champion as baseline::

    - {name: auc, kind: behaviour, metric: roc_auc, threshold: 0.9, min_absolute_change: 0.001,
       min_relative_change: 0.01, greater_is_better: true, on: holdout}

The same rule as ``mlflow.models.MetricThreshold`` judged by MLflow's model validation
(``mlflow/models/evaluation/validation.py``), written out here rather than imported: the web
and background processes do not import MLflow's evaluation package, and its validator is a
private function that raises on failure. ``tests/unit/review/test_thresholds.py`` holds the two
to the same verdicts. The keys are checked as ``MetricThreshold.__init__`` checks them, at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

KEYS = ("metric", "threshold", "min_absolute_change", "min_relative_change", "greater_is_better")


@dataclass(frozen=True)
class Threshold:
    """One metric's threshold (``None``: that part is not asked for)."""

    metric: str  # as written: ``roc_auc`` or ``holdout.roc_auc``
    greater_is_better: bool
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None

    @property
    def relative(self) -> bool:
        """Whether it compares with the champion (the baseline)."""
        return self.min_absolute_change is not None or self.min_relative_change is not None

    def describe(self) -> str:
        parts = [f"{self.metric} {'≥' if self.greater_is_better else '≤'} {self.threshold}"] if self.threshold is not None else []
        if self.min_absolute_change is not None:
            parts.append(f"{'+' if self.greater_is_better else '−'}{self.min_absolute_change} vs champion")
        if self.min_relative_change is not None:
            parts.append(f"{'+' if self.greater_is_better else '−'}{100 * self.min_relative_change:g}% vs champion")
        return ", ".join(parts) if self.threshold is not None else f"{self.metric} " + ", ".join(parts)

    def judge(self, value: float | None, champion: float | None) -> tuple[bool, str]:
        """(passed, reason) for the challenger's ``value`` against the champion's, as MLflow's
        ``_validate`` decides: each part asked for must hold; a missing value fails."""
        name = self.metric.rpartition(".")[2]
        if value is None:
            return False, f"{name} is not measured for the challenger"
        better = (lambda a, b: a >= b) if self.greater_is_better else (lambda a, b: a <= b)
        step = (lambda a, b: a + b) if self.greater_is_better else (lambda a, b: a - b)
        failed: list[str] = []
        if self.threshold is not None and not better(value, self.threshold):
            failed.append(f"{name} {value:g} is not {'≥' if self.greater_is_better else '≤'} threshold {self.threshold:g}")
        if self.relative and champion is None:
            failed.append(f"the champion's {name} is not measured: cannot compare")
            return False, "; ".join(failed)
        if self.min_absolute_change is not None:
            assert champion is not None
            bound = step(champion, self.min_absolute_change)
            if not better(Decimal(value), Decimal(bound)):
                failed.append(f"{name} {value:g} is not {self.min_absolute_change:g} better than champion {champion:g}")
        if self.min_relative_change is not None:
            assert champion is not None
            if champion == 0:  # MLflow's fallback: strictly better by 1e-10
                ok = better(Decimal(value), Decimal(step(champion, 1e-10)))
            else:
                change = (value - champion if self.greater_is_better else champion - value) / abs(champion)
                ok = not change < self.min_relative_change
            if not ok:
                failed.append(f"{name} {value:g} is not {100 * self.min_relative_change:g}% better than champion {champion:g}")
        if failed:
            return False, "; ".join(failed)
        against = f" (champion {champion:g})" if champion is not None else ""
        return True, f"{name} {value:g} meets {self.describe()}{against}"


def parse_threshold(item: dict, where: str) -> Threshold | None:
    """The threshold keys of a check entry (None when it has none); ValueError naming the key,
    with MetricThreshold's own conditions."""
    if not any(key in item for key in KEYS):
        return None
    metric = item.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise ValueError(f"{where}.metric: expected the number to hold to a threshold, such as roc_auc, got {metric!r}")
    threshold = item.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise ValueError(f"{where}.threshold: expected a number, got {threshold!r}")
    absolute = item.get("min_absolute_change")
    if absolute is not None and (isinstance(absolute, bool) or not isinstance(absolute, int | float) or absolute <= 0):
        raise ValueError(f"{where}.min_absolute_change: expected a positive number, got {absolute!r}")
    relative = item.get("min_relative_change")
    if relative is not None and (isinstance(relative, bool) or not isinstance(relative, int | float) or not 0 <= relative <= 1):
        raise ValueError(f"{where}.min_relative_change: expected a number from 0 to 1 (0.01 is 1%), got {relative!r}")
    greater = item.get("greater_is_better")
    if not isinstance(greater, bool):
        raise ValueError(
            f"{where}.greater_is_better: expected true or false (MLflow's MetricThreshold needs it), got {greater!r}"
        )
    if threshold is None and absolute is None and relative is None:
        raise ValueError(f"{where}: metric {metric!r} needs threshold, min_absolute_change or min_relative_change")
    return Threshold(
        metric.strip(),
        greater,
        float(threshold) if threshold is not None else None,
        float(absolute) if absolute is not None else None,
        float(relative) if relative is not None else None,
    )
