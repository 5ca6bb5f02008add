"""The behaviour check's verdict on a diff as the API shows it (``review/checks/behaviour.py``):
pending while the diff runs, an error when it failed, pass or fail by the expression otherwise."""

from __future__ import annotations

import pytest

from checkpoint.review.checks import BehaviourCheck, parse_expression

HOLDOUT = {
    "name": "holdout",
    "state": "done",
    "agreement": 0.97,
    "metrics": {"roc_auc": {"champion": 0.94, "challenger": 0.95}, "f1": {"champion": 0.8, "challenger": None}},
    "latency_ms": {"champion": {"p50": 1.0, "p95": 2.0}, "challenger": {"p50": 1.5, "p95": 2.6}},
}
DONE = {"state": "done", "reason": "", "datasets": [HOLDOUT], "examples": {"inputs": [{"example": "champion"}], "breaking": []}}


def check(text: str, number: str) -> BehaviourCheck:
    return BehaviourCheck("g", True, parse_expression(text), number=number, on="holdout")


@pytest.mark.parametrize(
    ("text", "number", "status", "reason"),
    [
        ("roc_auc >= champion - 0.005", "roc_auc", "pass", "holdout: roc_auc 0.95 ≥ champion 0.94 − 0.005 = 0.935"),
        ("roc_auc >= 0.96", "roc_auc", "fail", "holdout: roc_auc 0.95 is not ≥ 0.96"),
        ("agreement >= 0.95", "agreement", "pass", "holdout: agreement 0.97 ≥ 0.95"),
        ("p95_latency_ms <= champion * 1.2", "p95_latency_ms", "fail", "holdout: p95_latency_ms 2.6 is not ≤ champion 2 ×"),
        ("f1 >= 0.5", "f1", "fail", "f1 on holdout is not measured"),
        ("correlation >= 0.5", "correlation", "fail", "correlation on holdout is not measured"),
    ],
)
def test_an_expression_is_judged_on_its_dataset(text, number, status, reason):
    result = check(text, number).judge(DONE)
    assert result.status == status and result.reason.startswith(reason), result


def test_pending_until_the_diff_is_finished_then_errors_say_why():
    gate = check("roc_auc >= 0.9", "roc_auc")
    assert gate.judge({"state": "running", "datasets": []}).status == "pending"
    assert gate.judge(None).status == "error"
    failed = gate.judge({"state": "error", "reason": "the challenger could not be run: boom"})
    assert failed.status == "error" and "boom" in failed.reason
    broken = DONE | {"datasets": [{"name": "holdout", "state": "error", "error": "the dataset has no column label"}]}
    assert gate.judge(broken).reason == "holdout: the dataset has no column label"
    assert gate.judge(DONE | {"datasets": []}).status == "error"


def test_examples_no_errors():
    gate = BehaviourCheck("e", True, examples=True)
    assert gate.judge(DONE).status == "pass"
    breaking = {"inputs": [], "breaking": ["the challenger fails on the champion's input example: KeyError: b"]}
    verdict = gate.judge({"state": "error", "reason": "x", "examples": breaking})
    assert verdict.status == "fail" and "KeyError: b" in verdict.reason
    champion_fails = {"inputs": [{"example": "challenger", "champion": {"error": "x"}}], "breaking": []}
    assert gate.judge(DONE | {"examples": champion_fails}).status == "fail"
