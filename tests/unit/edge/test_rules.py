"""The rules table as data: path matching on every spelling MLflow routes, normalisation, and the
artifact routes (../shared/MLFLOW.md §1.2-§1.4, §7). The walk over MLflow's own route list stays in
tests/integration/test_rules.py (it imports MLflow's server)."""

from __future__ import annotations

import pytest

from checkpoint.edge import rules
from checkpoint.edge.rules import Action
from checkpoint.review import changes


def test_inspected_rules_parse_into_known_change_kinds():
    every_field = {
        "name": "m",
        "version": "1",
        "stage": "Staging",
        "alias": "a",
        "key": "k",
        "value": "v",
        "new_name": "n",
        "source": "models:/m/1",
    }
    with pytest.raises(changes.ChangeError, match="unknown change kind"):
        changes.from_body("no_such_kind", every_field)
    for rule in rules.RULES:
        if rule.action is Action.INSPECT:
            change = changes.from_body(rule.kind or "", every_field)
            assert change.name == "m" and change.kind in changes.KINDS, rule
        else:
            assert rule.kind is None, rule


# -- match / normalise / is_ui_call ------------------------------------------------------------

ALIAS = "registered-models/alias"

MATCHES = [
    # (id, method, raw path, expected kind or Action.PASS or None, is a UI call)
    ("api-2.0", "POST", f"/api/2.0/mlflow/{ALIAS}", "set_alias", False),
    ("ajax-api-2.0", "POST", f"/ajax-api/2.0/mlflow/{ALIAS}", "set_alias", True),
    ("api-2.0-preview", "POST", f"/api/2.0/preview/mlflow/{ALIAS}", "set_alias", False),
    ("ajax-api-2.0-preview", "POST", f"/ajax-api/2.0/preview/mlflow/{ALIAS}", "set_alias", True),
    ("api-3.0", "DELETE", f"/api/3.0/mlflow/{ALIAS}", "delete_alias", False),
    ("static-prefix", "POST", f"/mlflow/api/2.0/mlflow/{ALIAS}", "set_alias", False),
    ("static-prefix-ajax", "POST", f"/team/mlflow/ajax-api/2.0/mlflow/{ALIAS}", "set_alias", True),
    ("leading-double-slash", "POST", f"//api/2.0/mlflow/{ALIAS}", "set_alias", False),
    ("interior-double-slash", "POST", "/api/2.0//mlflow//registered-models///alias", "set_alias", False),
    ("encoded-slash", "POST", "/api/2.0/mlflow/registered-models%2Falias", "set_alias", False),
    ("encoded-slash-lower", "POST", "/api%2f2.0%2fmlflow/registered-models/alias", "set_alias", False),
    ("encoded-letter", "POST", "/api/2.0/mlflow/registered-models/%61lias", "set_alias", False),
    ("encoded-everything", "POST", "/%61pi/2%2E0/mlflow/model-versions/transition%2Dstage", "transition", False),
    ("query-string", "POST", f"/api/2.0/mlflow/{ALIAS}?name=x&alias=candidate", "set_alias", False),
    ("lower-case-method", "post", f"/api/2.0/mlflow/{ALIAS}", "set_alias", False),
    ("fragment", "POST", f"/api/2.0/mlflow/{ALIAS}#ignored", "set_alias", False),
    ("absolute-form", "POST", f"http://127.0.0.1:5000/api/2.0/mlflow/{ALIAS}", "set_alias", False),
    ("absolute-form-https-ajax", "POST", f"https://mlflow.example/ajax-api/2.0/mlflow/{ALIAS}", "set_alias", True),
    ("no-leading-slash", "POST", f"api/2.0/mlflow/{ALIAS}", "set_alias", False),
    ("transition", "POST", "/api/2.0/mlflow/model-versions/transition-stage", "transition", False),
    ("copy", "POST", "/api/2.0/mlflow/model-versions/create", "create_version", False),
    ("version-tag", "POST", "/api/2.0/mlflow/model-versions/set-tag", "set_tag", False),
    ("version-tag-delete", "DELETE", "/api/2.0/mlflow/model-versions/delete-tag", "delete_tag", False),
    ("model-tag", "POST", "/api/2.0/mlflow/registered-models/set-tag", "set_model_tag", False),
    ("model-tag-delete", "DELETE", "/ajax-api/2.0/mlflow/registered-models/delete-tag", "delete_model_tag", True),
    ("delete-version", "DELETE", "/api/2.0/mlflow/model-versions/delete", "delete_version", False),
    ("delete-model", "DELETE", "/api/2.0/mlflow/registered-models/delete", "delete_model", False),
    ("rename", "POST", "/api/2.0/mlflow/registered-models/rename", "rename", False),
    ("create-model", "POST", "/api/2.0/mlflow/registered-models/create", "create_model", False),
    # Explicit passes.
    ("update-description", "PATCH", "/api/2.0/mlflow/model-versions/update", Action.PASS, False),
    ("latest-versions-read", "POST", "/api/2.0/mlflow/registered-models/get-latest-versions", Action.PASS, False),
    ("webhook-create", "POST", "/api/2.0/mlflow/webhooks", Action.PASS, False),
    ("webhook-delete", "DELETE", "/ajax-api/2.0/mlflow/webhooks/wh-123", Action.PASS, True),
    ("webhook-test", "POST", "/api/2.0/mlflow/webhooks/wh-123/test", Action.PASS, False),
    # No rule: reads, other methods, and paths MLflow does not route to a registry handler.
    ("get-alias-is-a-read", "GET", f"/api/2.0/mlflow/{ALIAS}?name=x&alias=champion", None, False),
    ("put-not-routed", "PUT", f"/api/2.0/mlflow/{ALIAS}", None, False),
    ("trailing-slash", "POST", f"/api/2.0/mlflow/{ALIAS}/", None, False),
    ("upper-case", "POST", f"/API/2.0/mlflow/{ALIAS}", None, False),
    ("upper-case-segment", "POST", "/api/2.0/mlflow/Registered-Models/alias", None, False),
    ("dot-segment", "POST", "/api/2.0/mlflow/registered-models/./alias", None, False),
    ("path-parameter", "POST", f"/api/2.0/mlflow/{ALIAS};x", None, False),
    ("double-encoded-letter", "POST", "/api/2.0/mlflow/registered-models/%2561lias", None, False),
    ("no-version", "POST", f"/api/mlflow/{ALIAS}", None, False),
    ("runs-api", "POST", "/api/2.0/mlflow/runs/set-tag", None, False),
    # Artifact paths that contain registry-looking segments are artifacts, not registry calls.
    ("artifact-put", "PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/api/2.0/mlflow/{ALIAS}", None, False),
    ("artifact-delete", "DELETE", f"/api/2.0/mlflow-artifacts/artifacts/x/api/2.0/mlflow/{ALIAS}", None, False),
    (
        "artifact-delete-encoded",
        "DELETE",
        "/ajax-api/2.0/mlflow-artifacts/artifacts/x%2Fapi%2F2.0%2Fmlflow%2Fregistered-models%2Falias",
        None,
        False,
    ),
    ("artifact-mpu", "POST", "/api/2.0/mlflow-artifacts/mpu/create/x/api/2.0/mlflow/model-versions/create", None, False),
    ("upload-artifact-query", "POST", f"/ajax-api/2.0/mlflow/upload-artifact?path=api/2.0/mlflow/{ALIAS}", None, False),
    # Outside artifacts, anything before ``/api/N.N/mlflow/`` may be a --static-prefix, so a
    # registry-looking tail is inspected even inside another route's path variable (safe side).
    (
        "other-route-with-registry-tail",
        "DELETE",
        f"/api/3.0/mlflow/mcp-servers/s/aliases/x/api/2.0/mlflow/{ALIAS}",
        "delete_alias",
        False,
    ),
]


