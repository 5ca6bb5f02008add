"""The JSON API fuzzed from its own OpenAPI document (schemathesis), in process over WSGI, in
front of the real MLflow: whatever schemathesis sends, Checkpoint never answers 5xx, answers
only statuses the document lists, and every answer fits the document's schemas.

Bounded: a fixed number of examples per operation and a fixed seed, so a run takes well under
a minute and a failure replays the same way.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from mlflow import MlflowClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import checkpoint
from checkpoint import create_app
from tests.support.databases import migrated_sqlite
from tests.support.governed import api, make_model
from tests.support.serving import close_app, served

SEED = 20240817
EXAMPLES = 30
AUTH = {"Authorization": "Basic " + base64.b64encode(b"fuzzer:x").decode()}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_app(mlflow_server, tmp_path_factory):
    """Checkpoint (SQLite) with a model whose champion is in Production and a few requests, so
    ids 1-3 exist and the fuzzer reaches past the 404s."""
    data_dir = tmp_path_factory.mktemp("fuzz")
    application = create_app({"registry_url": mlflow_server.url, "database_url": migrated_sqlite(data_dir), "data_dir": data_dir})
    name, (v1, v2) = make_model(mlflow_server.url)
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    client.set_registered_model_alias(name, "champion", v1)
    client.transition_model_version_stage(name, v1, "Production")
    with served(application, close=False) as base:  # only to seed through the real API
        for change in (
            {"kind": "set_alias", "name": name, "alias": "champion", "version": v2},
            {"kind": "transition", "name": name, "version": v2, "stage": "Staging"},
            {"kind": "delete_alias", "name": name, "alias": "champion"},
        ):
            assert api(base, "POST", "/requests", user="alice", json={"change": change}).status_code == 201
    yield application
    close_app(application)


# The document as shipped (the file the API serves), loaded at collection time; the calls go
# to the app in process through schemathesis' WSGI transport.
schema = schemathesis.openapi.from_path(str(Path(checkpoint.__file__).parent / "openapi.yaml"))
# Valid calls and calls that break the document (wrong types, missing fields, bad ids): the
# second kind must come back as a documented 4xx, never a 5xx.
schema.config.generation.update(modes=["positive", "negative"])


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzzed_from_its_openapi_document(case, fuzzed_app):
    case.call_and_validate(headers=AUTH, checks=CHECKS, app=fuzzed_app)
