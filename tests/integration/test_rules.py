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
