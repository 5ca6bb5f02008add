"""The one entry for a client's change (``parse``), a proxied call's body (``from_body``) and a
stored row (``from_json``): each reaches the Change of its kind, canonicalised, or a 400."""

from __future__ import annotations

import pytest

from checkpoint.edge import rules
from checkpoint.review.changes import (
    FIELDS,
    KINDS,
    PARSE_KINDS,
    ChangeError,
    CreateModel,
    CreateVersion,
    DeleteAlias,
    DeleteModel,
    DeleteTag,
    DeleteVersion,
    Rename,
    SetAlias,
    SetTag,
    Transition,
    from_body,
    from_json,
    parse,
)

# -- parse: the one entry for a client's change ------------------------------------------------

PARSED = [
    (
        "transition",
        {"kind": "transition", "name": "m", "version": "02", "stage": "production"},
        Transition("m", version_="2", stage="Production"),
    ),
    (
        "transition-camel",
        {"kind": "transition", "name": "m", "version": "2", "stage": "Staging", "archiveExistingVersions": True},
        Transition("m", version_="2", stage="Staging", archive_existing_versions=True),
    ),
    (
        "set-alias",
        {"kind": "set_alias", "name": "m", "alias": "champion", "version": "3"},
        SetAlias("m", alias="champion", version_="3"),
    ),
    (
        "delete-alias-with-ui-version",
        {"kind": "delete_alias", "name": "m", "alias": "champion", "version": "3"},
        DeleteAlias("m", alias="champion"),
    ),
    (
        "set-tag",
        {"kind": "set_tag", "name": "m", "version": "1", "key": "validation_status", "value": "passed"},
        SetTag("m", version_="1", key="validation_status", value="passed"),
    ),
    (
        "set-tag-without-version-is-a-model-tag",
        {"kind": "set_tag", "name": "m", "version": None, "key": "k", "value": "v"},
        SetTag("m", key="k", value="v"),
    ),
    ("delete-tag-without-version", {"kind": "delete_tag", "name": "m", "key": "k"}, DeleteTag("m", key="k")),
    ("model-tag-value-defaults-empty", {"kind": "set_model_tag", "name": "m", "key": "k"}, SetTag("m", key="k", value="")),
    ("delete-version", {"kind": "delete_version", "name": "m", "version": "4"}, DeleteVersion("m", version_="4")),
    ("delete-model", {"kind": "delete_model", "name": "m"}, DeleteModel("m")),
    ("rename-camel", {"kind": "rename", "name": "m", "newName": "n"}, Rename("m", new_name="n")),
    (
        "create-version-nested-body",
        {
            "kind": "create_version",
            "name": "m",
            "source": "models:/m@champion",
            "body": {"run_id": "r1", "tags": [{"key": "a", "value": "b"}]},
            "resolved": "x",
        },
        CreateVersion("m", source="models:/m@champion", body={"run_id": "r1", "tags": [{"key": "a", "value": "b"}]}),
    ),
    (
        "create-model",
        {"kind": "create_model", "name": "prod.m", "description": "d"},
        CreateModel("prod.m", body={"description": "d"}),
    ),
    (
        "workspace",
        {"kind": "set_alias", "name": "m", "alias": "a", "version": "1", "workspace": " team-b "},
        SetAlias("m", alias="a", version_="1", workspace="team-b"),
    ),
    (
        "default-workspace",
        {"kind": "set_alias", "name": "m", "alias": "a", "version": "1", "workspace": "default"},
        SetAlias("m", alias="a", version_="1"),
    ),
]


@pytest.mark.parametrize(("data", "expected"), [p[1:] for p in PARSED], ids=[p[0] for p in PARSED])
def test_parse(data, expected):
    change = parse(data)
    assert change == expected
    assert from_json(change.to_json()) == change  # what is stored reads back the same


