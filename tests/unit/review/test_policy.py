"""The review policy as tables: which rule a request falls under, who may review it, how many
approvals it needs, and every refusal of a bad rule in the policy file (the key path named)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checkpoint.identity import ANONYMOUS, User
from checkpoint.review.behaviour.evaluation import EvaluationSet
from checkpoint.review.policy import Policy, PolicyError, Rule, Status, target_matches

FRAUD = Rule(
    name="fraud production",
    models=("fraud-*",),
    targets=("stage:Production", "alias:champion"),
    reviewers=("bob", "dave"),
    required_approvals=2,
)
FRAUD_V2 = Rule(name="fraud-v2 exact", models=("fraud-v2",), targets=("stage:Production",), reviewers=("erin",))
ANY_CHAMPION = Rule(name="any champion", targets=("alias:champion",), groups=("ml-leads",))
TEAM_B = Rule(name="team b", workspaces=("team-b",), required_approvals=3)
SELF_OK = Rule(name="sandbox", models=("sandbox-*",), allow_self_approval=True)
EVERYONE = Rule(name="everyone", models=("audit-*",), reviewers=("bob", "carol"), required_approvals="all")
POLICY = Policy(rules=(FRAUD, FRAUD_V2, ANY_CHAMPION, TEAM_B, SELF_OK, EVERYONE), default=Rule(required_approvals=1))


@pytest.mark.parametrize(
    ("model", "target", "workspace", "rule"),
    [
        ("fraud-v1", "stage:Production", "", "fraud production"),
        ("fraud-v2", "stage:Production", "", "fraud-v2 exact"),  # more literal characters win
        ("fraud-v2", "alias:champion", "", "fraud production"),
        ("churn", "alias:champion", "", "any champion"),
        ("churn", "alias:CHAMPION", "", "any champion"),  # aliases compare in lower case
        ("fraud-v1", "stage:production", "", "fraud production"),  # so do stages
        ("churn", "stage:Staging", "", "default"),
        ("churn", "stage:Staging", "team-b", "team b"),
        ("churn", "stage:Staging", "team-c", "default"),
        ("sandbox-1", "alias:challenger", "", "sandbox"),
    ],
)
def test_the_most_specific_rule_wins(model, target, workspace, rule):
    assert POLICY.rule_for(model, target, workspace).name == rule


def test_a_tie_goes_to_the_first_rule_in_the_file():
    first, second = Rule(name="first", models=("m-*",)), Rule(name="second", models=("m-?",))
    assert Policy(rules=(first, second)).rule_for("m-1", "alias:x").name == "first"
    assert Policy(rules=(second, first)).rule_for("m-1", "alias:x").name == "second"


def test_workspace_patterns_name_the_default_workspace_default():
    rule = Rule(name="home", workspaces=("default",))
    assert rule.matches("m", "alias:a", "") and not rule.matches("m", "alias:a", "team-b")
    assert Rule().matches("m", "alias:a", "team-b")  # no workspaces key: every workspace


@pytest.mark.parametrize(
    ("target", "pattern", "expected"),
    [
        ("stage:Production", "stage:production", True),
        ("stage:production", "stage:Production", True),
        ("alias:Champion", "alias:champ*", True),
        ("alias:prod-eu", "alias:PROD*", True),
        ("model:Fraud", "model:fraud", False),  # other targets are case-sensitive
        ("stage:Staging", "alias:Staging", False),
        ("alias:champion", "*", True),
        ("rename:new", "rename:*", True),
    ],
)
def test_target_matches(target, pattern, expected):
    assert target_matches(target, pattern) is expected


# (who, author, model, target, the reason they may not review or None, right check)
REVIEWERS = [
    ("anonymous", ANONYMOUS, "alice", "churn", "alias:x", "sign in (or pick a name) to review"),
    (
        "author",
        "alice",
        "alice",
        "churn",
        "alias:x",
        "alice opened this request and rule 'default' does not allow approving your own request",
    ),
    ("author-where-allowed", "alice", "alice", "sandbox-1", "alias:x", None),
    ("anyone-under-default", "carol", "alice", "churn", "alias:x", None),
    ("listed-reviewer", "bob", "alice", "fraud-v1", "stage:Production", None),
    (
        "unlisted",
        "carol",
        "alice",
        "fraud-v1",
        "stage:Production",
        "carol is not a reviewer under rule 'fraud production' (fraud production: 2 approval(s) from bob, dave; not the author)",
    ),
    (
        "listed-but-author",
        "bob",
        "bob",
        "fraud-v1",
        "stage:Production",
        "bob opened this request and rule 'fraud production' does not allow approving your own request",
    ),
]


@pytest.mark.parametrize(
    ("user", "author", "model", "target", "reason"), [r[1:] for r in REVIEWERS], ids=[r[0] for r in REVIEWERS]
)
def test_who_may_review(user, author, model, target, reason):
    assert POLICY.may_review(user, author, model, target) == reason


def test_groups_open_a_rule_to_their_members():
    lead = User("lee", groups=frozenset({"ml-leads"}))
    intern = User("ivy", groups=frozenset({"interns"}))
    assert POLICY.may_review(lead, "alice", "churn", "alias:champion") is None
    assert POLICY.may_review(intern, "alice", "churn", "alias:champion") == (
        "ivy is not a reviewer under rule 'any champion' (any champion: 1 approval(s) from group ml-leads; not the author)"
    )


def test_named_reviewers_never_let_anyone_approve():
    assert "not a reviewer" in POLICY.may_review("mallory", "alice", "fraud-v1", "stage:Production", named=("mallory",))


@pytest.mark.parametrize(
    ("user", "has_right", "reason"),
    [
        (User("carol"), True, None),
        (User("carol"), False, "carol may not review requests for 'churn' (needs MANAGE on the model in MLflow)"),
        (User("root", is_admin=True), False, None),  # an admin needs no MANAGE
    ],
)
def test_the_mlflow_right_check_applies_only_to_rules_that_list_nobody(user, has_right, reason):
    def right(who: User, model: str) -> bool:
        return has_right

    assert POLICY.may_review(user, "alice", "churn", "alias:x", right=right) == reason
    # A rule that lists reviewers decides on its own.
    assert POLICY.may_review(User("bob"), "alice", "fraud-v1", "stage:Production", right=lambda u, m: False) is None


@pytest.mark.parametrize(
    ("model", "target", "approvers", "named", "expected", "line"),
    [
        ("churn", "alias:x", set(), (), Status(0, 1, (), ()), "0 of 1 approvals"),
        ("churn", "alias:x", {"bob"}, (), Status(1, 1, ("bob",), ()), "1 of 1 approvals"),
        ("fraud-v1", "stage:Production", {"bob"}, (), Status(1, 2, ("bob",), ("dave",)), "1 of 2 approvals · awaiting dave"),
        ("fraud-v1", "stage:Production", {"dave", "bob"}, (), Status(2, 2, ("bob", "dave"), ()), "2 of 2 approvals"),
        (
            "fraud-v1",
            "stage:Production",
            set(),
            ("erin",),
            Status(0, 2, (), ("erin", "bob", "dave")),
            "0 of 2 approvals · awaiting erin, bob, dave",
        ),
        ("audit-1", "alias:x", {"bob"}, (), Status(1, 2, ("bob",), ("carol",), ("carol",)), "1 of 2 approvals · awaiting carol"),
        (
            "audit-1",
            "alias:x",
            {"bob", "carol"},
            ("erin",),
            Status(2, 3, ("bob", "carol"), ("erin",), ("erin",)),
            "2 of 3 approvals · awaiting erin",
        ),
        ("churn", "stage:Staging", {"a", "b"}, (), Status(2, 3, ("a", "b"), ()), "2 of 3 approvals"),
    ],
    ids=["none-yet", "met", "awaiting", "both", "named-first", "all-awaiting", "all-named-too", "workspace-rule"],
)
def test_status(model, target, approvers, named, expected, line):
    workspace = "team-b" if target == "stage:Staging" else ""
    got = POLICY.status(model, target, approvers, named, workspace)
    assert got == expected
    assert got.line() == line


@pytest.mark.parametrize(
    ("status", "met", "ready"),
    [
        (Status(1, 1, ("a",), ()), True, True),
        (Status(1, 2, ("a",), ("b",)), False, False),
        (Status(2, 2, ("a", "b"), (), ("c",)), False, False),  # 'all' still waits for c
        (Status(1, 1, ("a",), (), (), ("auc-gate",)), True, False),
    ],
)
def test_met_and_ready(status, met, ready):
    assert (status.met, status.ready) == (met, ready)


def test_blocked_checks_are_named_in_the_line():
    assert Status(1, 1, ("a",), (), (), ("auc",)).line() == "1 of 1 approvals · blocked by check auc"
    assert Status(0, 2, (), ("b",), (), ("auc", "sig")).line() == "0 of 2 approvals · awaiting b · blocked by checks auc, sig"


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (Rule(), "default: 1 approval(s) from anyone allowed to review; not the author"),
        (EVERYONE, "everyone: all listed reviewers from bob, carol; not the author"),
        (SELF_OK, "sandbox: 1 approval(s) from anyone allowed to review"),
        (TEAM_B, "team b: 3 approval(s) from anyone allowed to review; not the author in workspace team-b"),
        (ANY_CHAMPION, "any champion: 1 approval(s) from group ml-leads; not the author"),
    ],
)
def test_describe(rule, text):
    assert rule.describe() == text


# -- loading the rules from the policy file ------------------------------------------------------


def load(tmp_path: Path, rules: object, **env: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps({"rules": rules}))  # JSON is YAML
    return Policy.from_env({"CHECKPOINT_POLICY_FILE": str(path), **env})


def test_a_rule_is_loaded_with_its_defaults_and_canonical_stages(tmp_path):
    (rule,) = load(
        tmp_path,
        [
            {
                "name": "fraud",
                "models": "fraud-*",
                "targets": ["stage:production", "alias:champion"],
                "reviewers": [" bob ", "dave"],
                "required_approvals": 2,
            }
        ],
    ).rules
    assert rule == Rule(
        name="fraud",
        models=("fraud-*",),
        targets=("stage:Production", "alias:champion"),
        reviewers=("bob", "dave"),
        required_approvals=2,
    )
    (unnamed,) = load(tmp_path, [{"models": ["x"]}]).rules
    assert unnamed.name == "rules[0]" and unnamed.targets == ("*",) and unnamed.required_approvals == 1


def test_approvals_expire_after_is_loaded_and_described(tmp_path):
    (rule, lasting) = load(
        tmp_path,
        [{"name": "fraud", "models": ["fraud-*"], "approvals_expire_after": " 1d12h "}, {"name": "other", "models": ["x"]}],
    ).rules
    assert rule.approvals_expire_after == timedelta(hours=36)
    assert rule.describe() == "fraud: 1 approval(s) from anyone allowed to review; not the author; approvals expire after 1d12h"
    assert lasting.approvals_expire_after is None and "expire" not in lasting.describe()


EXPIRING = Rule(name="weekly", approvals_expire_after=timedelta(days=7))
APPROVED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "at", "expired"),
    [
        (EXPIRING, APPROVED_AT, False),
        (EXPIRING, APPROVED_AT + timedelta(days=7) - timedelta(microseconds=1), False),
        (EXPIRING, APPROVED_AT + timedelta(days=7), True),  # exactly the limit: too old
        (EXPIRING, APPROVED_AT + timedelta(days=30), True),
        (Rule(), APPROVED_AT + timedelta(days=3650), False),  # without the key, never
    ],
)
def test_an_approval_expires_at_its_rules_limit(rule, at, expired):
    assert rule.expired(APPROVED_AT, at) is expired
    assert rule.expires_at(APPROVED_AT) == (APPROVED_AT + timedelta(days=7) if rule.approvals_expire_after else None)


def test_the_policy_names_its_expiring_rules():
    assert Policy(rules=(FRAUD, EXPIRING)).expiring == (EXPIRING,)
    assert POLICY.expiring == ()


def test_the_default_rule_comes_from_the_environment(tmp_path):
    policy = Policy.from_env({"CHECKPOINT_REQUIRED_APPROVALS": " 2 ", "CHECKPOINT_ALLOW_SELF_APPROVAL": "yes"})
    assert policy.default == Rule(required_approvals=2, allow_self_approval=True)
    assert policy.required_approvals == 2 and policy.rules == ()


BAD_RULES = [
    ("not-a-list", {"name": "x"}, r"rules: expected a list, got dict"),
    ("not-a-mapping", ["fraud"], r"rules\[0\]: expected a mapping with models, targets, reviewers"),
    (
        "unknown-key",
        [{"modles": ["x"]}],
        r"rules\[0\]: unknown key\(s\) modles; known: allow_self_approval, approvals_expire_after, checks, evaluation, groups",
    ),
    ("old-required-checks", [{"required_checks": ["a"]}], r"rules\[0\]\.required_checks: replaced by 'checks'"),
    (
        "approvals-zero",
        [{"required_approvals": 0}],
        r"rules\[0\]\.required_approvals: expected a number from 1 to 20 or 'all', got 0",
    ),
    ("approvals-bool", [{"required_approvals": True}], r"rules\[0\]\.required_approvals: expected a number .* got True"),
    ("approvals-word", [{"required_approvals": "two"}], r"got 'two'"),
    ("all-without-reviewers", [{"required_approvals": "all"}], r"rules\[0\]\.required_approvals: 'all' needs a reviewers list"),
    (
        "more-than-listed",
        [{"reviewers": ["bob"], "required_approvals": 2}],
        r"rules\[0\]\.required_approvals: 2 approvals but only 1 reviewers listed",
    ),
    (
        "self-approval-word",
        [{"allow_self_approval": "yes"}],
        r"rules\[0\]\.allow_self_approval: expected true or false, got 'yes'",
    ),
    ("empty-reviewer", [{}, {"reviewers": ["bob", " "]}], r"rules\[1\]\.reviewers: expected a list of non-empty strings"),
    ("models-number", [{"models": [3]}], r"rules\[0\]\.models: expected a list of non-empty strings, got \[3\]"),
    (
        "unknown-stage",
        [{"targets": ["stage:Prod"]}],
        r"rules\[0\]\.targets: 'stage:Prod' names no stage; stages are None, Staging",
    ),
    ("bad-workspace", [{"workspaces": ["Team-B"]}], r"rules\[0\]\.workspaces: 'Team-B' is not an MLflow workspace name"),
    (
        "bad-check",
        [{"name": "fraud", "checks": [{"name": "auc", "kind": "metric", "expression": "val_auc >="}]}],
        r"rules\[0\] \(fraud\)\.checks\[0\] \(auc\)\.expression",
    ),
    (
        "expiry-without-unit",
        [{"name": "fraud", "approvals_expire_after": 7}],
        r"rules\[0\] \(fraud\)\.approvals_expire_after: 7 has no unit",
    ),
    (
        "expiry-unknown-unit",
        [{"approvals_expire_after": "7 days"}],
        r"rules\[0\]\.approvals_expire_after: expected a duration such as 90m, 24h, 7d, 2w or 1d12h, got '7 days'",
    ),
    ("expiry-months", [{"approvals_expire_after": "1M"}], r"rules\[0\]\.approvals_expire_after: '1M': unknown unit 'M'"),
    ("expiry-zero", [{"approvals_expire_after": "0d"}], r"rules\[0\]\.approvals_expire_after: '0d': a duration must be longer"),
    ("expiry-list", [{"approvals_expire_after": ["7d"]}], r"rules\[0\]\.approvals_expire_after: expected a duration"),
]


@pytest.mark.parametrize(("rules", "pattern"), [b[1:] for b in BAD_RULES], ids=[b[0] for b in BAD_RULES])
def test_a_bad_rule_is_refused_with_its_key_path(tmp_path, rules, pattern):
    with pytest.raises(ValueError, match=pattern):
        load(tmp_path, rules)


@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        ({"CHECKPOINT_REQUIRED_APPROVALS": "0"}, r"CHECKPOINT_REQUIRED_APPROVALS='0': expected a whole number from 1 to 20"),
        ({"CHECKPOINT_REQUIRED_APPROVALS": "21"}, r"CHECKPOINT_REQUIRED_APPROVALS='21'"),
        ({"CHECKPOINT_REQUIRED_APPROVALS": "one"}, r"CHECKPOINT_REQUIRED_APPROVALS='one'"),
        ({"CHECKPOINT_ALLOW_SELF_APPROVAL": "maybe"}, r"CHECKPOINT_ALLOW_SELF_APPROVAL='maybe': expected true or false"),
    ],
)
def test_a_bad_default_is_refused_with_the_variable_named(env, pattern):
    with pytest.raises(ValueError, match=pattern):
        Policy.from_env(env)


def test_policy_rules_may_name_workspaces(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "rules:\n"
        "  - {name: everywhere, targets: ['alias:champion'], required_approvals: 1}\n"
        "  - {name: b-only, workspaces: [team-b], targets: ['alias:champion'], required_approvals: 2}\n"
        "  - {name: default-only, workspaces: [default], models: ['fraud'], required_approvals: 3}\n"
    )
    policy = Policy.from_env({"CHECKPOINT_POLICY_FILE": str(path)})
    assert policy.rule_for("m", "alias:champion", "team-b").name == "b-only"
    assert policy.rule_for("m", "alias:champion", "team-a").name == "everywhere"
    assert policy.rule_for("m", "alias:champion").name == "everywhere"
    assert policy.rule_for("fraud", "stage:Production").name == "default-only"
    assert policy.rule_for("fraud", "stage:Production", "team-b").name == "default"
    path.write_text("rules:\n  - {name: typo, workspaces: [Team-B]}\n")
    with pytest.raises(PolicyError, match="workspaces"):
        Policy.from_env({"CHECKPOINT_POLICY_FILE": str(path)})


def test_policy_stage_targets_are_canonical_and_checked(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - name: s\n    targets: ['stage:PRODUCTION', 'stage:stag*']\n    reviewers: [dave]\n")
    loaded = Policy.from_env({"CHECKPOINT_POLICY_FILE": str(policy)})
    assert loaded.rules[0].targets[0] == "stage:Production"
    assert loaded.rule_for("m", "stage:Production").name == "s"
    assert loaded.rule_for("m", "stage:Staging").name == "s"  # patterns match stages in any case
    assert loaded.rule_for("m", "alias:Production").name == "default"
    policy.write_text("rules:\n  - name: a\n    targets: ['alias:champion']\n    reviewers: [dave]\n")
    assert Policy.from_env({"CHECKPOINT_POLICY_FILE": str(policy)}).rule_for("m", "alias:CHAMPION").name == "a"
    policy.write_text("rules:\n  - name: s\n    targets: ['stage:Prodution']\n")
    with pytest.raises(ValueError, match="names no stage"):
        Policy.from_env({"CHECKPOINT_POLICY_FILE": str(policy)})


def test_named_reviewers_only_join_the_awaited_list():
    """The rule decides; ``named`` never lets anyone in."""
    policy = Policy.from_env({})
    no_manage = lambda user, model: False  # noqa: E731 - mlflow mode's right, refused
    refusal = policy.may_review(User("carol"), "alice", "m", "alias:champion", named=("carol",), right=no_manage)
    assert refusal and "MANAGE" in refusal
    leads = Policy(rules=(Rule(name="leads", groups=("ml-leads",)),))
    outsider = User("eve", groups=frozenset({"interns"}))
    assert "not a reviewer" in leads.may_review(outsider, "alice", "m", "alias:champion", named=("eve",))
    assert leads.may_review(User("lee", groups=frozenset({"ml-leads"})), "alice", "m", "alias:champion") is None
    status = leads.status("m", "alias:champion", set(), named=("eve",))
    assert status.awaited == ("eve",)  # still shown as asked


def test_the_datasets_of_a_model_join_its_rules_by_name_first_wins():
    """The compare page's datasets: every rule whose models (and workspaces) match, whatever its
    targets, in file order then the default; a name given twice keeps its first entry."""
    holdout = EvaluationSet("holdout", "runs:/1/eval/holdout.parquet", "label")
    other_holdout = EvaluationSet("holdout", "runs:/2/eval/other.parquet")
    recent = EvaluationSet("recent", "mlflow-artifacts:/data/recent.csv")
    team = EvaluationSet("team", "runs:/3/t.csv")
    policy = Policy(
        rules=(
            Rule(name="staging", models=("fraud-*",), targets=("stage:Staging",), evaluation=(holdout,)),
            Rule(name="prod", models=("fraud-detector",), targets=("alias:champion",), evaluation=(other_holdout, recent)),
            Rule(name="team b", models=("fraud-*",), workspaces=("team-b",), evaluation=(team,)),
            Rule(name="churn", models=("churn",), evaluation=(recent,)),
        ),
        default=Rule(evaluation=(team,)),
    )
    assert policy.evaluation_for("fraud-detector") == (holdout, recent, team)
    assert policy.evaluation_for("fraud-other") == (holdout, team)
    assert policy.evaluation_for("fraud-other", "team-b") == (holdout, team)
    assert Policy(rules=policy.rules).evaluation_for("fraud-other") == (holdout,)
    assert Policy(rules=policy.rules).evaluation_for("spam") == ()
