"""The rules table against MLflow's own route list, and path matching on every spelling
MLflow routes (../shared/MLFLOW.md §1.2-§1.4).

The coverage test walks the routes of the installed MLflow (``get_endpoints()``, the Flask
url_map and the FastAPI app), so a registry route added by an MLflow upgrade fails here
until the rules table decides about it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest

from checkpoint.edge import rules
from checkpoint.edge.rules import Action
from checkpoint.review import changes

REGISTRY = re.compile(r"registered-models|model-versions|webhooks")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_FLASK_VAR = re.compile(r"<(?:[^:<>]+:)?[^<>]+>")
_STARLETTE_VAR = re.compile(r"\{[^{}]+\}")


def _concrete(route: str) -> str:
    """A path that the route template matches: each ``<var>`` / ``{var}`` becomes a value."""
    return _STARLETTE_VAR.sub("42", _FLASK_VAR.sub("42", route))


def _fastapi_routes(routes, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of the FastAPI app's native routes, through included routers.

    FastAPI 0.16x keeps included routers as ``_IncludedRouter`` nodes; older ones flatten
    them into plain routes. The Flask mount is skipped: its routes are the url_map's.
    """
    from starlette.routing import Mount

    for route in routes:
        if hasattr(route, "original_router"):
            yield from _fastapi_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Mount):
            continue
        else:
            for method in getattr(route, "methods", None) or ():
                yield method, prefix + route.path


@pytest.fixture(scope="module")
def mlflow_routes() -> dict[str, set[tuple[str, str]]]:
    """Every (method, path template) MLflow serves, by source. Importing starts no server."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.server import app as flask_app
        from mlflow.server import fastapi_app
        from mlflow.server.handlers import get_endpoints

    endpoints = {(m, path) for path, _handler, methods in get_endpoints() for m in methods}
    url_map = {(m, r.rule) for r in flask_app.url_map.iter_rules() for m in r.methods or ()}
    fastapi = set(_fastapi_routes(fastapi_app.app.routes))
    return {"get_endpoints": endpoints, "url_map": url_map, "fastapi": fastapi}


def _mutating_registry(routes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(m, p) for m, p in routes if m in MUTATING and REGISTRY.search(p)}


def test_the_route_walk_sees_mlflows_registry(mlflow_routes):
    """Guard for the coverage test below: it must be looking at the real route list."""
    assert len(mlflow_routes["get_endpoints"]) > 300
    assert len(mlflow_routes["url_map"]) > 300
    assert len(mlflow_routes["fastapi"]) > 20  # native routes (OTLP, gateway, jobs, artifacts...)
    found = _mutating_registry(mlflow_routes["get_endpoints"])
    for method, path in [
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage"),
        ("POST", "/ajax-api/2.0/mlflow/registered-models/alias"),
        ("DELETE", "/api/2.0/mlflow/registered-models/alias"),
        ("DELETE", "/ajax-api/2.0/mlflow/webhooks/<webhook_id>"),
    ]:
        assert (method, path) in found
    assert len(found) >= 38  # 19 mutating registry/webhook routes × /api and /ajax-api in 3.17


@pytest.mark.parametrize("source", ["get_endpoints", "url_map", "fastapi"])
def test_every_mutating_registry_route_has_a_rule(mlflow_routes, source):
    uncovered = []
    for method, template in sorted(_mutating_registry(mlflow_routes[source])):
        path = _concrete(template)
        for variant in (path, "/mlflow" + path):  # and under a --static-prefix
            if rules.match(method, variant) is None:
                uncovered.append(f"{method} {template} ({variant})")
    assert not uncovered, "mutating registry routes with no decision in checkpoint/rules.py:\n" + "\n".join(uncovered)


def test_every_rule_names_a_route_mlflow_serves(mlflow_routes):
    """No stale rules: each (method, path) of the table exists on both API prefixes."""
    served = {(m, _concrete(p)) for m, p in mlflow_routes["get_endpoints"]}
    for rule in rules.RULES:
        path = rule.path.replace("<id>", "42")
        for api in ("api", "ajax-api"):
            assert (rule.method, f"/{api}/2.0/mlflow/{path}") in served, rule


def test_inspected_rules_parse_into_known_change_kinds():
    every_field = {"name": "m", "version": "1", "stage": "Staging", "alias": "a", "key": "k", "value": "v",
                   "new_name": "n", "source": "models:/m/1"}  # fmt: skip
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
    ("artifact-delete-encoded", "DELETE",
     "/ajax-api/2.0/mlflow-artifacts/artifacts/x%2Fapi%2F2.0%2Fmlflow%2Fregistered-models%2Falias", None, False),
    ("artifact-mpu", "POST", "/api/2.0/mlflow-artifacts/mpu/create/x/api/2.0/mlflow/model-versions/create", None, False),
    ("upload-artifact-query", "POST", f"/ajax-api/2.0/mlflow/upload-artifact?path=api/2.0/mlflow/{ALIAS}", None, False),
    # Outside artifacts, anything before ``/api/N.N/mlflow/`` may be a --static-prefix, so a
    # registry-looking tail is inspected even inside another route's path variable (safe side).
    ("other-route-with-registry-tail", "DELETE", f"/api/3.0/mlflow/mcp-servers/s/aliases/x/api/2.0/mlflow/{ALIAS}",
     "delete_alias", False),
]  # fmt: skip


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
    ids=["canonical", "slashes-and-query", "encoded-slash", "encoded-letter", "decoded-once", "encoded-double-slash",
         "fragment-first", "query-first", "encoded-question-mark", "absolute-form", "absolute-form-upper-scheme",
         "relative", "empty"],
)  # fmt: skip
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

ARTIFACT = re.compile(r"artifact|mpu|upload")


@pytest.mark.parametrize("source", ["get_endpoints", "url_map", "fastapi"])
def test_every_artifact_writing_route_has_a_rule(mlflow_routes, source):
    """Each mutating route of MLflow that names artifacts, uploads or multipart parts is in
    ``ARTIFACT_RULES`` (a write, a delete, or an explicit read), on every prefix."""
    routes = {(m, p) for m, p in mlflow_routes[source] if m in MUTATING and ARTIFACT.search(p)}
    assert routes, "the route walk found no artifact routes"
    uncovered = []
    for method, template in sorted(routes):
        path = _concrete(template)
        for variant in (path, "/mlflow" + path):
            if rules.match_artifact(method, variant) is None:
                uncovered.append(f"{method} {template} ({variant})")
    assert not uncovered, "artifact routes with no decision in checkpoint/rules.py:\n" + "\n".join(uncovered)


def test_every_artifact_rule_names_a_route_mlflow_serves(mlflow_routes):
    served = {(m, _concrete(p)) for m, p in mlflow_routes["url_map"]}
    for rule in rules.ARTIFACT_RULES:
        path = f"/api/2.0/{rule.route}" + ("/42" if rule.where == "path" else "")
        assert (rule.method, path) in served or (rule.method, path.replace("/api/", "/ajax-api/")) in served, rule


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
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/r/api/2.0/mlflow-artifacts/artifacts/y", "write",
         "1/r/api/2.0/mlflow-artifacts/artifacts/y"),
    ],
)  # fmt: skip
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
