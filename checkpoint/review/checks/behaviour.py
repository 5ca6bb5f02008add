"""The ``behaviour`` check: a gate over the behavioural diff's numbers (``review/behaviour/``).

Two forms, both under a rule whose ``evaluation:`` names the datasets::

    - {name: holdout-auc, kind: behaviour, expression: "roc_auc >= champion - 0.005", on: holdout}
    - {name: agreement, kind: behaviour, expression: "holdout.agreement >= 0.95"}
    - {name: examples, kind: behaviour, examples: no errors}

The expression is the metric checks' grammar (``expressions.py``, never ``eval``); its name is
a number the diff measures on one dataset (``on:``, or ``<dataset>.`` before the name; default:
the rule's first dataset). ``champion`` is the champion's value of the same number on the same
rows; numbers about the pair (``agreement``, ``mean_abs_diff``...) have no champion value.
``examples: no errors`` passes when neither model fails on either version's input example.

Evaluated by the background work once the diff is finished (``Checking.run_behaviour_checks``):
until then the check is pending, and a required one blocks approval like any check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from checkpoint.review.checks.expressions import Comparison, ExpressionError
from checkpoint.review.checks.kinds import Check
from checkpoint.review.checks.results import ERROR, FAIL, PASS, PENDING, Result, Unevaluable, one_line
from checkpoint.review.checks.subject import Subject
from checkpoint.review.checks.thresholds import KEYS as THRESHOLD_KEYS
from checkpoint.review.checks.thresholds import Threshold, parse_threshold

PAIR = ("agreement", "mean_abs_diff", "p95_abs_diff", "max_abs_diff", "correlation")
SIDE = ("accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae")
LATENCY = ("p50_latency_ms", "p95_latency_ms")
NUMBERS = (*PAIR, *SIDE, *LATENCY)
EXAMPLES = "no errors"


@dataclass(frozen=True)
class BehaviourCheck(Check):
    expression: Comparison | None = None
    number: str = ""  # what the expression reads (its name without the dataset)
    on: str = ""  # the dataset ("" with examples)
    examples: bool = False
    limit: Threshold | None = None  # MLflow's MetricThreshold keys (``thresholds.py``)
    limit_number: str = ""  # what the threshold reads (its metric without the dataset)
    kind: ClassVar[str] = "behaviour"
    local: ClassVar[bool] = False

    def describe(self) -> str:
        if self.examples:
            return "input examples: no errors"
        said = [text for text in (self.expression.text if self.expression else "", self.limit and self.limit.describe()) if text]
        return f"{' and '.join(said)} on {self.on}"

    def _evaluate(self, subject: Subject) -> Result:
        raise Unevaluable("behaviour checks are evaluated in the background")  # see judge

    def judge(self, shown: Mapping | None) -> Result:
        """The verdict on a request's diff as the API shows it (``BehaviourDiffs.view``)."""
        if shown is None:
            return Result(ERROR, "this request changes no model version: there is no behavioural diff to judge")
        if shown.get("state") in ("pending", "running"):
            return Result(PENDING, "waiting for the behavioural diff")
        if shown.get("state") == "error" and not (self.examples and (shown.get("examples") or {}).get("breaking")):
            return Result(ERROR, one_line(f"the behavioural diff failed: {shown.get('reason') or 'no reason given'}"))
        if self.examples:
            return _examples(shown.get("examples") or {})
        dataset = next((d for d in shown.get("datasets") or () if d.get("name") == self.on), None)
        if dataset is None:
            return Result(ERROR, f"the diff has no dataset named {self.on} (the policy changed since it ran: re-run checks)")
        if dataset.get("error"):
            return Result(ERROR, one_line(f"{self.on}: {dataset['error']}"))
        return self._compare(dataset)

    def _compare(self, dataset: Mapping) -> Result:
        """Each form given (the expression, the threshold) must pass; the reasons of both."""
        results = [r for r in (self._expression(dataset), self._threshold(dataset)) if r is not None]
        for status in (ERROR, FAIL):
            if any(r.status == status for r in results):
                return Result(status, one_line("; ".join(r.reason for r in results if r.status == status)))
        return Result(PASS, one_line("; ".join(r.reason for r in results)))

    def _threshold(self, dataset: Mapping) -> Result | None:
        if self.limit is None:
            return None
        value, champion = values(dataset, self.limit_number)
        passed, reason = self.limit.judge(value, champion)
        return Result(PASS if passed else FAIL, f"{self.on}: {reason}")

    def _expression(self, dataset: Mapping) -> Result | None:
        if self.expression is None:
            return None
        value, champion = values(dataset, self.number)
        where = f"{self.number} on {self.on}"
        if value is None:
            return Result(FAIL, f"{where} is not measured (e.g. no target column, or no probabilities for roc_auc)")
        if self.expression.relative and champion is None:
            return Result(FAIL, f"the champion's {where} is not measured: cannot compare")
        try:
            passed, reason = self.expression.evaluate(value, champion)
        except ExpressionError as exc:
            return Result(ERROR, one_line(f"{self.expression.text}: {exc}"))
        return Result(PASS if passed else FAIL, one_line(f"{self.on}: {reason}"))