PARSE_REFUSALS = [
    ("not-an-object", ["set_alias"], "a change is an object with a 'kind'"),
    ("no-kind", {"name": "m"}, "change.kind must be one of transition, set_alias, delete_alias, create_version"),
    ("unknown-kind", {"kind": "promote", "name": "m"}, "change.kind must be one of"),
    ("workspace-not-text", {"kind": "delete_model", "name": "m", "workspace": 3}, "workspace must be a string"),
    (
        "bad-workspace",
        {"kind": "delete_model", "name": "m", "workspace": "Team-B"},
        "Invalid workspace 'Team-B' (X-MLFLOW-WORKSPACE): a workspace name is 2 to 63 lowercase letters",
    ),
    ("reserved-workspace", {"kind": "delete_model", "name": "m", "workspace": "api"}, "the name is reserved by MLflow"),
    (
        "unknown-field",
        {"kind": "set_alias", "name": "m", "alias": "a", "version": "1", "verison": "2"},
        "unknown field(s) 'verison' for a set_alias change",
    ),
    (
        "resolved-outside-create",
        {"kind": "set_alias", "name": "m", "alias": "a", "version": "1", "resolved": "2"},
        "unknown field(s) 'resolved' for a set_alias change",
    ),
    ("body-not-object", {"kind": "create_model", "name": "m", "body": "x"}, "change.body must be an object"),
    (
        "field-twice",
        {"kind": "create_version", "name": "m", "source": "s", "body": {"source": "t"}},
        "change: field(s) ['source'] given twice",
    ),
    ("missing-name", {"kind": "delete_model"}, "Missing value for required parameter 'name'."),
    ("empty-alias", {"kind": "delete_alias", "name": "m", "alias": ""}, "Missing value for required parameter 'alias'."),
    (
        "snake-and-camel",
        {"kind": "rename", "name": "m", "new_name": "a", "newName": "b"},
        "Conflicting fields 'new_name' and 'newName': send only one",
    ),
    ("name-not-text", {"kind": "delete_model", "name": 7}, "Invalid value 7 for parameter 'name' supplied: it must be a string"),
    (
        "archive-not-bool",
        {"kind": "transition", "name": "m", "version": "1", "stage": "Staging", "archive_existing_versions": "yes"},
        "Invalid value 'yes' for parameter 'archive_existing_versions': expected true or false",
    ),
    ("bad-stage", {"kind": "transition", "name": "m", "version": "1", "stage": "Live"}, "Invalid Model Version stage: Live."),
    ("bad-version", {"kind": "set_alias", "name": "m", "alias": "a", "version": "v1"}, "Parameter 'version' must be an integer"),
    (
        "version-a-number",
        {"kind": "set_alias", "name": "m", "alias": "a", "version": 2},
        "Invalid value 2 for parameter 'version' supplied: it must be a string",
    ),
    (
        "tags-not-list",
        {"kind": "create_model", "name": "m", "tags": {"a": "b"}},
        "Invalid value for parameter 'tags': expected a list",
    ),
    (
        "tag-without-key",
        {"kind": "create_model", "name": "m", "tags": [{"value": "b"}]},
        "Invalid value for parameter 'tags': each tag is an object with a string 'key'",
    ),
    (
        "tag-value-number",
        {"kind": "create_model", "name": "m", "tags": [{"key": "a", "value": 1}]},
        "Invalid value for tag 'a': it must be a string",
    ),
    ("bad-models-source", {"kind": "create_version", "name": "m", "source": "models://h/m/1"}, "Invalid model version source"),
]


@pytest.mark.parametrize(("data", "message"), [p[1:] for p in PARSE_REFUSALS], ids=[p[0] for p in PARSE_REFUSALS])
def test_parse_refuses(data, message):
    with pytest.raises(ChangeError) as refused:
        parse(data)
    assert message in str(refused.value)


def test_every_kind_a_client_may_name_has_its_fields_and_a_class():
    assert set(PARSE_KINDS) == set(FIELDS)
    assert set(KINDS) <= set(PARSE_KINDS)
    assert {"set_model_tag", "delete_model_tag"} == set(PARSE_KINDS) - set(KINDS)  # model-level tag spellings


def test_every_inspected_route_parses_into_a_change_of_its_kind():
    body = {
        "name": "m",
        "version": "1",
        "stage": "Staging",
        "alias": "a",
        "key": "k",
        "value": "v",
        "new_name": "n",
        "source": "models:/m/1",
    }
    for rule in rules.RULES:
        if rule.kind is not None:
            change = from_body(rule.kind, body)
            assert change.kind in KINDS and change.name == "m", rule


def test_from_body_unknown_kind():
    with pytest.raises(ChangeError, match="unknown change kind 'promote'"):
        from_body("promote", {"name": "m"})


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"kind": "set_alias", "name": "m", "alias": "a", "version": "03"}, SetAlias("m", alias="a", version_="3")),
        (
            {"kind": "transition", "name": "m", "version": "1", "stage": "production", "archive_existing_versions": False},
            Transition("m", version_="1", stage="Production"),
        ),
        ({"kind": "set_tag", "name": "m", "version": None, "key": "k", "value": "v"}, SetTag("m", key="k", value="v")),
        ({"kind": "delete_model", "name": "m", "workspace": None}, DeleteModel("m")),
    ],
)
def test_from_json_canonicalises_rows_written_by_older_versions(stored, expected):
    assert from_json(stored) == expected


def test_from_json_refuses_an_unknown_kind():
    with pytest.raises(ChangeError, match="unknown change kind in"):
        from_json({"kind": "promote", "name": "m"})
