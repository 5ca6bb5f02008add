"""A governed call that would change nothing (issue #17 §4.3): answered "already true" from
MLflow's state read at that moment, with MLflow's own answer for a client, a 409 for
Checkpoint's API; no request opened, and nothing sent to MLflow."""

from __future__ import annotations

import base64
import json
import re

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from tests.support.governed import api, make_model
from tests.support.openapi import check_answer


@pytest.fixture
def pipeline_client(live_checkpoint, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-checked-in-none-mode")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=live_checkpoint.url, registry_uri=live_checkpoint.url)


@pytest.fixture
def direct(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def _requests_for(base: str, name: str) -> list[dict]:
    return api(base, "GET", f"/requests?model={name}").json()["requests"]


def test_alias_already_held_answers_as_mlflow(live_checkpoint, mlflow_server, pipeline_client, direct):
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)

    pipeline_client.set_registered_model_alias(name, "champion", v1)  # no exception: what MLflow does
    body = {"name": name, "alias": "champion", "version": v1}
    ours = requests.post(
        f"{live_checkpoint.url}/api/2.0/mlflow/registered-models/alias", json=body, auth=("alice", "x"), timeout=30
    )
    theirs = requests.post(f"{mlflow_server.url}/api/2.0/mlflow/registered-models/alias", json=body, timeout=30)
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()) == (200, {})
    assert _requests_for(live_checkpoint.url, name) == []

    # Judged on MLflow's state now: once v2 holds it, asking for v1 is a real change again.
    direct.set_registered_model_alias(name, "champion", v2)
    with pytest.raises(RestException, match="needs review"):
        pipeline_client.set_registered_model_alias(name, "champion", v1)
    assert len(_requests_for(live_checkpoint.url, name)) == 1
    assert direct.get_model_version_by_alias(name, "champion").version == v2


def test_stage_already_held(live_checkpoint, mlflow_server, pipeline_client, direct):
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.transition_model_version_stage(name, v1, "Production")
    direct.transition_model_version_stage(name, v2, "Production")

    answered = pipeline_client.transition_model_version_stage(name, v1, "production")
    assert answered.version == v1 and answered.current_stage == "Production"
    assert _requests_for(live_checkpoint.url, name) == []

    # Archiving the others would move v2: a real change, governed.
    with pytest.raises(RestException, match="needs review"):
        pipeline_client.transition_model_version_stage(name, v1, "Production", archive_existing_versions=True)
    assert direct.get_model_version(name, v2).current_stage == "Production"
    assert len(_requests_for(live_checkpoint.url, name)) == 1


def test_copy_of_what_prod_already_has(live_checkpoint, mlflow_server, pipeline_client, direct):
    name, (v1, v2) = make_model(mlflow_server.url)
    prod = f"prod.{name}"
    made = direct.copy_model_version(f"models:/{name}/{v1}", prod)

    again = pipeline_client.copy_model_version(f"models:/{name}/{v1}", prod)
    assert (again.name, again.version, again.source) == (prod, made.version, made.source)
    assert len(direct.search_model_versions(f"name = '{prod}'")) == 1
    assert _requests_for(live_checkpoint.url, prod) == []

    # A copy of another version is a real change.
    with pytest.raises(MlflowException, match="needs review"):
        pipeline_client.copy_model_version(f"models:/{name}/{v2}", prod)
    assert len(_requests_for(live_checkpoint.url, prod)) == 1
    assert len(direct.search_model_versions(f"name = '{prod}'")) == 1


def test_api_and_form_say_already_true(live_checkpoint, mlflow_server, direct):
    name, (v1, _v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v1}

    refused = api(live_checkpoint.url, "POST", "/requests", user="alice", json={"change": change})
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"].startswith("already true: moving alias 'champion'")
    document = requests.get(f"{live_checkpoint.url}/checkpoint/api/v1/openapi.json", timeout=30).json()
    check_answer(document, "/requests", "post", "409", refused.json())

    # The form MLflow's UI links to says the same, on the page, and opens nothing.
    token = base64.urlsafe_b64encode(json.dumps(change).encode()).decode().rstrip("=")
    browser = requests.Session()
    browser.auth = ("alice", "x")
    page = browser.get(f"{live_checkpoint.url}/checkpoint/requests/new", params={"change": token}, timeout=30)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"change": token, "title": "again", "description": "", "reviewers": "", "csrf_token": csrf}
    posted = browser.post(f"{live_checkpoint.url}/checkpoint/requests/new", data=form, timeout=30, allow_redirects=False)
    assert posted.status_code == 409, posted.text[:500]
    assert "already true: moving alias &#39;champion&#39;" in posted.text
    assert _requests_for(live_checkpoint.url, name) == []
