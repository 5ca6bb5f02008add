"""The behavioural diff in a few numbers (``review/behaviour/summary.py``), as the
``behaviour_finished`` event and the webhooks carry it: the headline numbers per dataset,
bounded whatever the diff holds, with no row or feature of a dataset in it."""

from __future__ import annotations

import json
import math

from checkpoint.review.behaviour.summary import TEXT, line, summary

HOLDOUT = {
    "name": "holdout",
    "state": "done",
    "rows": 500,
    "digest": "ab" * 32,
    "read_at": "2026-12-04T17:00:00+00:00",
    "kind": "classes",
    "agreement": 0.97,
    "metrics": {"roc_auc": {"champion": 0.94, "challenger": 0.95}, "f1": {"champion": 0.8, "challenger": None}},
    "latency_ms": {"champion": {"p50": 1.0, "p95": 2.0}, "challenger": {"p50": 1.5, "p95": 2.5}},
    "disagreements": [{"row": 3, "features": {"card": "4111-1111"}}],
    "slices": [{"value": "fr", "rows": 3}],
}
SHOWN = {
    "state": "done",
    "reason": "",
    "examples": {
        "inputs": [{"example": "champion", "challenger": {"error": "boom"}}, {"example": "challenger"}],
        "breaking": ["b"],
    },
    "datasets": [HOLDOUT, {"name": "recent", "state": "error", "error": "recent: no file"}],
}


def test_the_headline_numbers_per_dataset():
    got = summary(SHOWN)
    assert got == {
        "state": "done",
        "reason": "",
        "examples": {"inputs": 2, "errors": 1, "breaking": ["b"]},
        "datasets": [
            {
                "name": "holdout",
                "state": "done",
                "digest": "ab" * 6,
                "read_at": "2026-12-04T17:00:00+00:00",
                "rows": 500,
                "agreement": 0.97,
                "metrics": {
                    "roc_auc": {"champion": 0.94, "challenger": 0.95, "delta": got["datasets"][0]["metrics"]["roc_auc"]["delta"]},
                    "f1": {"champion": 0.8, "challenger": None, "delta": None},
                },
                "p95_latency_ms": {"champion": 2.0, "challenger": 2.5},
            },
            {"name": "recent", "state": "error", "error": "recent: no file"},
        ],
    }
    assert math.isclose(got["datasets"][0]["metrics"]["roc_auc"]["delta"], 0.01)
    assert "4111" not in json.dumps(got) and "fr" not in json.dumps(got["datasets"])  # no rows, no features


def test_it_stays_small_whatever_the_diff_holds():
    hostile = {
        "state": "error",
        "reason": "x" * 100_000,
        "examples": {"inputs": [{}] * 1000, "breaking": ["y" * 10_000] * 1000},
        "datasets": [HOLDOUT | {"name": "n" * 500, "agreement": float("nan"), "rows": True}] * 100,
    }
    got = summary(hostile)
    assert len(json.dumps(got)) < 10_000
    assert len(got["reason"]) == TEXT + 1 and len(got["examples"]["breaking"]) == 5 and len(got["datasets"]) == 5
    assert "agreement" not in got["datasets"][0] and "rows" not in got["datasets"][0]  # NaN and a boolean are no numbers


def test_one_line_for_chat_and_the_timeline():
    assert line(summary(SHOWN)) == "done: breaking: b; holdout: agreement 97.0%, roc_auc +0.01; recent: recent: no file"
    assert line({"state": "error", "reason": "the challenger could not be run"}) == "error: the challenger could not be run"
