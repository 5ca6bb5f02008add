"""MLflow's MetricThreshold rule on a behaviour check (``review/checks/thresholds.py``): the same
verdict as MLflow's own validator on every case of a grid, and the keys checked at start as
MetricThreshold checks them, each error naming the rule, the check and the key."""

from __future__ import annotations

import itertools

import pytest
import yaml
from mlflow.models import MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException, _validate

from checkpoint.review.checks import BehaviourCheck, parse_expression
from checkpoint.review.checks.thresholds import Threshold, parse_threshold
from checkpoint.review.policy import PolicyError
from checkpoint.review.policy_parsing import parse

VALUES = (None, -0.5, 0.0, 0.9, 0.9009, 0.909, 0.95)
LIMITS = [  # (threshold, min_absolute_change, min_relative_change)
    (0.9, None, None),
    (None, 0.001, None),
    (None, None, 0.01),
    (0.9, 0.001, 0.01),
    (0.91, 0.05, 0.05),  # MLflow's docstring example
    (None, 0.5, 0.5),
]


def mlflow_says(limit: tuple, greater: bool, value: float | None, champion: float | None) -> bool:
    threshold, absolute, relative = limit
    rule = MetricThreshold(threshold, absolute, relative, greater_is_better=greater)
    try:
        _validate(
            {"m": rule},
            {} if value is None else {"m": value},
            {} if champion is None else {"m": champion},
        )
    except ModelValidationFailedException:
        return False
    return True


@pytest.mark.parametrize(("limit", "greater"), list(itertools.product(LIMITS, (True, False))))
def test_the_verdict_is_mlflows_on_every_case(limit, greater):
    ours = Threshold("m", greater, *limit)
    compared = 0
    for value, champion in itertools.product(VALUES, VALUES):
        passed, reason = ours.judge(value, champion)
        assert passed == mlflow_says(limit, greater, value, champion), (value, champion, reason)
        compared += 1
    assert compared == len(VALUES) ** 2


def test_the_reason_says_which_part_failed_with_the_numbers():
    rule = Threshold("holdout.roc_auc", True, 0.9, 0.001, 0.01)
    assert rule.judge(0.95, 0.94) == (
        True,
        "roc_auc 0.95 meets holdout.roc_auc ≥ 0.9, +0.001 vs champion, +1% vs champion (champion 0.94)",
    )
    passed, reason = rule.judge(0.945, 0.94)
    assert not passed and reason == "roc_auc 0.945 is not 1% better than champion 0.94"
    passed, reason = rule.judge(0.85, None)
    assert not passed and "is not ≥ threshold 0.9" in reason and "champion's roc_auc is not measured" in reason


def test_a_check_with_both_forms_passes_only_when_both_pass():
    dataset = {"name": "holdout", "metrics": {"roc_auc": {"champion": 0.94, "challenger": 0.95}}}
    shown = {"state": "done", "datasets": [dataset]}
    both = BehaviourCheck(
        "g", True, parse_expression("roc_auc >= champion - 0.005"), number="roc_auc", on="holdout",
        limit=Threshold("roc_auc", True, min_relative_change=0.05), limit_number="roc_auc",
    )  # fmt: skip
    result = both.judge(shown)
    assert result.status == "fail" and result.reason == "holdout: roc_auc 0.95 is not 5% better than champion 0.94"
    alone = BehaviourCheck("g", True, None, on="holdout", limit=Threshold("roc_auc", True, 0.9), limit_number="roc_auc")
    assert alone.judge(shown).status == "pass" and alone.describe() == "roc_auc ≥ 0.9 on holdout"


def parse_policy(text: str):
    return parse(yaml.safe_load(text)["rules"])


POLICY = """
rules:
  - name: fraud
    models: ["fraud-*"]
    evaluation: [{{name: holdout, uri: "runs:/abc/holdout.parquet"}}, {{name: recent, uri: "runs:/abc/recent.csv"}}]
    checks:
      - {{name: auc, kind: behaviour, {keys}}}
"""


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("metric: roc_auc, threshold: high, greater_is_better: true", "(auc).threshold: expected a number, got 'high'"),
        ("metric: roc_auc, min_absolute_change: 0, greater_is_better: true", "(auc).min_absolute_change: expected a positive"),
        (
            "metric: roc_auc, min_relative_change: 1.5, greater_is_better: true",
            "(auc).min_relative_change: expected a number from 0",
        ),
        ("metric: roc_auc, threshold: 0.9", "(auc).greater_is_better: expected true or false"),
        ("metric: roc_auc, greater_is_better: true", "(auc): metric 'roc_auc' needs threshold"),
        ("threshold: 0.9, greater_is_better: true", "(auc).metric: expected the number"),
        ("metric: speed, threshold: 0.9, greater_is_better: true", "(auc).metric 'speed': 'speed' is not a number"),
        ("metric: agreement, min_absolute_change: 0.1, greater_is_better: true", "agreement is about the pair"),
        ("metric: recent.roc_auc, threshold: 0.9, greater_is_better: true, expression: 'f1 >= 0.5'", "names dataset 'recent'"),
        ("examples: no errors, metric: roc_auc, threshold: 0.9, greater_is_better: true", "(auc).examples: expected"),
    ],
)
def test_a_bad_threshold_is_refused_at_start_naming_the_key(keys, message):
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY.format(keys=keys))
    assert "rules[0] (fraud).checks[0] (auc)" in str(caught.value) and message in str(caught.value), str(caught.value)


def test_a_good_threshold_binds_to_its_dataset():
    policy = parse_policy(
        POLICY.format(keys="metric: recent.rmse, threshold: 2, min_relative_change: 0.1, greater_is_better: false")
    )
    [check] = policy.rules[0].checks
    assert isinstance(check, BehaviourCheck) and check.on == "recent" and check.limit_number == "rmse"
    assert check.limit == Threshold("recent.rmse", False, 2.0, None, 0.1) and check.expression is None
    assert parse_threshold({"expression": "x > 1"}, "w") is None
