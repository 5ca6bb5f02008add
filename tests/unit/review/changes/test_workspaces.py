"""MLflow workspaces in a change, without a server: the workspace is part of a change's identity
and survives storage, and ``canonical_workspace`` accepts and refuses what MLflow does (the
attacks through a real ``--enable-workspaces`` server are in tests/integration/test_gate_workspaces.py)."""

from __future__ import annotations

import pytest

from checkpoint.review.changes import ChangeError, SetAlias, Transition, canonical_workspace, from_body, from_json


def test_change_workspace_is_identity_and_survives_storage():
    in_b = from_body("set_alias", {"name": "m", "alias": "champion", "version": "2"}, "team-b")
    default = from_body("set_alias", {"name": "m", "alias": "champion", "version": "2"})
    assert in_b.to_json()["workspace"] == "team-b" and from_json(in_b.to_json()) == in_b
    assert in_b.dedupe_key("alice") != default.dedupe_key("alice")
    # A change stored before workspaces (no key) is the default workspace's, with its old dedupe key.
    old = {"kind": "set_alias", "name": "m", "alias": "champion", "version": "2"}
    assert from_json(old) == default and default.to_json() == old
    assert from_json({**old, "workspace": "default"}).workspace == ""
    with pytest.raises(ChangeError, match="workspace"):
        from_json({**old, "workspace": "Team-B"})
    with pytest.raises(ChangeError, match="workspace"):
        from_json({**old, "workspace": 7})
    assert Transition("m", version_="1", stage="Production", workspace="x1").workspace == "x1"
    assert SetAlias("m", alias="a", version_="1").workspace == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("  ", ""),
        ("default", ""),
        (" default ", ""),
        ("team-b", "team-b"),
        ("\tteam-b ", "team-b"),
        ("a1", "a1"),
    ],
)
def test_canonical_workspace_follows_mlflow(raw, expected):
    assert canonical_workspace(raw) == expected


@pytest.mark.parametrize("raw", ["Default", "TEAM", "-ab", "ab-", "a", "a" * 64, "a_b", "a,b", "workspaces", "static-files"])
def test_canonical_workspace_refuses_what_mlflow_refuses(raw):
    with pytest.raises(ChangeError, match="workspace"):
        canonical_workspace(raw)