@pytest.mark.parametrize(("method", "path", "expected", "ui"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES])
def test_match(method, path, expected, ui):
    rule = rules.match(method, path)
    if expected is None:
        assert rule is None
    elif expected is Action.PASS:
        assert rule is not None and rule.action is Action.PASS and rule.kind is None
    else:
        assert rule is not None and rule.action is Action.INSPECT and rule.kind == expected
    if rule is not None:
        assert rules.is_ui_call(path) is ui


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/api/2.0/mlflow/registered-models/alias", "/api/2.0/mlflow/registered-models/alias"),
        ("//api//2.0/mlflow/x?name=a//b", "/api/2.0/mlflow/x"),
        ("/api/2.0/mlflow/registered-models%2Falias", "/api/2.0/mlflow/registered-models/alias"),
        ("/api/2.0/mlflow/registered-models/%61lias", "/api/2.0/mlflow/registered-models/alias"),
        ("/api/2.0/mlflow/registered-models/%2561lias", "/api/2.0/mlflow/registered-models/%61lias"),  # once only
        ("/api/2.0/mlflow/a%2F%2Fb", "/api/2.0/mlflow/a/b"),  # slashes collapsed after decoding
        ("/x#frag?y", "/x"),
        ("/x?y#frag", "/x"),
        ("/x%3Fy", "/x?y"),  # an encoded '?' is part of the path, not a query
        ("http://host:5000/api/2.0/mlflow/x?y=1", "/api/2.0/mlflow/x"),
        ("HTTPS://host/a//b", "/a/b"),
        ("api/2.0/mlflow/x", "/api/2.0/mlflow/x"),
        ("", "/"),
    ],
    ids=[
        "canonical",
        "slashes-and-query",
        "encoded-slash",
        "encoded-letter",
        "decoded-once",
        "encoded-double-slash",
        "fragment-first",
        "query-first",
        "encoded-question-mark",
        "absolute-form",
        "absolute-form-upper-scheme",
        "relative",
        "empty",
    ],
)
def test_normalise(raw, expected):
    assert rules.normalise(raw) == expected


