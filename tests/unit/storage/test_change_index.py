"""The rows ``request_changes`` holds for a request: one for a single change, one per change of a batch."""

from __future__ import annotations

from checkpoint.storage.change_index import index_rows


def test_a_single_change_is_one_row_from_the_request_s_columns():
    assert index_rows(None, "m", "alias:champion", {"name": "src", "version": 3}, None) == [
        {
            "position": 0,
            "workspace": "",
            "model_name": "m",
            "target": "alias:champion",
            "challenger_model": "src",
            "challenger_version": "3",
        }
    ]


def test_a_batch_is_one_row_per_change_in_order_with_its_own_workspace_and_version():
    parts = [
        {
            "change": {"kind": "set_alias", "name": "a", "version": "2"},
            "target": "alias:champion",
            "challenger": {"name": "a", "version": "2"},
        },
        {"change": {"kind": "transition", "name": "b", "workspace": "team"}, "target": "stage:Production", "challenger": {}},
    ]
    rows = index_rows("", "a", "alias:champion", {"name": "a", "version": "2"}, parts)
    assert [(r["position"], r["workspace"], r["model_name"], r["target"], r["challenger_version"]) for r in rows] == [
        (0, "", "a", "alias:champion", "2"),
        (1, "team", "b", "stage:Production", None),
    ]
