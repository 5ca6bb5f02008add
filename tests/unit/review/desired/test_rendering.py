"""A plan's JSON as `checkpoint plan` prints it, and its exit codes."""

from __future__ import annotations

import pytest

from checkpoint.review.desired import DRIFT_EXIT, ERROR_EXIT, NO_DRIFT_EXIT, exit_code, render


def _entry(kind, name, action, current=(), desired=None, **extra):
    entry = {
        "model": extra.pop("model", "fraud"),
        "workspace": extra.pop("workspace", "default"),
        "kind": kind,
        "target": f"{kind}:{name}",
        "action": action,
        "current": list(current),
        "desired": desired,
        "changes": [],
        "open_requests": extra.pop("open_requests", []),
        "message": extra.pop("message", ""),
    }
    if kind == "copy":
        entry["source"], entry["next_version"] = "models:/fraud@champion", extra.pop("next_version", None)
    else:
        entry["name"] = name
    return entry


def _plan(*entries):
    counts = {a: sum(e["action"] == a for e in entries) for a in ("create", "update", "delete", "no-op", "error")}
    drift = any(e["action"] in ("create", "update", "delete") for e in entries)
    return {"format": 1, "drift": drift, "counts": counts, "entries": list(entries)}


REQUEST = {"id": 12, "state": "open", "url": "http://cp/checkpoint/requests/12", "summary": "moves it to 7", "matches": True}


def test_every_kind_of_difference_has_its_line():
    plan = _plan(
        _entry("alias", "champion", "update", ["5"], "7", open_requests=[REQUEST]),
        _entry("alias", "challenger", "create", [], "9"),
        _entry("alias", "legacy", "delete", ["3"], None),
        _entry("stage", "Production", "update", ["3", "4"], "4", model="churn"),
        _entry("copy", "", "create", ["2"], "7", model="prod.fraud", message="from fraud/7", next_version="3"),
        _entry("alias", "b", "error", message="version 99 of 'fraud' does not exist"),
        _entry("alias", "same", "no-op", ["1"], "1"),
        _entry("alias", "ws", "create", [], "1", workspace="team-b"),
    )
    lines = {("fraud", "alias", "b"): 6}
    assert render(plan, "registry.yaml", lines).splitlines() == [
        "~ fraud @champion: 5 → 7  (open request #12 moves it to 7)",
        "+ fraud @challenger: (none) → 9",
        "- fraud @legacy: 3 → (none)",
        "~ churn stage Production: 3, 4 → 4",
        "+ prod.fraud v3 from fraud/7",
        "! registry.yaml:6: fraud @b: version 99 of 'fraud' does not exist",
        "+ fraud (workspace team-b) @ws: (none) → 1",
        "",
        "Plan: 3 to add, 2 to change, 1 to remove. 1 target(s) could not be planned.",
    ]


def test_no_changes_shows_only_targets_an_open_request_holds():
    plan = _plan(
        _entry("alias", "champion", "no-op", ["7"], "7", open_requests=[{**REQUEST, "summary": "moves it to 8"}]),
        _entry("copy", "", "no-op", ["3"], "7", model="prod.fraud", message="a copy of fraud/7"),
        _entry(
            "copy",
            "",
            "no-op",
            ["2"],
            "5",
            model="prod.b",
            message="the same files as b/5",
            open_requests=[{**REQUEST, "summary": "copies b/6"}],
        ),
    )
    assert render(plan, "registry.yaml").splitlines() == [
        "  fraud @champion: 7 as declared  (open request #12 moves it to 8)",
        "  prod.b: v2 as declared (the same files as b/5)  (open request #12 copies b/6)",
        "",
        "No changes. MLflow matches registry.yaml (3 target(s)).",
    ]
    assert (
        render(_plan(_entry("alias", "a", "no-op", ["1"], "1"))) == "No changes. MLflow matches the desired state (1 target(s))."
    )


@pytest.mark.parametrize(
    ("actions", "detailed", "code"),
    [
        (["no-op"], False, NO_DRIFT_EXIT),
        (["no-op"], True, NO_DRIFT_EXIT),
        (["update"], False, NO_DRIFT_EXIT),
        (["update"], True, DRIFT_EXIT),
        (["delete", "no-op"], True, DRIFT_EXIT),
        (["update", "error"], True, ERROR_EXIT),
        (["error"], False, ERROR_EXIT),
    ],
)
def test_exit_codes_follow_terraform(actions, detailed, code):
    plan = _plan(*(_entry("alias", f"a{i}", a, ["1"], "2") for i, a in enumerate(actions)))
    assert exit_code(plan, detailed) == code
    assert (NO_DRIFT_EXIT, ERROR_EXIT, DRIFT_EXIT) == (0, 1, 2)
