"""What a change says about itself: each kind's target and title, the dedupe key, the stored JSON."""

from __future__ import annotations

import pytest

from checkpoint.review.changes import CreateVersion, DeleteAlias, DeleteModel, DeleteVersion, Rename, SetAlias, Transition

# -- what a change says about itself -----------------------------------------------------------

SAYS = [
    (
        Transition("m", version_="2", stage="Production", archive_existing_versions=True),
        "stage:Production",
        "Moving 'm' version 2 to stage Production (archiving the versions now there)",
    ),
    (
        SetAlias("m", alias="champion", version_="3", workspace="team-b"),
        "alias:champion",
        "Moving alias 'champion' of 'm' to version 3 in workspace 'team-b'",
    ),
    (DeleteAlias("m", alias="champion"), "alias:champion", "Removing alias 'champion' from 'm'"),
    (
        CreateVersion("m", source="models:/other@champion", resolved="models:/other/7"),
        "model:m",
        "Copying the version of 'other' with alias 'champion' (version 7 when the request opened) into 'm'",
    ),
    (CreateVersion("m", source="models:/other/7"), "model:m", "Copying 'other' version 7 into 'm'"),
    (CreateVersion("m", source="runs:/r/model"), "model:m", "Registering a new version of 'm' from runs:/r/model"),
    (DeleteVersion("m", version_="4"), "delete", None),
    (DeleteModel("m"), "delete", "Deleting registered model 'm' with all its versions"),
    (Rename("m", new_name="n"), "rename:n", "Renaming registered model 'm' to 'n'"),
]


@pytest.mark.parametrize(("change", "target", "title"), SAYS, ids=[type(s[0]).__name__ + str(i) for i, s in enumerate(SAYS)])
def test_target_and_title(change, target, title):
    assert change.target() == target
    if title is not None:
        assert change.title() == title


def test_the_dedupe_key_is_the_author_and_the_change():
    change = SetAlias("m", alias="a", version_="1")
    assert change.dedupe_key("alice") == SetAlias("m", alias="a", version_="1").dedupe_key("alice")
    assert change.dedupe_key("alice") != change.dedupe_key("bob")
    assert change.dedupe_key("alice") != SetAlias("m", alias="a", version_="2").dedupe_key("alice")
    assert change.dedupe_key("alice") != SetAlias("m", alias="a", version_="1", workspace="team-b").dedupe_key("alice")
    assert len(change.dedupe_key("alice")) == 64


def test_to_json_leaves_the_default_workspace_out():
    assert SetAlias("m", alias="a", version_="1").to_json() == {"kind": "set_alias", "name": "m", "alias": "a", "version": "1"}
    assert SetAlias("m", alias="a", version_="1", workspace="team-b").to_json()["workspace"] == "team-b"