def values(dataset: Mapping, number: str) -> tuple[float | None, float | None]:
    """(the challenger's or the pair's value, the champion's) of ``number`` on one dataset."""
    if number in PAIR:
        return _finite(dataset.get(number)), None
    if number in LATENCY:
        latency = dataset.get("latency_ms") or {}
        quantile = number.split("_", 1)[0]
        return tuple(_finite((latency.get(side) or {}).get(quantile)) for side in ("challenger", "champion"))  # type: ignore[return-value]
    both = (dataset.get("metrics") or {}).get(number) or {}
    return _finite(both.get("challenger")), _finite(both.get("champion"))


def _finite(value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _examples(examples: Mapping) -> Result:
    if examples.get("breaking"):
        return Result(FAIL, one_line("; ".join(examples["breaking"])))
    failed = [
        f"the {side} fails on the {entry.get('example')}'s input example"
        for entry in examples.get("inputs") or ()
        for side in ("champion", "challenger")
        if isinstance(entry.get(side), dict) and entry[side].get("error")
    ]
    if failed:
        return Result(FAIL, one_line("; ".join(failed)))
    count = len(examples.get("inputs") or ())
    return Result(PASS, f"both models ran on {count} input example{'s' if count != 1 else ''} without error")


def split_name(metric: str, on: str | None, datasets: tuple[str, ...]) -> tuple[str, str]:
    """(dataset, number) of an expression's name: ``holdout.roc_auc`` or ``roc_auc`` with ``on``
    (default: the rule's first dataset). Raises ValueError saying what is wrong."""
    prefix, dot, number = metric.rpartition(".")
    if not dot:
        number = metric
    elif on and prefix != on:
        raise ValueError(f"names dataset {prefix!r} but on: is {on!r}")
    dataset = prefix or on or (datasets[0] if datasets else "")
    if number not in NUMBERS:
        raise ValueError(f"{number!r} is not a number the diff measures; known: {', '.join(NUMBERS)}")
    if not dataset:
        raise ValueError("the rule has no evaluation: datasets to measure it on")
    if dataset not in datasets:
        raise ValueError(f"no dataset named {dataset!r} in the rule's evaluation ({', '.join(datasets) or 'none'})")
    return dataset, number


def parse_behaviour(item: Mapping, where: str, name: str, required: bool, parse) -> BehaviourCheck:
    """A ``behaviour`` entry of ``checks:`` (``parse``: the expression grammar's parser); its
    dataset is bound to the rule's ``evaluation:`` by :func:`bind`."""
    examples, text, on = item.get("examples"), item.get("expression"), item.get("on", "")
    if examples is not None:
        if examples != EXAMPLES or text is not None or on or any(k in item for k in THRESHOLD_KEYS):
            raise ValueError(
                f"{where}.examples: expected 'examples: {EXAMPLES}' alone (no expression, metric or on), got {examples!r}"
            )
        return BehaviourCheck(name, required, examples=True)
    limit = parse_threshold(dict(item), where)
    if text is None and limit is None:
        raise ValueError(
            f"{where}.expression: expected text such as 'roc_auc >= champion - 0.005', a metric with a threshold "
            f"(metric, threshold, min_absolute_change, min_relative_change, greater_is_better), or 'examples: {EXAMPLES}'"
        )
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{where}.expression: expected text such as 'roc_auc >= champion - 0.005', got {text!r}")
    if not isinstance(on, str):
        raise ValueError(f"{where}.on: expected the name of one of the rule's evaluation datasets, got {on!r}")
    expression = None
    if text is not None:
        try:
            expression = parse(text)
        except ExpressionError as exc:
            raise ValueError(f"{where}.expression {text!r}: {exc}") from exc
    return BehaviourCheck(name, required, expression, on=on, limit=limit)


def bind(checks: tuple[Check, ...], datasets: tuple[str, ...], where: str) -> tuple[Check, ...]:
    """The rule's checks with each behaviour check's dataset and number resolved against the
    rule's ``evaluation:`` names; raises ValueError naming the check and the key."""
    out: list[Check] = []
    for i, check in enumerate(checks):
        if isinstance(check, BehaviourCheck) and not check.examples:
            check = _bind_one(check, datasets, f"{where}.checks[{i}] ({check.name})")
        out.append(check)
    return tuple(out)


def _bind_one(check: BehaviourCheck, datasets: tuple[str, ...], where: str) -> BehaviourCheck:
    """One check's expression and threshold resolved; both name the same dataset when both are given."""
    found: dict[str, str] = {}
    for key, metric, relative in (
        (
            "expression",
            check.expression.metric if check.expression else None,
            bool(check.expression and check.expression.relative),
        ),
        ("metric", check.limit.metric if check.limit else None, bool(check.limit and check.limit.relative)),
    ):
        if metric is None:
            continue
        text = check.expression.text if key == "expression" and check.expression else metric
        at = f"{where}.{key} {text!r}"
        try:
            dataset, number = split_name(metric, check.on, datasets)
        except ValueError as exc:
            raise ValueError(f"{at}: {exc}") from exc
        if number in PAIR and relative:
            raise ValueError(f"{at}: {number} is about the pair; it has no champion value to compare with")
        if found and found["dataset"] != dataset:
            raise ValueError(f"{at}: names dataset {dataset!r}, the expression {found['dataset']!r}; use one on:")
        found |= {"dataset": dataset, key: number}
    return replace(check, on=found["dataset"], number=found.get("expression", ""), limit_number=found.get("metric", ""))