def test_is_ui_call_only_for_ajax_api_registry_paths():
    assert rules.is_ui_call("/ajax-api/2.0/mlflow/model-versions/transition-stage")
    assert rules.is_ui_call("//ajax-api/2.0/mlflow/model-versions/transition-stage")
    assert rules.is_ui_call("/ajax%2Dapi/2.0/mlflow/model-versions/transition-stage")
    assert not rules.is_ui_call("/api/2.0/mlflow/model-versions/transition-stage")
    assert not rules.is_ui_call("/static-files/ajax-api/index.html")
    assert not rules.is_ui_call("/api/2.0/mlflow-artifacts/artifacts/ajax-api/2.0/mlflow/registered-models/alias")


# -- artifact routes (issue #12, class 1) ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "raw", "verb", "path"),
    [
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts/m.pkl", "write", "1/models/m-1/artifacts/m.pkl"),
        ("PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/1/r/x", "write", "1/r/x"),
        ("PUT", "/team/mlflow/api/2.0/mlflow-artifacts/artifacts/1/r/x", "write", "1/r/x"),
        ("PUT", "//api/2.0//mlflow-artifacts/artifacts/1//r/x", "write", "1/r/x"),
        ("PUT", "/api/2.0/mlflow%2Dartifacts/artifacts/1%2Fr%252Fx", "write", "1/r%2Fx"),  # decoded fully later
        ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/1/r", "delete", "1/r"),
        ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/", "delete", ""),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/1/r/x", "write", "1/r/x"),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/1/r/x", "write", "1/r/x"),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/abort/1/r/x", "write", "1/r/x"),
        ("POST", "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=r&path=x", "write", ""),
        ("POST", "/api/2.0/mlflow/artifacts/presigned-upload-url", "write", ""),
        ("POST", "/api/2.0/mlflow/artifacts/presigned-download-url", "read", ""),
        # An artifact path that contains another artifact route is still the first route's path.
        (
            "PUT",
            "/api/2.0/mlflow-artifacts/artifacts/1/r/api/2.0/mlflow-artifacts/artifacts/y",
            "write",
            "1/r/api/2.0/mlflow-artifacts/artifacts/y",
        ),
    ],
)
def test_match_artifact(method, raw, verb, path):
    found = rules.match_artifact(method, raw)
    assert found is not None and found[0].verb == verb and found[1] == path
    assert rules.match(method, raw) is None  # never a registry call as well


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/1/r/x"),  # reads need no rule and pay no lookup
        ("HEAD", "/api/2.0/mlflow-artifacts/artifacts/1/r/x"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts?path=1/r"),
        ("POST", "/api/2.0/mlflow/upload-artifact/extra"),
        ("POST", "/api/2.0/mlflow/runs/log-artifact"),
        ("PUT", "/static-files/mlflow-artifacts/artifacts/1/r/x"),
    ],
)
def test_no_artifact_rule(method, raw):
    assert rules.match_artifact(method, raw) is None


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        ("POST", "/api/2.0/mlflow/registered-models/alias"),
        ("POST", "//ajax-api/2.0/mlflow/model-versions/transition-stage?x=1"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model.pkl"),
        ("POST", "/api/2.0/mlflow/upload-artifact?run_uuid=abc&path=x"),
        ("POST", "/api/2.0/mlflow/registered-models/search"),
        ("DELETE", "http://host/api/2.0/preview/mlflow/registered-models/delete"),
    ],
)
def test_a_path_normalised_once_matches_as_the_raw_path_does(method, raw):
    normalised = rules.normalise(raw)
    assert rules.match(method, raw, normalised) == rules.match(method, raw)
    assert rules.match_artifact(method, raw, normalised) == rules.match_artifact(method, raw)
