"""The request page's summary in words (issue 17 §3): what moves, who asks and who is awaited,
checks and CI statuses in counts, and the diff in one line."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from checkpoint.review.diff import compute_diff
from checkpoint.review.diff.types import ColumnSpec, Signature, VersionInfo
from checkpoint.review.policy import Status
from checkpoint.web.summary import (
    approvals,
    checks_line,
    decided,
    diff_line,
    diff_parts,
    keyed_part,
    metrics_part,
    moves,
    statuses_line,
    summarise,
)

OPENED = datetime(2026, 12, 4, 10, 5, tzinfo=UTC)


def request(**fields) -> SimpleNamespace:
    base = {
        "id": 7,
        "kind": "set_alias",
        "model_name": "fraud-detector",
        "version": "3",
        "target": "alias:champion",
        "change": {"kind": "set_alias", "name": "fraud-detector", "alias": "champion", "version": "3"},
        "challenger": {"name": "fraud-detector", "version": "3"},
        "champion": {"name": "fraud-detector", "version": "1"},
        "author": "alice",
        "state": "open",
        "state_reason": "",
        "workspace": "",
        "created_at": OPENED,
    }
    return SimpleNamespace(**{**base, **fields})


def check(name: str, status: str, required: bool = True) -> SimpleNamespace:
    return SimpleNamespace(name=name, status=status, required=required)


def posted(context: str, state: str, required: bool = True) -> SimpleNamespace:
    return SimpleNamespace(status=SimpleNamespace(context=context, state=state), required=required)


@pytest.mark.parametrize(
    ("fields", "champion", "line"),
    [
        ({}, True, "fraud-detector: @champion v1 → v3"),
        ({}, {"name": "fraud-detector", "version": "2"}, "fraud-detector: @champion v2 → v3"),  # the diff's champion
        ({"champion": None}, True, "fraud-detector: @champion (none) → v3"),
        ({}, None, "fraud-detector: @champion (none) → v3"),
        (
            {"kind": "transition", "target": "stage:Production", "change": {}, "champion": {"version": "5"}},
            True,
            "fraud-detector: Production v5 → v3",
        ),
        ({"workspace": "team-b"}, True, "[team-b] fraud-detector: @champion v1 → v3"),
        (
            {
                "kind": "delete_alias",
                "version": None,
                "change": {"kind": "delete_alias", "name": "fraud-detector", "alias": "champion"},
            },
            True,
            "fraud-detector: @champion (held v1) → removed",
        ),
        (
            {
                "kind": "create_version",
                "model_name": "prod.fraud-detector",
                "target": "model:prod.fraud-detector",
                "version": "2",
                "challenger": {"name": "fraud-detector", "version": "2"},
                "champion": None,
            },
            True,
            "prod.fraud-detector: new version from fraud-detector v2",
        ),
        (
            {
                "kind": "set_tag",
                "version": None,
                "target": "tag:validated",
                "change": {"kind": "set_tag", "name": "fraud-detector", "key": "validated", "value": "yes"},
            },
            True,
            "set tag validated to 'yes' on registered model fraud-detector",
        ),
    ],
)
def test_what_moves_in_words(fields, champion, line):
    assert moves(request(**fields), champion) == line


def test_a_copy_names_the_latest_version_there():
    copy = request(kind="create_version", model_name="prod.fd", target="model:prod.fd", version="2", challenger={"name": "fd"})
    assert moves(copy, {"name": "prod.fd", "version": "4"}) == "prod.fd: new version from fd v2 (latest there: v4)"


@pytest.mark.parametrize(
    ("status", "state", "line"),
    [
        (Status(0, 2, (), ("bob", "carol")), "open", "Rule gated: 0 of 2 approvals, awaiting bob, carol"),
        (Status(1, 2, ("carol",), ("bob",)), "open", "Rule gated: 1 of 2 approvals (carol), awaiting bob"),
        (Status(0, 1, (), ()), "open", "Rule gated: 0 of 1 approval, awaiting anyone the rule allows"),
        (Status(1, 1, ("bob",), ()), "open", "Rule gated: 1 of 1 approval (bob): enough"),
        (Status(1, 1, ("bob",), ()), "applied", "Rule gated: 1 of 1 approval (bob)"),
        (Status(0, 1, (), ()), "withdrawn", "Rule gated: 0 of 1 approval"),
    ],
)
def test_the_rule_and_who_is_awaited(status, state, line):
    assert approvals("gated", status, state) == line


def test_a_decided_request_says_how():
    assert decided("open") is None and decided("approved") is None
    assert decided("applied") == "Applied."
    assert decided("applied", "applied") == "Applied."  # the demo's seeded #1 read "Applied: applied."
    assert decided("withdrawn", "Withdrawn.") == "Withdrawn."
    assert decided("rejected", "rejected by bob ") == "Rejected: rejected by bob."


@pytest.mark.parametrize(
    ("checks", "line"),
    [
        ([], None),
        ([check("a", "pass"), check("b", "pass"), check("auc-gate", "fail")], "2 of 3 passing, 1 failing: auc-gate"),
        ([check("a", "pass")], "1 of 1 passing"),
        (
            [check("a", "fail"), check("b", "error"), check("c", "pending"), check("d", "fail", required=False)],
            "0 of 4 passing, 2 failing: a, d (optional), 1 in error: b, 1 pending: c",
        ),
    ],
)
def test_checks_in_counts(checks, line):
    assert checks_line(checks) == line


def test_statuses_in_counts_with_the_expected_ones():
    assert statuses_line([], []) is None
    missing = [SimpleNamespace(context="ci/build")]
    assert statuses_line([], missing) == "0 of 1 success, 1 expected: ci/build"
    standing = [posted("ci/eval", "success"), posted("ci/tests", "failure"), posted("lint", "pending", required=False)]
    assert (
        statuses_line(standing, missing)
        == "1 of 4 success, 1 failing: ci/tests, 1 pending: lint (optional), 1 expected: ci/build"
    )


def version(number: str, **fields) -> VersionInfo:
    base = {"mlmodel_read": True, "requirements": {}, "metric_steps": {}, "metric_histories": {}}
    return VersionInfo(name="fd", version=number, run_id=f"r{number}", **{**base, **fields})


def test_the_diff_in_one_line():
    champion = version(
        "1",
        params={f"p{i}": "1" for i in range(8)},
        metrics={"auc": 0.9, "f1": 0.8, "recall": 0.7, "precision": 0.6, "loss": 0.5},
        signature=Signature(inputs=(ColumnSpec("amount", "double"), ColumnSpec("country", "string"))),
        requirements={"scikit-learn": "1.5.0"},
    )
    challenger = version(
        "3",
        params={**{f"p{i}": "2" for i in range(4)}, **{f"p{i}": "1" for i in range(4, 8)}, "new": "x"},
        metrics={"auc": 0.8, "f1": 0.7, "recall": 0.6, "precision": 0.7, "loss": 0.5},
        signature=Signature(inputs=(ColumnSpec("amount", "double"),)),
        requirements={"scikit-learn": "1.5.0"},
    )
    line = diff_line(compute_diff(challenger, champion))
    assert line == "1 breaking signature change · 3 metrics worse, 1 better · 5 params changed · requirements unchanged"


def test_the_diff_line_for_a_first_promotion_and_for_none():
    assert diff_line(None) is None
    first = compute_diff(version("1", metrics={"auc": 0.9}), None)
    assert diff_line(first) == "first promotion: nothing to compare against (1 metric logged)"
    assert diff_parts(first)["provenance"] == "no champion to compare"


def test_each_part_in_words():
    same = compute_diff(
        version("2", params={"a": "1"}, metrics={"auc": 0.9}), version("1", params={"a": "1"}, metrics={"auc": 0.9})
    )
    assert metrics_part(same.metrics) == "metrics the same"
    assert keyed_part(same.params, "param") == "params unchanged"
    assert keyed_part(None, "requirement") == "requirements unknown"
    parts = diff_parts(same)
    assert parts["signature"] == "no signature" and parts["tags"] == "tags unchanged"
    assert parts["provenance"] == "run id differs"
    empty = compute_diff(version("2"), version("1"))
    assert metrics_part(empty.metrics) == "no metrics" and keyed_part(empty.params, "param") == "no params"
    unknown = compute_diff(version("2", mlmodel_read=False), version("1"))
    assert diff_parts(unknown)["signature"] == "signature not readable"


def test_the_paragraph_reads_in_order_and_knows_whose_turn_it_is():
    status = Status(0, 2, (), ("bob", "carol"), blocked_by=("auc-gate",))
    common = {"champion": True, "rule_name": "gated", "status": status}
    summary = summarise(
        request(),
        champion=True,
        rule_name="gated",
        status=status,
        checks=[check("a", "pass"), check("b", "pass"), check("auc-gate", "fail")],
        diff="metrics the same",
        reader="bob",
        may_review=True,
    )
    assert summary.sentences() == [
        "fraud-detector: @champion v1 → v3, alice asked 2026-12-04 10:05 UTC.",
        "Rule gated: 0 of 2 approvals, awaiting bob, carol.",
        "Checks: 2 of 3 passing, 1 failing: auc-gate.",
        "Diff: metrics the same.",
    ]
    assert summary.your_turn and summary.checks_failing and not summary.statuses_failing and not summary.breaking
    assert summarise(request(), **{"diff": "1 breaking signature change · no metrics", **common}).breaking
    assert not summarise(request(), **{"diff": "2 signature changes, none breaking", **common}).breaking
    kept = dict(champion=True, rule_name="gated", status=Status(1, 2, ("bob",), ("carol",)), reader="bob", may_review=True)
    assert not summarise(request(), **kept).your_turn  # bob's approval stands already
    assert not summarise(request(state="applied"), **{**kept, "reader": "carol"}).your_turn


def test_the_pages_diff_line_is_kept_with_its_snapshot_not_computed_again():
    from checkpoint.review.diff_snapshots import PageDiff
    from checkpoint.web import ui

    computed = []

    def compute():
        computed.append(1)
        return compute_diff(version("2", metrics={"auc": 0.8}), version("1", metrics={"auc": 0.9}))

    source = (991, "key-of-both-sides", OPENED)
    assert (
        ui._diff_line(PageDiff(source=source, compute=compute)) == "no signature · 1 metric worse · no params · no requirements"
    )
    assert (
        ui._diff_line(PageDiff(source=source, compute=compute)) == "no signature · 1 metric worse · no params · no requirements"
    )
    assert computed == [1]  # the second page took the kept line
    assert ui._diff_line(PageDiff(error="the challenger (fd v2) no longer exists")) is None
