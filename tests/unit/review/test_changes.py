"""Change parsing without MLflow: bodies read the way MLflow reads them (content type, duplicate
keys, double encoding, snake and camel case), the canonical spellings, ``models:`` sources, the
one entry for a client's change (``parse``), and what a change says about itself."""

from __future__ import annotations

import json

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
    ModelsRef,
    Rename,
    SetAlias,
    SetTag,
    Transition,
    canonical_stage,
    canonical_version,
    from_body,
    from_json,
    parse,
    parse_body,
    parse_models_uri,
)

JSON = "application/json"

# -- parse_body: the JSON object MLflow would read ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "content_type", "raw", "expected"),
    [
        ("POST", JSON, b'{"name": "m"}', {"name": "m"}),
        ("POST", "Application/JSON; charset=utf-8", b'{"name": "m"}', {"name": "m"}),
        ("POST", JSON, b"   ", {}),
        ("post", JSON, b"", {}),
        ("POST", JSON, json.dumps(json.dumps({"name": "m"})).encode(), {"name": "m"}),  # double-encoded
        ("DELETE", "", b'{"name": "m"}', {"name": "m"}),  # only POST and PUT must say JSON
        ("DELETE", "text/plain", b'{"alias": "a"}', {"alias": "a"}),
        ("PATCH", "", b"", {}),
    ],
    ids=[
        "json",
        "json-any-case-with-charset",
        "blank",
        "empty",
        "double-encoded",
        "delete-no-type",
        "delete-text",
        "patch-empty",
    ],
)
def test_parse_body_reads_what_mlflow_reads(method, content_type, raw, expected):
    assert parse_body(method, content_type, raw) == expected


BODY_REFUSALS = [
    ("not-json-type", "POST", "text/plain", b"{}", "Bad Request. Content-Type must be 'application/json', got 'text/plain'"),
    ("no-type", "PUT", "", b"{}", "Bad Request. Content-Type must be 'application/json', got 'none'"),
    (
        "duplicate-keys",
        "POST",
        JSON,
        b'{"name": "a", "alias": "x", "name": "b"}',
        "duplicated field(s) ['name'] in the request body",
    ),
    ("nested-duplicates", "POST", JSON, b'{"tags": [{"key": "a", "key": "b"}]}', "duplicated field(s) ['key']"),
    ("list", "POST", JSON, b'["name"]', "The request body must be a JSON object"),
    ("number", "POST", JSON, b"3", "The request body must be a JSON object"),
    ("double-encoded-list", "POST", JSON, b'"[1]"', "The request body must be a JSON object"),
    ("bad-json", "POST", JSON, b'{"name": ', "Malformed JSON body: Expecting value"),
    ("bad-utf8", "POST", JSON, b'{"name": "\xff"}', "Malformed JSON body: 'utf-8' codec can't decode"),
    ("too-deep", "POST", JSON, b"[" * 100_000 + b"]" * 100_000, "Malformed JSON body: nested too deeply"),
    ("lone-surrogate", "POST", JSON, b'{"name": "\\ud800x"}', "holds a lone surrogate escape"),
    ("lone-surrogate-key", "POST", JSON, b'{"\\udfff": "m"}', "holds a lone surrogate escape"),
]


@pytest.mark.parametrize(
    ("method", "content_type", "raw", "message"), [b[1:] for b in BODY_REFUSALS], ids=[b[0] for b in BODY_REFUSALS]
)
def test_parse_body_refuses_with_a_400_message(method, content_type, raw, message):
    with pytest.raises(ChangeError) as refused:
        parse_body(method, content_type, raw)
    assert message in str(refused.value)
    assert (refused.value.status, refused.value.error_code) == (400, "INVALID_PARAMETER_VALUE")


# -- canonical spellings ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("3", "3"), ("03", "3"), (" 3 ", "3"), ("+3", "3"), ("٣", "3"), ("0", "0")])
def test_canonical_version_reads_like_int(raw, expected):
    assert canonical_version(raw) == expected


@pytest.mark.parametrize("raw", ["3.0", "three", "", "1e3", None])
def test_canonical_version_refuses_what_int_refuses(raw):
    with pytest.raises(ChangeError, match=r"^Parameter 'version' must be an integer, got "):
        canonical_version(raw)


@pytest.mark.parametrize(("raw", "expected"), [("production", "Production"), ("STAGING", "Staging"), ("none", "None")])
def test_canonical_stage(raw, expected):
    assert canonical_stage(raw) == expected


def test_canonical_stage_refuses_an_unknown_stage():
    with pytest.raises(ChangeError, match=r"^Invalid Model Version stage: Prod\. Value must be one of None, Staging"):
        canonical_stage("Prod")


# -- models: sources ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("models:/fraud/3", ModelsRef(name="fraud", version="3")),
        ("models:/fraud/03", ModelsRef(name="fraud", version="3")),
        ("MODELS:/fraud/3", ModelsRef(name="fraud", version="3")),
        ("models:///fraud/3", ModelsRef(name="fraud", version="3")),
        ("models:/fraud/3?x=1", ModelsRef(name="fraud", version="3")),
        ("models:/fraud/production", ModelsRef(name="fraud", stage="Production")),
        ("models:/fraud/Latest", ModelsRef(name="fraud")),
        ("models:/fraud@champion", ModelsRef(name="fraud", alias="champion")),
        ("models:/team@fraud@champion", ModelsRef(name="team@fraud", alias="champion")),
        ("models:/m-0123abcd", ModelsRef(model_id="m-0123abcd")),
        ("runs:/abc/model", None),
        ("s3://bucket/model", None),
        ("/tmp/model", None),
    ],
)
def test_models_sources(source, expected):
    assert parse_models_uri(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "models://host/fraud/3",
        "models:fraud/3",
        "models:/",
        "models:/fraud/3/extra",
        "models:/fraud/",
        "models:/ /3",
        "models:/fraud@",
        "models:/fraud/Prod",
    ],
)
def test_models_sources_mlflow_refuses_are_refused(source):
    with pytest.raises(ChangeError, match=rf"^Invalid model version source: '{source}'\. Checkpoint reads models: sources"):
        parse_models_uri(source)


@pytest.mark.parametrize(
    ("ref", "moving", "text"),
    [
        (ModelsRef(name="m", version="3"), False, "'m' version 3"),
        (ModelsRef(name="m", alias="champion"), True, "the version of 'm' with alias 'champion'"),
        (ModelsRef(name="m", stage="Production"), True, "the latest version of 'm' in stage Production"),
        (ModelsRef(name="m"), True, "the latest version of 'm'"),
        (ModelsRef(model_id="m-1"), False, "logged model m-1"),
    ],
)
def test_a_reference_describes_itself(ref, moving, text):
    assert (ref.moving, ref.describe()) == (moving, text)


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
