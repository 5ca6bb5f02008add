"""Bodies read the way MLflow reads them (content type, duplicate keys, double encoding, snake
and camel case), the canonical spellings of versions and stages, and ``models:`` sources."""

from __future__ import annotations

import json

import pytest

from checkpoint.review.changes import (
    ChangeError,
    ModelsRef,
    canonical_stage,
    canonical_version,
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
