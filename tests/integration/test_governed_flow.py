"""The pipeline's promotion, end to end: the MLflow client is stopped, a reviewer approves,
and MLflow ends up with the change, applied once."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import RestException

from tests.support.governed import api, make_model


@pytest.fixture
def pipeline_client(live_checkpoint, monkeypatch) -> MlflowClient:
    """The unmodified MLflow client, pointed at Checkpoint, as alice."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-checked-in-none-mode")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=live_checkpoint.url, registry_uri=live_checkpoint.url)


def test_alias_needs_review_then_applies(live_checkpoint, mlflow_server, pipeline_client):
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)

    with pytest.raises(RestException) as refused:
        pipeline_client.set_registered_model_alias(name, "champion", v2)
    message = str(refused.value)
    print("client error:", message)
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert f"moving alias 'champion' of '{name}' to version {v2} needs review — promote request #" in message
    request_id = int(message.split("promote request #", 1)[1].split(":", 1)[0])
    assert f"{live_checkpoint.url}/checkpoint/requests/{request_id}" in message
    assert direct.get_model_version_by_alias(name, "champion").version == v1  # nothing changed yet

    # The client retrying (or the pipeline re-running) finds the same request.
    with pytest.raises(RestException) as again:
        pipeline_client.set_registered_model_alias(name, "champion", v2)
    assert f"promote request #{request_id}:" in str(again.value)

    opened = api(live_checkpoint.url, "GET", f"/requests/{request_id}").json()
    assert opened["state"] == "open"
    assert opened["author"] == "alice"
    assert opened["champion"]["version"] == v1 and opened["challenger"]["version"] == v2

    own = api(live_checkpoint.url, "POST", f"/requests/{request_id}/reviews", user="alice", json={"verdict": "approve"})
    assert own.status_code == 403, own.text

    approved = api(live_checkpoint.url, "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    print("after approval:", body["state"], body["apply_result"])
    assert body["state"] == "applied"
    assert direct.get_model_version_by_alias(name, "champion").version == v2
    assert [e["kind"] for e in body["events"]] == ["opened", "review_approved", "approved", "applying", "applied"]


def test_stage_transition_with_archive(live_checkpoint, mlflow_server, pipeline_client):
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.transition_model_version_stage(name, v1, "Production")

    with pytest.raises(RestException, match="needs review"):
        pipeline_client.transition_model_version_stage(name, v2, "production", archive_existing_versions=True)
    listed = api(live_checkpoint.url, "GET", f"/requests?model={name}").json()["requests"]
    assert len(listed) == 1 and listed[0]["target"] == "stage:Production"
    assert listed[0]["change"]["archive_existing_versions"] is True

    done = api(live_checkpoint.url, "POST", f"/requests/{listed[0]['id']}/reviews", json={"verdict": "approve"}).json()
    assert done["state"] == "applied", done
    assert direct.get_model_version(name, v2).current_stage == "Production"
    assert direct.get_model_version(name, v1).current_stage == "Archived"
