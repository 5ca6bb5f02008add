"""Rollback, from hand-built event logs: which version a rollback puts back (the previous holder,
or one picked), the refusals (already true, never held that target or in that workspace), the
judgement of the version's files (the fast path's decision table, attack cases included), the
record, and the rule's ``rollback:`` key (parsed, refused when malformed, applied only to a
verified rollback)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from checkpoint.events import timeline
from checkpoint.review import rollback
from checkpoint.review.policy import FastPath, Policy, PolicyError, Rule
from checkpoint.review.policy_parsing import parse
from checkpoint.review.workflow_base import WorkflowError
from tests.support.timeline_log import Log, at

CHAMPION = "alias:champion"


def story(workspace: str = "") -> Log:
    """v1 → v2 → v3 on @champion through requests 1-3; v4 went to Production (request 4)."""
    log = Log()
    for minute, version in ((10, "1"), (20, "2"), (30, "3")):
        log.applied(minute, "set_alias", CHAMPION, version, workspace=workspace)
    log.applied(40, "transition", "stage:Production", "4", change={"stage": "Production"}, workspace=workspace)
    return log


def lanes(log: Log, workspace: str = "") -> list[timeline.Lane]:
    return timeline.build(log.events, log.asked, workspace)


def choose(to: str | None, holding=("3",), log: Log | None = None, workspace: str = "", target: str = CHAMPION):
    return rollback.choose(lanes(log or story(), workspace), "fraud", workspace, target, to, holding)


def refused(to: str | None, match: str, **kwargs) -> None:
    with pytest.raises(WorkflowError, match=match) as caught:
        choose(to, **kwargs)
    assert caught.value.status == 409 and caught.value.error_code == "INVALID_STATE"


# -- choosing what to put back --------------------------------------------------------------


def test_the_previous_holder_by_default():
    plan = choose(None)
    assert (plan.version, plan.held.request_id, plan.held.start, plan.held.until) == ("2", 2, at(20), at(30))
    assert plan.current is not None and plan.current.request_id == 3 and plan.replacing == ("3",)
    assert plan.title() == "Roll back fraud @champion to v2"
    text = plan.description("Hotfix for June")
    assert "Puts v2 back on alias:champion of fraud" in text and "(request #2)" in text
    assert "Undoes request #3 “Hotfix for June”, which put v3 there." in text


def test_an_earlier_holder_picked():
    plan = choose("1")
    assert (plan.version, plan.held.request_id, plan.held.until) == ("1", 1, at(20))


def test_the_most_recent_period_of_a_version_that_held_it_twice():
    log = story()
    log.applied(50, "set_alias", CHAMPION, "1")  # v1 again (request 5)
    log.applied(60, "set_alias", CHAMPION, "3")  # and v3 (request 6)
    plan = choose("1", log=log)
    assert (plan.held.request_id, plan.held.start, plan.held.until) == (5, at(50), at(60))
    assert choose(None, log=log).version == "1"  # the previous holder is the most recent one


def test_a_rollback_is_itself_an_earlier_holder():
    log = story()
    log.applied(50, "set_alias", CHAMPION, "2", rollback={"version": "2"})  # the rollback (request 5)
    plan = choose(None, holding=("2",), log=log)
    assert (plan.version, plan.held.how) == ("3", timeline.REQUEST)
    assert plan.current is not None and plan.current.how == timeline.ROLLBACK


def test_rolling_back_to_what_holds_it_now_is_already_true():
    refused("3", r"already true: v3 holds alias:champion of 'fraud' now; there is nothing to roll back")


def test_the_holder_in_mlflow_decides_what_is_current():
    """The log says v3, MLflow v2 (an outside change not seen yet): v2 is not "earlier"."""
    refused("2", "already true: v2 holds", holding=("2",))
    assert choose(None, holding=("2",)).version == "1"


@pytest.mark.parametrize(
    ("to", "target", "why"),
    [
        ("4", CHAMPION, "held stage:Production, never @champion"),
        ("9", CHAMPION, "never held anything"),
        ("1", "stage:Production", "held @champion, never Production"),
    ],
)
def test_a_version_that_never_held_that_target_is_refused(to, target, why):
    with pytest.raises(WorkflowError, match=rf"v{to} never held {target} of 'fraud' by Checkpoint's log") as caught:
        choose(to, target=target, holding=("4",) if target != CHAMPION else ("3",))
    assert "open an ordinary request" in caught.value.message, why


def test_a_version_that_held_it_in_another_workspace_is_refused():
    log = story(workspace="team-a")
    with pytest.raises(WorkflowError, match="no record of what held alias:champion of 'fraud' in workspace 'team-b'"):
        choose("2", log=log, workspace="team-b")
    with pytest.raises(WorkflowError, match="no record of what held alias:champion of 'fraud'"):
        choose("2", log=log)  # the default workspace is another one too
    assert choose("2", log=log, workspace="team-a").version == "2"


def test_nothing_earlier_to_put_back():
    log = Log()
    log.applied(10, "set_alias", CHAMPION, "1")
    refused(None, "no earlier holder of alias:champion of 'fraud' is known", holding=("1",), log=log)


def test_an_outside_change_period_is_an_earlier_holder():
    log = Log()
    log.outside(0, CHAMPION, "7", first_seen=True)
    log.applied(10, "set_alias", CHAMPION, "8")
    plan = choose(None, holding=("8",), log=log)
    assert (plan.version, plan.held.how, plan.held.request_id) == ("7", timeline.OUTSIDE, None)
    assert "(outside change)" in plan.description()


# -- judging the version's files (the fast path's decision table) ---------------------------

SNAP = {"name": "fraud", "version": "2", "run_id": "r2", "source": "s2", "digest": "a" * 64, "digest_partial": False}


@pytest.mark.parametrize(
    ("then", "now", "how", "verdict"),
    [
        (SNAP, SNAP, timeline.REQUEST, (True, "")),
        (SNAP, SNAP, timeline.ROLLBACK, (True, "")),
        (None, SNAP, timeline.OUTSIDE, (False, "through an outside change: its files then are unknown")),
        (SNAP, SNAP, timeline.BREAK_GLASS, (False, "through a break-glass apply")),
        ({**SNAP, "digest": None, "digest_error": "not served"}, SNAP, timeline.REQUEST, (False, "(not served)")),
        (SNAP, {**SNAP, "digest": None}, timeline.REQUEST, (False, "(no digest was recorded)")),
        (SNAP, {**SNAP, "digest_partial": True}, timeline.REQUEST, (False, "compared only in part")),
    ],
    ids=["request", "rollback", "outside-change", "break-glass", "no-digest-then", "no-digest-now", "partial"],
)
def test_whether_the_version_is_provably_the_one_that_held_it(then, now, how, verdict):
    plan = replace(choose(None), held=replace(choose(None).held, how=how))
    verified, reason = rollback.judge(plan, then, now)
    assert verified is verdict[0] and verdict[1] in reason


@pytest.mark.parametrize(
    ("now", "match"),
    [
        (None, r"v2 of 'fraud' no longer exists in MLflow \(deleted since it held alias:champion\)"),
        (
            {**SNAP, "digest": "b" * 64},
            r"the files of v2 of 'fraud' changed since it last held alias:champion \(digest a{12} → b{12}\)",
        ),
        ({**SNAP, "run_id": "other"}, r"v2 of 'fraud' is not the version that held alias:champion \(its run or source differs\)"),
        ({**SNAP, "source": "s3://swapped"}, "its run or source differs"),
    ],
    ids=["deleted", "files-changed", "other-run", "other-source"],
)
def test_a_version_that_is_not_what_held_it_is_refused(now, match):
    with pytest.raises(WorkflowError, match=match) as caught:
        rollback.judge(choose(None), SNAP, now)
    assert caught.value.status == 409


def test_the_record_and_the_line_above_the_diff():
    plan = choose(None)
    found = rollback.record(plan, SNAP, True, "")
    assert found == {
        "target": CHAMPION,
        "version": "2",
        "replacing": ["3"],
        "undoes_request_id": 3,
        "held": {"from": at(20).isoformat(), "until": at(30).isoformat(), "how": "request", "request_id": 2},
        "digest": "a" * 64,
        "verified": True,
        "reason": "",
    }
    assert rollback.headline(found) == "rollback: v2 returns, replacing v3"
    assert rollback.headline({**found, "replacing": []}) == "rollback: v2 returns, replacing nothing"


class Item:
    def __init__(self, found) -> None:
        self.rollback = found


@pytest.mark.parametrize(
    ("found", "expected"),
    [({"verified": True}, True), ({"verified": False}, False), ({"verified": "yes"}, False), (None, False), ("x", False)],
)
def test_only_a_record_saying_verified_true_is_a_verified_rollback(found, expected):
    assert rollback.verified(Item(found)) is expected
    assert rollback.verified(object()) is False


# -- the rule's rollback: key ---------------------------------------------------------------


def rules(**fast) -> Policy:
    return parse([{"name": "fraud production", "models": ["fraud*"], "targets": [CHAMPION], "required_approvals": 2, **fast}])


def test_the_fast_path_applies_to_a_verified_rollback_only():
    policy = rules(rollback={"required_approvals": 0})
    assert policy.rules[0].rollback == FastPath(0, False)
    ordinary, fast = policy.rule_for("fraud", CHAMPION), policy.rule_for("fraud", CHAMPION, rollback=True)
    assert (ordinary.required_approvals, ordinary.fast_path) == (2, False)
    assert (fast.required_approvals, fast.fast_path, fast.name) == (0, True, "fraud production")
    assert policy.status("fraud", CHAMPION, set(), rollback=True).met
    assert not policy.status("fraud", CHAMPION, set()).met  # the same request, not a verified rollback
    assert "a genuine rollback applies at once" in ordinary.describe()
    assert fast.describe().startswith("fraud production (rollback fast path): 0 approval(s)")


def test_a_fast_path_may_let_the_author_approve_their_own_rollback():
    policy = rules(rollback={"required_approvals": 1, "allow_self_approval": True})
    assert policy.may_review("alice", "alice", "fraud", CHAMPION, rollback=True) is None
    assert "does not allow approving your own request" in (policy.may_review("alice", "alice", "fraud", CHAMPION) or "")
    status = policy.status("fraud", CHAMPION, {"alice"}, rollback=True)
    assert (status.count, status.required, status.met) == (1, 1, True)


def test_without_the_key_a_rollback_is_reviewed_like_any_request():
    policy = rules()
    assert policy.rule_for("fraud", CHAMPION, rollback=True) == policy.rule_for("fraud", CHAMPION)
    assert not policy.status("fraud", CHAMPION, set(), rollback=True).met
    assert Rule().for_rollback() == Rule()


@pytest.mark.parametrize(
    ("fast", "pattern"),
    [
        ("fast", r"rules\[0\] \(fraud production\)\.rollback: expected a mapping"),
        ({"required_approval": 0}, r"rules\[0\] \(fraud production\)\.rollback: unknown key\(s\) required_approval"),
        ({"required_approvals": -1}, r"\.rollback\.required_approvals: expected a number from 0 to 20, got -1"),
        ({"required_approvals": 21}, r"\.rollback\.required_approvals: expected a number from 0 to 20"),
        ({"required_approvals": "all"}, r"\.rollback\.required_approvals: expected a number from 0 to 20, got 'all'"),
        ({"required_approvals": True}, r"\.rollback\.required_approvals: expected a number from 0 to 20, got True"),
        ({"allow_self_approval": "yes"}, r"\.rollback\.allow_self_approval: expected true or false, got 'yes'"),
    ],
)
def test_a_malformed_rollback_key_is_refused_naming_the_rule_and_key(fast, pattern):
    with pytest.raises(PolicyError, match=pattern):
        rules(rollback=fast)


def test_a_fast_path_needing_more_reviewers_than_listed_is_refused():
    with pytest.raises(PolicyError, match=r"rollback\.required_approvals: 3 approvals but only 2 reviewers listed"):
        parse([{"name": "r", "reviewers": ["bob", "dave"], "rollback": {"required_approvals": 3}}])
