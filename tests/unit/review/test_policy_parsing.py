"""Reading the policy file's rules (``review/policy_parsing.py``): every key into a Rule, and
every malformed one refused naming its path. The file itself (YAML, the default rule from the
environment) is ``test_policy_file.py``; what a loaded rule means is ``test_policy.py``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from checkpoint.review.policy import FastPath, Policy, PolicyError, Rule
from checkpoint.review.policy_parsing import parse, target_pattern


def test_no_rules_key_leaves_the_default_alone():
    default = Rule(name="default", required_approvals=2)
    assert parse(None, default) == Policy(rules=(), default=default)


def test_every_key_of_a_rule_is_read():
    [rule] = parse(
        [
            {
                "name": "fraud production",
                "models": "fraud-*",
                "targets": ["stage:production", "alias:champion"],
                "workspaces": ["team-b"],
                "reviewers": [" bob ", "dave"],
                "required_approvals": 2,
                "allow_self_approval": True,
                "approvals_expire_after": "1d12h",
                "rollback": {"required_approvals": 0},
                "checks": [{"name": "signature", "kind": "signature"}],
            }
        ]
    ).rules
    assert (rule.name, rule.models, rule.targets, rule.workspaces) == (
        "fraud production",
        ("fraud-*",),
        ("stage:Production", "alias:champion"),
        ("team-b",),
    )
    assert (rule.reviewers, rule.required_approvals, rule.allow_self_approval) == (("bob", "dave"), 2, True)
    assert rule.approvals_expire_after == timedelta(days=1, hours=12)
    assert rule.rollback == FastPath(0, False)
    assert [c.name for c in rule.checks] == ["signature"]


def test_a_rule_without_keys_gets_the_defaults():
    [rule] = parse([{}]).rules
    assert (rule.name, rule.models, rule.targets, rule.required_approvals, rule.rollback) == ("rules[0]", ("*",), ("*",), 1, None)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"name": "x"}, r"^rules: expected a list, got dict$"),
        (["fraud"], r"^rules\[0\]: expected a mapping"),
        ([{}, {"reviewer": ["bob"]}], r"^rules\[1\]: unknown key\(s\) reviewer; known: "),
        ([{"required_checks": ["x"]}], r"^rules\[0\]\.required_checks: replaced by 'checks'"),
        ([{"name": "r", "rollback": {"required_approvals": 21}}], r"^rules\[0\] \(r\)\.rollback\.required_approvals"),
        ([{"rollback": {"approvals": 0}}], r"^rules\[0\]\.rollback: unknown key\(s\) approvals"),
        ([{"rollback": True}], r"^rules\[0\]\.rollback: expected a mapping"),
        ([{"models": [""]}], r"^rules\[0\]\.models: expected a list of non-empty strings"),
    ],
)
def test_a_malformed_rule_is_refused_naming_its_path(items, message):
    with pytest.raises(PolicyError, match=message):
        parse(items)


@pytest.mark.parametrize(
    ("pattern", "loaded"),
    [
        ("stage:PRODUCTION", "stage:Production"),
        ("stage: staging ", "stage:Staging"),
        ("stage:Prod*", "stage:Prod*"),  # a pattern is left to match
        ("alias:Champion", "alias:Champion"),  # aliases compare in lower case when matched
        ("model:prod.*", "model:prod.*"),
    ],
)
def test_target_patterns_spell_a_literal_stage_canonically(pattern, loaded):
    assert target_pattern(pattern, "rules[0]") == loaded


def test_a_target_naming_no_stage_is_refused():
    with pytest.raises(PolicyError, match=r"^freezes\[1\]\.targets: 'stage:Prodution' names no stage"):
        target_pattern("stage:Prodution", "freezes[1]")
