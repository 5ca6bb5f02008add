"""A batch whose *second* change is about a model the viewer may not read in MLflow is, for that
viewer, a request that does not exist (``mlflow`` identity mode, a real MLflow with its
basic-auth app): the lists (page and API, filtered, searched, paged), the inbox and
``?awaiting=me``, the panel's summary and the request itself. dave has DENY on the secret model
and READ on the other; the rule lists him as a reviewer, so nothing but visibility keeps the
batch from his inbox. MLflow is read back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from mlflow import MlflowClient

from checkpoint import create_app
from tests.support.apps import LiveCheckpoint, live
from tests.support.auth import ADMIN, as_user, dump, grant, mlflow_mode
from tests.support.governed import make_model

POLICY = """
rules:
  - name: listed
    models: ["*"]
    reviewers: [dave, bob]
    required_approvals: 1
"""


@pytest.fixture
def visible(auth_mlflow, database_url, tmp_path) -> Iterator[LiveCheckpoint]:
    """On SQLite and PostgreSQL: the lists' filtering is SQL."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    app = create_app(mlflow_mode(auth_mlflow, database_url, tmp_path, policy_file=policy, background=False))
    with live(app, database_url) as served:
        yield served


def _aliases(auth_mlflow, *names: str) -> dict:
    direct = MlflowClient(tracking_uri=auth_mlflow.url, registry_uri=auth_mlflow.url)
    return {name: dict(direct.get_registered_model(name).aliases) for name in names}


def test_a_batch_touching_an_unreadable_model_second_is_hidden_everywhere(visible, auth_mlflow, monkeypatch):
    base = visible.url
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    shared, (_, s2) = make_model(auth_mlflow.url)  # default READ: dave may read it
    secret, (_, x2) = make_model(auth_mlflow.url)
    for user, permission in (("alice", "EDIT"), ("bob", "MANAGE"), ("dave", "DENY")):
        grant(auth_mlflow.url, user, secret, permission)

    def call(user: str, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{base}{path}", auth=as_user(user), timeout=30, allow_redirects=False, **kwargs)

    single = call(
        "alice",
        "POST",
        "/checkpoint/api/v1/requests",
        json={"change": {"kind": "set_alias", "name": shared, "alias": "challenger", "version": s2}, "title": "Hush one"},
    )
    assert single.status_code == 201, single.text
    changes = [
        {"kind": "set_alias", "name": shared, "alias": "champion", "version": s2},
        {"kind": "set_alias", "name": secret, "alias": "champion", "version": x2},
    ]
    opened = call("alice", "POST", "/checkpoint/api/v1/requests", json={"changes": changes, "title": "Hush batch"})
    assert opened.status_code == 201, opened.text
    batch_id, single_id = opened.json()["id"], single.json()["id"]
    before_db, before_mlflow = dump(visible.database_url), _aliases(auth_mlflow, shared, secret)

    # The control: bob (MANAGE on both) sees the batch everywhere dave must not.
    bob_list = call("bob", "GET", "/checkpoint/api/v1/requests", params={"model": shared}).json()["requests"]
    assert batch_id in [r["id"] for r in bob_list]
    assert batch_id in [r["id"] for r in call("bob", "GET", "/checkpoint/api/v1/requests?awaiting=me").json()["requests"]]

    for path in (f"/checkpoint/api/v1/requests/{batch_id}", f"/checkpoint/requests/{batch_id}"):
        answer = call("dave", "GET", path)
        assert answer.status_code == 404 and secret not in answer.text, (path, answer.text[:300])
    refused = call("dave", "POST", f"/checkpoint/api/v1/requests/{batch_id}/reviews", json={"verdict": "approve"})
    assert refused.status_code == 404

    for params in ({}, {"model": shared}, {"q": "Hush"}, {"model": shared, "target": "alias:champion"}):
        listed = call("dave", "GET", "/checkpoint/api/v1/requests", params=params).json()
        assert batch_id not in [r["id"] for r in listed["requests"]], params
        assert secret not in str(listed), params
    first = call("dave", "GET", "/checkpoint/api/v1/requests", params={"limit": "1"}).json()
    assert [r["id"] for r in first["requests"]] == [single_id] and first["next_cursor"] is None  # a full page, no hint
    awaiting = call("dave", "GET", "/checkpoint/api/v1/requests?awaiting=me").json()["requests"]
    assert [r["id"] for r in awaiting] == [single_id]
    for path in ("/checkpoint/requests?state=all", f"/checkpoint/requests?model={shared}", "/checkpoint/requests?q=Hush",
                 "/checkpoint/inbox", "/checkpoint/requests?awaiting=me"):  # fmt: skip
        page = call("dave", "GET", path)
        assert page.status_code == 200 and secret not in page.text, path
        assert f'/checkpoint/requests/{batch_id}"' not in page.text and f'/checkpoint/requests/{single_id}"' in page.text, path
    summary = call("dave", "GET", "/checkpoint/api/v1/summary", params={"model": shared}).json()
    bob_summary = call("bob", "GET", "/checkpoint/api/v1/summary", params={"model": shared}).json()
    assert [r["id"] for r in summary["requests"]] == [single_id] and summary["open_for_model"] == 1
    assert bob_summary["open_for_model"] == 2 and summary["open"] == bob_summary["open"] - 1
    assert summary["awaiting_me"] == 1

    assert dump(visible.database_url) == before_db
    assert _aliases(auth_mlflow, shared, secret) == before_mlflow == {shared: {}, secret: {}}
