"""Any two versions compared (issue 17 §5), against a real MLflow: the page and the JSON API give the
request page's diff of ``b`` against ``a`` (same model or across models), offer the promote request
that would put ``b`` where ``a`` is, refuse bad references with 400/404 and unreadable models with
403 (a real MLflow basic-auth app), and read the caller's MLflow workspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from html import unescape
from importlib import resources
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
import yaml
from mlflow import MlflowClient

from checkpoint import create_app, urls
from tests.support.apps import LiveCheckpoint, live
from tests.support.auth import ADMIN, as_user, grant, mlflow_mode
from tests.support.openapi import check_answer
from tests.support.versions import fraud_model
from tests.support.workspaces import Direct, make_workspace

HTML = {"Accept": "text/html"}


def compare_path(model: str, html: bool) -> str:
    return f"/checkpoint{'' if html else '/api/v1'}/models/{quote(model, safe='')}/compare"


def compare(base: str, model: str, user: str = "carol", html: bool = False, **params) -> requests.Response:
    """The page (``html``) or the API, as ``user`` (claimed through Basic auth)."""
    headers = HTML if html else {}
    return requests.get(f"{base}{compare_path(model, html)}", params=params, auth=(user, "x"), headers=headers, timeout=60)


@pytest.fixture(scope="module")
def document() -> dict:
    """The OpenAPI document the API serves (``/openapi.json`` is this file, parsed)."""
    return yaml.safe_load(resources.files("checkpoint").joinpath("openapi.yaml").read_text())


def by_key(rows: list[dict]) -> dict:
    return {r["key"]: r for r in rows}


def test_version_against_champion_as_json_and_page(sqlite_checkpoint, mlflow_server, document):
    base = sqlite_checkpoint.url
    name = fraud_model(mlflow_server.url)
    answer = compare(base, name, a="@champion", b="3")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    check_answer(document, "/models/{name}/compare", "get", "200", data)
    assert (data["model"], data["workspace"]) == (name, "default")
    assert data["a"] == {"name": name, "version": "1", "asked": "@champion", "stage": "Production", "aliases": ["champion"]}
    assert (data["b"]["version"], data["b"]["asked"], data["b"]["aliases"]) == ("3", "3", [])
    diff = data["diff"]
    assert diff["challenger_problems"] == [] and diff["champion_problems"] == []
    assert (diff["challenger"]["version"], diff["champion"]["version"]) == ("3", "1")
    changed = by_key(diff["params"]["changed"])
    assert set(changed) == {"C", "max_iter"}
    assert (changed["C"]["champion"]["full"], changed["C"]["challenger"]["full"]) == ("1.0", "0.5")
    metrics = by_key(diff["metrics"]["changes"])
    assert metrics["accuracy"]["verdict"] == "better" and metrics["loss"]["verdict"] == "worse"
    assert (metrics["drift"]["verdict"], metrics["drift"]["challenger"], metrics["drift"]["champion"]) == ("new", "NaN", None)
    assert "NaN" not in answer.text.replace('"NaN"', "")  # valid JSON: no bare NaN token
    assert diff["breaking"] and [c["key"] for c in diff["signature"]["changes"]] == ["country"]
    assert [e["key"] for e in diff["requirements"]["added"]] == ["scipy"]
    # The request this comparison suggests: v3 takes @champion and Production, each through the form.
    assert [p["change"] for p in data["promote"]] == [
        {"kind": "set_alias", "name": name, "alias": "champion", "version": "3"},
        {"kind": "transition", "name": name, "version": "3", "stage": "Production", "archive_existing_versions": False},
    ]
    assert data["promote"][0]["asked"] == f"set @champion of {name} to v3"
    assert data["held"] == []
    form = requests.get(data["promote"][0]["url"], auth=("alice", "x"), headers=HTML, timeout=30)
    assert form.status_code == 200, form.text
    assert f"moving alias &#39;champion&#39; of &#39;{name}&#39; to version 3" in form.text
    assert data["page_url"] == urls.compare_page(base, name, "@champion", "3")

    page = compare(base, name, html=True, a="@champion", b="3")
    assert page.status_code == 200, page.text
    text = unescape(page.text)
    assert f"Compare {name} v3 with v1" in text
    assert f"Diff: {name} v3 (challenger) against {name} v1 (champion)" in text  # the request page's own section
    assert "⚠ breaking" in text and "scipy" in text
    assert f"Open a promote request for this: set @champion of {name} to v3" in text
    token = parse_qs(urlsplit(data["promote"][0]["url"]).query)["change"][0]
    assert f"/checkpoint/requests/new?change={token}" in text
    # Both together: one link to the form as a batch of the two (reviewed once, all or nothing).
    second = parse_qs(urlsplit(data["promote"][1]["url"]).query)["change"][0]
    together = f"/checkpoint/requests/new?change={token}&change={second}"
    assert "Open one batch request for all 2" in text and together in text
    batch_form = requests.get(f"{base}{together}", auth=("alice", "x"), headers=HTML, timeout=30)
    assert batch_form.status_code == 200 and "New batch request" in batch_form.text
    assert f"Change 2 of 2: moving '{name}' version 3 to stage Production" in unescape(batch_form.text)
    listed = requests.get(f"{base}/checkpoint/api/v1/requests", auth=("bob", "x"), timeout=30)
    assert listed.status_code == 200 and listed.json()["requests"] == []  # comparing opens nothing


def test_a_version_against_itself_offers_nothing_to_open(sqlite_checkpoint, mlflow_server, document):
    base = sqlite_checkpoint.url
    name = fraud_model(mlflow_server.url)
    data = compare(base, name, a="Production", b="@champion").json()
    check_answer(document, "/models/{name}/compare", "get", "200", data)
    assert (data["a"]["version"], data["b"]["version"]) == ("1", "1")
    assert data["promote"] == [] and data["held"] == ["@champion", "Production"]
    assert data["diff"]["params"]["changed"] == [] and len(data["diff"]["params"]["unchanged"]) == 2
    page = unescape(compare(base, name, html=True, a="Production", b="@champion").text)
    assert "B already holds @champion, Production: no promote request to open." in page
    # A version that holds nothing has nothing for b to take over: said, nothing offered.
    data = compare(base, name, a="2", b="latest").json()
    assert (data["a"]["version"], data["b"]["version"], data["promote"], data["held"]) == ("2", "3", [], [])
    page = unescape(compare(base, name, html=True, a="2", b="latest").text)
    assert "A holds no alias and is in no promoted stage" in page


def test_across_models_offers_the_copy_into_a_model(sqlite_checkpoint, mlflow_server, document):
    """prod.fraud v1 (a copy of fraud v1) against fraud v3: the promote request copies fraud v3 into prod."""
    base = sqlite_checkpoint.url
    name = fraud_model(mlflow_server.url)
    prod = f"prod.{name}"
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    direct.copy_model_version(f"models:/{name}/1", prod)
    data = compare(base, prod, a="1", b="3", b_model=name).json()
    check_answer(document, "/models/{name}/compare", "get", "200", data)
    assert (data["a"]["name"], data["a"]["version"], data["b"]["name"], data["b"]["version"]) == (prod, "1", name, "3")
    copy = {"kind": "create_version", "name": prod, "source": f"models:/{name}/3", "body": {}, "resolved": ""}
    assert [p["change"] for p in data["promote"]] == [copy]
    assert data["diff"]["provenance"]["champion"]["name"] == prod
    assert by_key(data["diff"]["params"]["changed"])["C"]["challenger"]["full"] == "0.5"  # the copy reads its source's run
    page = compare(base, prod, html=True, a="1", b="3", b_model=name)
    text = unescape(page.text)
    assert page.status_code == 200 and f"Compare {name} v3 with {prod} v1" in text
    assert f"Open a promote request for this: copy {name} v3 into {prod} as a new version" in text
    form = requests.get(data["promote"][0]["url"], auth=("alice", "x"), headers=HTML, timeout=30)
    assert form.status_code == 200 and f"copying &#39;{name}&#39; version 3 into &#39;{prod}&#39;" in form.text


BAD = [
    # (parameters, status, error_code, words in the message)
    ({"b": "2"}, 400, "INVALID_PARAMETER_VALUE", "a is missing"),
    ({"a": "1"}, 400, "INVALID_PARAMETER_VALUE", "b is missing"),
    ({"a": "1", "b": "  "}, 400, "INVALID_PARAMETER_VALUE", "b is missing"),
    ({"a": "abc", "b": "2"}, 400, "INVALID_PARAMETER_VALUE", "a 'abc' is not a version number"),
    ({"a": "1", "b": "0"}, 400, "INVALID_PARAMETER_VALUE", "numbered from 1"),
    ({"a": "-3", "b": "2"}, 400, "INVALID_PARAMETER_VALUE", "numbered from 1"),
    ({"a": "9" * 5000, "b": "2"}, 400, "INVALID_PARAMETER_VALUE", "is not a version number"),
    ({"a": "@", "b": "2"}, 400, "INVALID_PARAMETER_VALUE", "names no alias"),
    ({"a": "None", "b": "2"}, 400, "INVALID_PARAMETER_VALUE", "give one version"),
    ({"a": "<script>x</script>", "b": "2"}, 400, "INVALID_PARAMETER_VALUE", "a '<script>x</script>' is not"),
    ({"a": "1", "b": "2", "b_model": "bad\nname"}, 400, "INVALID_PARAMETER_VALUE", "b_model"),
    ({"a": "1", "b": "2", "workspace": "Not A Workspace!"}, 400, "INVALID_PARAMETER_VALUE", "workspace"),
    ({"a": "99", "b": "2"}, 404, "RESOURCE_DOES_NOT_EXIST", "a: '{name}' version 99 does not exist"),
    ({"a": "@nope", "b": "2"}, 404, "RESOURCE_DOES_NOT_EXIST", "a: a version of '{name}' with alias @nope does not exist"),
    ({"a": "1", "b": "Staging"}, 404, "RESOURCE_DOES_NOT_EXIST", "b: a version of '{name}' in stage Staging does not exist"),
    ({"a": "1", "b": "2", "b_model": "no-such"}, 404, "RESOURCE_DOES_NOT_EXIST", "b: there is no registered model 'no-such'"),
]


@pytest.mark.parametrize(("params", "status", "code", "words"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_references_are_clear_errors(sqlite_checkpoint, mlflow_server, document, params, status, code, words):
    """Each as JSON and as the page (with the form to fix it); nothing is opened or stored."""
    base = sqlite_checkpoint.url
    name = fraud_model(mlflow_server.url) if status == 404 else "fraud-any"
    words = words.format(name=name)
    answer = compare(base, name, **params)
    assert answer.status_code == status, answer.text
    check_answer(document, "/models/{name}/compare", "get", str(status), answer.json())
    assert answer.json()["error_code"] == code and words in answer.json()["message"]
    page = compare(base, name, html=True, **params)
    assert page.status_code == status and page.headers["Content-Type"].startswith("text/html")
    assert "<script>x" not in page.text  # typed text comes back escaped
    assert words in unescape(page.text)
    if "workspace" not in params:
        assert 'name="a"' in page.text  # the form, to fix it
    listed = requests.get(f"{base}/checkpoint/api/v1/requests", auth=("bob", "x"), timeout=30)
    assert listed.status_code == 200 and listed.json()["requests"] == []


def test_unknown_model_and_the_empty_form(sqlite_checkpoint):
    base = sqlite_checkpoint.url
    answer = compare(base, "no-such-model", a="1", b="2")
    assert answer.status_code == 404 and answer.json()["message"] == "a: there is no registered model 'no-such-model'"
    form = compare(base, "no-such-model", html=True)  # nothing asked yet: the form alone
    assert form.status_code == 200 and 'id="cmp-a"' in form.text and "cp-flash-error" not in form.text
    assert compare(base, "no-such-model").status_code == 400  # the API has no form


# -- workspaces -----------------------------------------------------------------------------


@pytest.fixture
def workspace_checkpoint(mlflow_workspaces_server, sqlite_url, tmp_path) -> Iterator[LiveCheckpoint]:
    app = create_app({"registry_url": mlflow_workspaces_server.url, "database_url": sqlite_url, "data_dir": tmp_path})
    with live(app, sqlite_url) as served:
        yield served


def test_compare_reads_the_asked_workspace(workspace_checkpoint, mlflow_workspaces_server, document):
    """One name in the default workspace and in B (each v1 champion there): each compare reads its own."""
    url = mlflow_workspaces_server.url
    team = make_workspace(url, "ws-cmp")
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    Direct(url, "").seed(name, True, "default")
    Direct(url, team).seed(name, True, "team")
    base = workspace_checkpoint.url
    in_team = compare(base, name, a="@champion", b="2", workspace=team)
    assert in_team.status_code == 200, in_team.text
    data = in_team.json()
    check_answer(document, "/models/{name}/compare", "get", "200", data)
    trained = by_key(data["diff"]["params"]["changed"])["trained_in"]
    assert (data["workspace"], trained["champion"]["full"], trained["challenger"]["full"]) == (team, "team-1", "team-2")
    assert data["promote"][0]["change"]["workspace"] == team
    assert data["page_url"].endswith(f"workspace={team}")
    default = compare(base, name, a="@champion", b="2").json()
    assert by_key(default["diff"]["params"]["changed"])["trained_in"]["champion"]["full"] == "default-1"
    only_team = f"team-only-{uuid.uuid4().hex[:6]}"
    Direct(url, team).seed(only_team, False, "team")
    assert compare(base, only_team, a="1", b="2").status_code == 404  # not in the default workspace
    assert compare(base, only_team, a="1", b="2", workspace=team).status_code == 200
    page = compare(base, name, html=True, a="@champion", b="2", workspace=team)
    assert page.status_code == 200 and f'name="workspace" value="{team}"' in page.text


# -- who may compare (a real MLflow basic-auth app) ---------------------------------------


@pytest.fixture
def visible(auth_mlflow, sqlite_url, tmp_path) -> Iterator[LiveCheckpoint]:
    with live(create_app(mlflow_mode(auth_mlflow, sqlite_url, tmp_path)), sqlite_url) as served:
        yield served


def test_only_who_may_read_both_models_sees_the_diff(visible, auth_mlflow, monkeypatch):
    """dave has DENY on the secret model: refused whichever side it is on, with nothing of the diff."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    secret, other = fraud_model(auth_mlflow.url), fraud_model(auth_mlflow.url)
    for user, permission in (("carol", "READ"), ("dave", "DENY")):
        grant(auth_mlflow.url, user, secret, permission)
    base = visible.url

    def call(user: str, model: str, html: bool = False, **params) -> requests.Response:
        headers = HTML if html else {}
        return requests.get(f"{base}{compare_path(model, html)}", params=params, auth=as_user(user), headers=headers, timeout=60)

    asks = [
        (secret, {"a": "@champion", "b": "3"}),
        (other, {"a": "1", "b": "3", "b_model": secret}),
        (secret, {"a": "99", "b": "3"}),  # no existence told either
        (secret, {}),  # nor the empty form
    ]
    for model, params in asks:
        for html in (False, True):
            refused = call("dave", model, html, **params)
            assert refused.status_code == 403, (model, params, refused.text)
            assert all(word not in refused.text for word in ("0.5", "scipy", "Production", "RESOURCE_DOES_NOT_EXIST"))
            if not html:
                assert refused.json() == {
                    "error_code": "PERMISSION_DENIED",
                    "message": "Permission denied: MLflow does not let you read this model",
                }
    assert call("dave", other, a="1", b="3").status_code == 200  # his own reads still work
    for model, params in asks[:2]:
        allowed = call("carol", model, **params)
        assert allowed.status_code == 200, allowed.text
        assert by_key(allowed.json()["diff"]["params"]["changed"])["C"]["challenger"]["full"] == "0.5"
        assert call("carol", model, html=True, **params).status_code == 200
    anonymous = requests.get(f"{base}/checkpoint/api/v1/models/{quote(secret)}/compare", params=asks[0][1], timeout=30)
    assert anonymous.status_code == 401
