"""The OpenAPI document served at /checkpoint/api/v1/openapi.json is the API.

Its operations are exactly the Flask routes under /checkpoint/api/v1 (path and method),
it is a valid OpenAPI 3 document, and real answers fit its schemas.
"""

from __future__ import annotations

import copy
import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from tests.support.governed import unique
from tests.support.openapi import check_answer as _check
from tests.support.openapi import resolve as _resolve

PREFIX = "/checkpoint/api/v1"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
AUTOMATIC = {"HEAD", "OPTIONS"}  # Flask adds these to every route; they are not operations
AUTH = {"Authorization": "Basic YWxpY2U6eA=="}  # alice:x


def _document(client) -> dict:
    answer = client.get(f"{PREFIX}/openapi.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    return answer.get_json()


@pytest.fixture
def document(client) -> dict:
    return _document(client)


def openapi_path(rule: str) -> str:
    """``/checkpoint/api/v1/requests/<int:request_id>`` → ``/requests/{request_id}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.removeprefix(PREFIX))


def flask_operations(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == PREFIX or rule.rule.startswith(PREFIX + "/"):
            found |= {(method.lower(), openapi_path(rule.rule)) for method in rule.methods - AUTOMATIC}
    return found


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS}


def test_openapi_path_conversion():
    assert openapi_path(f"{PREFIX}/requests/<int:request_id>/reviews") == "/requests/{request_id}/reviews"
    assert openapi_path(f"{PREFIX}/a/<name>/b/<path:rest>") == "/a/{name}/b/{rest}"
    assert openapi_path(f"{PREFIX}/which") == "/which"


def test_document_and_routes_name_the_same_operations(app, document):
    routes, documented = flask_operations(app), documented_operations(document)
    assert ("get", "/requests/{request_id}") in routes  # the conversion found the API's routes at all
    assert routes - documented == set(), "routes missing from openapi.yaml"
    assert documented - routes == set(), "openapi.yaml documents operations no route serves"
    assert [server["url"] for server in document["servers"]] == [PREFIX]
    # Every route of the API blueprint lives under the documented prefix.
    api_rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")]
    assert api_rules and all(r.rule.startswith(PREFIX + "/") for r in api_rules)


def _path_parameters(document: dict, path: str, operation: dict) -> set[str]:
    declared = [*document["paths"][path].get("parameters", []), *operation.get("parameters", [])]
    resolved = [_resolve(document, p) for p in declared]
    return {p["name"] for p in resolved if p["in"] == "path" and p.get("required")}


def test_path_parameters_are_declared_and_typed_like_the_routes(app, document):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(PREFIX + "/"):
            continue
        path = openapi_path(rule.rule)
        for method in rule.methods - AUTOMATIC:
            operation = document["paths"][path][method.lower()]
            assert _path_parameters(document, path, operation) == set(rule.arguments), (method, path)
    for item in document["components"]["parameters"].values():
        if item["in"] == "path":
            assert item["schema"]["type"] == "integer"  # every path parameter is an <int:...> route argument


def test_document_is_valid_openapi_3(document):
    assert document["openapi"].startswith("3.")
    validate(document)  # raises on an invalid document
    operation_ids = [op["operationId"] for item in document["paths"].values() for m, op in item.items() if m in HTTP_METHODS]
    assert len(operation_ids) == len(set(operation_ids))


def test_the_validator_catches_a_broken_document(document):
    """The check above can fail: an undeclared path parameter is refused."""
    broken = copy.deepcopy(document)
    broken["paths"]["/requests/{request_id}/nowhere/{other}"] = {
        "get": {"operationId": "broken", "responses": {"200": {"description": "x"}}}
    }
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_error_responses_use_the_error_shape(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            statuses = set(operation["responses"])
            assert any(s.startswith("2") for s in statuses), (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response == {"$ref": "#/components/responses/Error"}, (method, path, status)


# -- real answers against the document's schemas -----------------------------------------


def test_answers_fit_the_documented_schemas(client, document):
    model = unique("openapi")
    change = {"kind": "delete_alias", "name": model, "alias": "champion"}
    created = client.post(f"{PREFIX}/requests", json={"change": change, "title": "fit"}, headers=AUTH)
    assert created.status_code == 201, created.get_data(as_text=True)
    _check(document, "/requests", "post", "201", created.get_json())
    again = client.post(f"{PREFIX}/requests", json={"change": change}, headers=AUTH)
    assert again.status_code == 200
    _check(document, "/requests", "post", "200", again.get_json())
    rid = created.get_json()["id"]
    _check(document, "/requests/{request_id}", "get", "200", client.get(f"{PREFIX}/requests/{rid}").get_json())
    listed = client.get(f"{PREFIX}/requests?model={model}")
    _check(document, "/requests", "get", "200", listed.get_json())
    missing = client.get(f"{PREFIX}/requests/987654")
    assert missing.status_code == 404
    _check(document, "/requests/{request_id}", "get", "404", missing.get_json())
    which = client.get(f"{PREFIX}/which?model={model}&alias=champion")
    assert which.status_code == 200
    _check(document, "/which", "get", "200", which.get_json())
    past = client.get(f"{PREFIX}/which?model={model}&alias=champion&at=2026-11-01T12:00Z")
    assert past.status_code == 200 and past.get_json()["known"] is False
    _check(document, "/which", "get", "200", past.get_json())
    # And the check itself can fail: a wrong type is caught.
    broken = {**created.get_json(), "id": "seven"}
    with pytest.raises(AssertionError, match="'seven' is not of type 'integer'"):
        _check(document, "/requests/{request_id}", "get", "200", broken)


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [("get", "/models/a%0Ab/timeline", "/models/{name}/timeline"), ("post", "/models/a%0Ab/rollback", "/models/{name}/rollback")],
)
def test_a_model_name_no_route_matches_is_a_documented_404(client, document, method, path, route):
    """A name with a line break matches no route (the fuzzer found it): a 404 in the error shape,
    which the document lists for these routes."""
    answer = client.open(f"{PREFIX}{path}", method=method.upper(), json={"target": "alias:champion"}, headers=AUTH)
    assert answer.status_code == 404
    _check(document, route, method, "404", answer.get_json())
