"""The demo's policy as Checkpoint loads it (``demo/data.py``): the fraud rule's rollback fast
path, and a one-off freeze written relative to the demo's start that holds at once and is over
a few minutes later, whatever the weekday."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from checkpoint.demo.data import (
    FREEZE_MINUTES,
    FREEZE_MODEL,
    FREEZE_NAME,
    PIPELINE_ALIAS,
    PIPELINE_MODEL,
    PIPELINE_STATUS,
    freeze_window,
    write_policy,
)
from checkpoint.policy_file import from_env


def test_the_demo_policy_gives_rollbacks_a_fast_path(tmp_path):
    policy = from_env({"CHECKPOINT_POLICY_FILE": str(write_policy(tmp_path, datetime.now(UTC)))}).rules
    ordinary = policy.rule_for("fraud-detector", "alias:champion")
    rollback = policy.rule_for("fraud-detector", "alias:champion", rollback=True)
    assert (ordinary.required_approvals, ordinary.allow_self_approval) == (1, False)
    assert (rollback.required_approvals, rollback.allow_self_approval) == (1, True)
    assert (
        [c.name for c in rollback.checks]
        == [c.name for c in ordinary.checks]
        == ["auc-gate", "signature", "validated", "holdout-auc"]
    )


def test_the_pipelines_target_waits_for_its_status_and_nothing_else_does(tmp_path):
    """scripts/demo-pipeline's churn-model @champion needs ci/eval; the fraud story does not."""
    policy = from_env({"CHECKPOINT_POLICY_FILE": str(write_policy(tmp_path, datetime.now(UTC)))}).rules
    pipeline = policy.rule_for(PIPELINE_MODEL, f"alias:{PIPELINE_ALIAS}")
    assert [s.context for s in pipeline.required_statuses] == [PIPELINE_STATUS]
    assert (pipeline.required_approvals, pipeline.allow_self_approval) == (1, False)
    assert not policy.rule_for("fraud-detector", "alias:champion").required_statuses
    assert not policy.rule_for(PIPELINE_MODEL, "stage:Production").required_statuses


def test_the_demo_freeze_holds_from_its_start_for_a_few_minutes(tmp_path):
    start = datetime(2026, 12, 5, 23, 58, 30, tzinfo=UTC)  # a Saturday, just before midnight
    policy = from_env({"CHECKPOINT_POLICY_FILE": str(write_policy(tmp_path, start))}).rules
    begins, ends = freeze_window(start)
    assert ends == datetime(2026, 12, 6, 0, 3, tzinfo=UTC) == start.replace(second=0) + timedelta(minutes=FREEZE_MINUTES)
    hold = policy.frozen(FREEZE_MODEL, "alias:champion", start)
    assert hold is not None and (hold.freeze.name, hold.until) == (FREEZE_NAME, ends)
    assert policy.frozen(FREEZE_MODEL, "alias:champion", begins - timedelta(seconds=1)) is None
    assert policy.frozen(FREEZE_MODEL, "alias:champion", ends) is None, "half-open: at its end it is over"
    assert policy.frozen(FREEZE_MODEL, "alias:challenger", start) is None
    assert policy.frozen("fraud-detector", "alias:champion", start) is None, "the rollback story is not frozen"


def test_the_demo_scores_fraud_detector_on_its_holdout(tmp_path):
    """The fraud rule names the holdout the seed uploads, and gates on it without requiring it."""
    from checkpoint.demo.data import HOLDOUT_URI, holdout_frame

    rule = from_env({"CHECKPOINT_POLICY_FILE": str(write_policy(tmp_path, datetime.now(UTC)))}).rules.rule_for(
        "fraud-detector", "alias:champion"
    )
    [holdout] = rule.evaluation
    assert (holdout.name, holdout.uri, holdout.target, holdout.slices) == ("holdout", HOLDOUT_URI, "is_fraud", ("period",))
    gate = next(c for c in rule.checks if c.name == "holdout-auc")
    assert gate.kind == "behaviour" and not gate.required and gate.on == "holdout"  # type: ignore[attr-defined]
    frame = holdout_frame()
    assert len(frame) == 1000 and {"is_fraud", "period", "amount"} <= set(frame.columns)
    assert set(frame["period"]) == {"day", "night"} and set(frame["is_fraud"]) == {0, 1}
