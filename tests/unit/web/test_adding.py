"""The form's "Add a change" fields, read into a change by the parser every channel uses."""

from __future__ import annotations

import pytest

from checkpoint.review.changes import ChangeError, DeleteAlias, SetAlias, Transition
from checkpoint.web import adding


def test_each_kind_becomes_its_change_in_the_batch_s_workspace():
    alias = adding.change_from({"add_kind": "set_alias", "add_name": " m ", "add_alias": "champion", "add_version": "3"})
    assert alias == SetAlias("m", alias="champion", version_="3")
    gone = adding.change_from({"add_kind": "delete_alias", "add_name": "m", "add_alias": "old"}, "team")
    assert gone == DeleteAlias("m", alias="old", workspace="team")
    moved = adding.change_from(
        {"add_kind": "transition", "add_name": "m", "add_version": "2", "add_stage": "production", "add_archive": "on"}
    )
    assert moved == Transition("m", version_="2", stage="Production", archive_existing_versions=True)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "choose what the change does"),
        ({"add_kind": "delete_version", "add_name": "m"}, "choose what the change does"),
        ({"add_kind": "set_alias", "add_name": "  "}, "give the model's name"),
        ({"add_kind": "set_alias", "add_name": "m", "add_alias": "champion"}, "give the version for this change"),
        ({"add_kind": "transition", "add_name": "m", "add_version": "2", "add_stage": "Nowhere"}, "Nowhere"),
    ],
)
def test_a_missing_or_bad_field_is_named(fields, message):
    with pytest.raises(ChangeError, match=message):
        adding.change_from(fields)
