"""A rule's ``evaluation:`` key and the ``behaviour`` checks over it (``review/behaviour/evaluation.py``,
``review/checks/behaviour.py``): read into data, every malformed entry refused naming its key."""

from __future__ import annotations

import pytest

from checkpoint.review.behaviour.evaluation import EvaluationSet, entries_key, from_data
from checkpoint.review.checks import BehaviourCheck
from checkpoint.review.policy import PolicyError
from checkpoint.review.policy_parsing import parse

HOLDOUT = {"name": "holdout", "uri": "runs:/0123/eval/holdout.parquet", "target": "is_fraud", "slices": ["country"]}


def rule(evaluation=None, checks=None):
    item: dict = {"name": "fraud"}
    if evaluation is not None:
        item["evaluation"] = evaluation
    if checks is not None:
        item["checks"] = checks
    [loaded] = parse([item]).rules
    return loaded


def test_entries_are_read_with_their_defaults_and_round_trip_as_data():
    loaded = rule([HOLDOUT, {"name": "recent", "uri": "mlflow-artifacts:/data/recent.csv", "max_rows": 500}])
    holdout, recent = loaded.evaluation
    assert holdout == EvaluationSet("holdout", HOLDOUT["uri"], "is_fraud", ("country",), 100_000)
    assert (recent.target, recent.slices, recent.max_rows, recent.format) == (None, (), 500, ".csv")
    assert from_data([e.as_data() for e in loaded.evaluation]) == loaded.evaluation
    assert entries_key(loaded.evaluation) != entries_key(loaded.evaluation[:1])


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"name": "x"}, r"^rules\[0\] \(fraud\)\.evaluation: expected a list"),
        ([HOLDOUT | {"rows": 3}], r"evaluation\[0\]: unknown key\(s\) rows; known: max_rows, name, slices, target, uri$"),
        ([HOLDOUT | {"name": "1st"}], r"evaluation\[0\]\.name: expected a letter"),
        ([HOLDOUT | {"uri": "s3://bucket/x.parquet"}], r"evaluation\[0\] \(holdout\)\.uri: expected runs:/"),
        ([HOLDOUT | {"uri": "file:///etc/passwd.csv"}], r"\.uri: expected runs:/"),
        ([HOLDOUT | {"uri": "runs:/0123/eval/holdout.json"}], r"\.uri: expected a file ending in \.parquet or \.csv"),
        ([HOLDOUT | {"uri": "runs:/0123/../x.csv"}], r"\.uri: expected a plain path"),
        ([HOLDOUT | {"target": ""}], r"\(holdout\)\.target: expected the name of the column"),
        ([HOLDOUT | {"slices": [1]}], r"\(holdout\)\.slices: expected a list"),
        ([HOLDOUT | {"slices": ["is_fraud"]}], r"\(holdout\)\.slices: 'is_fraud' is the target"),
        ([HOLDOUT | {"max_rows": 0}], r"\(holdout\)\.max_rows: expected a whole number from 1 to 1,000,000"),
        ([HOLDOUT | {"max_rows": True}], r"\.max_rows: expected a whole number"),
        ([HOLDOUT, HOLDOUT], r"evaluation\[1\]\.name: 'holdout' is used twice"),
    ],
)
def test_a_malformed_entry_is_refused_naming_its_key(evaluation, message):
    with pytest.raises(PolicyError, match=message):
        rule(evaluation)


def test_behaviour_checks_are_bound_to_the_rules_datasets():
    loaded = rule(
        [HOLDOUT, HOLDOUT | {"name": "recent"}],
        [
            {"name": "auc", "kind": "behaviour", "expression": "roc_auc >= champion - 0.005"},
            {"name": "agree", "kind": "behaviour", "expression": "recent.agreement >= 0.95"},
            {"name": "fast", "kind": "behaviour", "expression": "p95_latency_ms <= champion * 1.2", "on": "recent"},
            {"name": "examples", "kind": "behaviour", "examples": "no errors", "required": False},
        ],
    )
    auc, agree, fast, examples = loaded.checks
    assert isinstance(auc, BehaviourCheck) and (auc.on, auc.number, auc.local) == ("holdout", "roc_auc", False)
    assert (agree.on, agree.number) == ("recent", "agreement")  # type: ignore[attr-defined]
    assert (fast.on, fast.number) == ("recent", "p95_latency_ms")  # type: ignore[attr-defined]
    assert examples.examples and not examples.required  # type: ignore[attr-defined]
    assert auc.describe() == "roc_auc >= champion - 0.005 on holdout"


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ({"expression": "roc_auc >= 0.9"}, r"checks\[0\] \(g\)\.expression 'roc_auc >= 0.9': the rule has no evaluation"),
        ({"expression": "auc >= 0.9"}, r"\.expression 'auc >= 0.9': 'auc' is not a number the diff measures; known: agreement"),
        ({"expression": "other.f1 >= 0.9"}, r"no dataset named 'other' in the rule's evaluation \(holdout\)"),
        ({"expression": "holdout.f1 >= 0.9", "on": "recent"}, r"names dataset 'holdout' but on: is 'recent'"),
        ({"expression": "agreement >= champion"}, r"agreement is about the pair; it has no champion value"),
        ({"expression": "f1 >= = 2"}, r"checks\[0\] \(g\)\.expression 'f1 >= = 2': "),
        ({"examples": "fine"}, r"checks\[0\] \(g\)\.examples: expected 'examples: no errors' alone"),
        ({"examples": "no errors", "expression": "f1 > 0"}, r"\.examples: expected 'examples: no errors' alone"),
        ({}, r"checks\[0\] \(g\)\.expression: expected text such as"),
        ({"expression": "f1 > 0", "on": 3}, r"checks\[0\] \(g\)\.on: expected the name"),
        ({"expression": "f1 > 0", "url": "x"}, r"unknown key\(s\) url for a behaviour check; known: examples, expression"),
    ],
)
def test_a_malformed_behaviour_check_is_refused_naming_its_key(check, message):
    evaluation = [HOLDOUT] if "the rule has no evaluation" not in message else None
    with pytest.raises(PolicyError, match=message):
        rule(evaluation, [{"name": "g", "kind": "behaviour"} | check])
