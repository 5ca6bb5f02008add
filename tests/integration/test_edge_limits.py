"""Checkpoint takes every request head MLflow takes (issue #18, "Transparent at the edges").

Each case runs against the session's real MLflow directly and through `checkpoint serve`
(gunicorn, as production runs it). Just under MLflow's limits both pass; just over, both refuse,
and Checkpoint's own refusal is JSON in MLflow's error shape. The limits per server are the
measured ones in docs/deploy.md ("Request head limits").
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from mlflow import MlflowClient

from checkpoint.edge import limits
from tests.support.compat import mlflow_major
from tests.support.heads import head_with_field, head_with_fields, head_with_line, send_head
from tests.support.proxy import checkpoint_process

# MLflow 3 (uvicorn + h11) always takes a head of 16 KiB; Checkpoint adds ~200 bytes of
# X-Forwarded-* on the way, so "just under" leaves room for them.
H11_HEAD = 16 * 1024
FORWARDING_ROOM = 512
# Checkpoint forwards 5 fields more than it got (X-Forwarded-For, -Proto, -Host and urllib3's own,
# less Connection), measured: gunicorn's 100 counts them upstream, so through Checkpoint MLflow 2.x
# takes 95 of the caller's. (A proxy must add X-Forwarded-For: MLFLOW.md section 1.5.)
FORWARDED_FIELDS = 5


def _under(major: int) -> dict[str, bytes]:
    if major < 3:  # gunicorn's defaults: line 4094, 100 fields of 8190 bytes with CRLF
        fields = head_with_fields(100 - FORWARDED_FIELDS)
        return {"line": head_with_line(4094), "fields": fields, "field": head_with_field(8188)}
    budget = H11_HEAD - FORWARDING_ROOM
    count = budget // len("X-P9999: v\r\n")
    return {
        "line": head_with_line(budget - 64),
        "fields": head_with_fields(count),
        "field": head_with_field(budget - 64),
    }


def _over(major: int) -> dict[str, bytes]:
    if major < 3:
        return {"line": head_with_line(4095), "fields": head_with_fields(101), "field": head_with_field(8189)}
    # Above h11's 16 KiB plus asyncio's largest read (256 KiB): no arrival of these passes uvicorn.
    return {
        "line": head_with_line(limits.REQUEST_LINE + 1),
        "fields": head_with_fields(limits.FIELDS + 1),
        "field": head_with_field(limits.FIELD_SIZE + 1),
    }


@pytest.mark.parametrize("kind", ["line", "fields", "field"])
def test_a_head_just_under_mlflows_limit_passes_both_ways(kind, mlflow_server, served_checkpoint):
    head = _under(mlflow_major(mlflow_server))[kind]
    direct = send_head(mlflow_server.url, head)
    through = send_head(served_checkpoint.url, head)
    assert (direct.status, through.status) == (200, 200), (direct, through)
    assert through.body == direct.body


@pytest.mark.parametrize("kind", ["line", "fields", "field"])
def test_a_head_just_over_mlflows_limit_is_refused_both_ways(kind, mlflow_server, served_checkpoint):
    major = mlflow_major(mlflow_server)
    head = _over(major)[kind]
    direct = send_head(mlflow_server.url, head)
    assert direct.status in (400, 414, 431), direct
    through = send_head(served_checkpoint.url, head)
    if major >= 3:
        # Over Checkpoint's own bound too: refused before MLflow, in MLflow's JSON shape.
        assert through.status == (414 if kind == "line" else 431), through
        assert through.content_type == "application/json"
        answer = json.loads(through.body)
        assert set(answer) == {"error_code", "message"} and answer["error_code"] == "BAD_REQUEST"
        assert "Checkpoint accepts" in answer["message"]
    else:
        # Checkpoint takes more than gunicorn's defaults: MLflow 2.x itself refuses, as it does directly.
        assert (through.status, through.content_type) == (direct.status, direct.content_type), through


def test_checkpoints_limits_reach_mlflow_3s_whatever_the_arrival():
    """A head uvicorn takes is at most 16 KiB buffered incomplete plus one 256 KiB read."""
    assert limits.REQUEST_LINE >= H11_HEAD + 256 * 1024 and limits.FIELD_SIZE >= limits.REQUEST_LINE
    assert limits.HEADER_BYTES >= max(100 * 8190, limits.FIELD_SIZE) and limits.FIELDS >= 100


@pytest.mark.mlflow3(reason="MLflow 2.x's gunicorn itself refuses a request line over 4,094 bytes")
def test_search_model_versions_with_a_long_filter_works_through_checkpoint(mlflow_server, served_checkpoint):
    """The MLflow client's own call, as a user makes it: ~100 run ids put ~5 KB in the URL."""
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name = f"long-filter-{uuid.uuid4().hex[:8]}"
    direct.create_registered_model(name)
    experiment = direct.create_experiment(f"long-filter-{uuid.uuid4().hex[:8]}")
    runs = [direct.create_run(experiment).info.run_id for _ in range(3)]
    for run_id in runs:
        direct.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    ids = runs + [uuid.uuid4().hex for _ in range(97)]
    query = "run_id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
    assert len(requests.Request("GET", mlflow_server.url, params={"filter": query}).prepare().url) > 4094

    through = MlflowClient(tracking_uri=served_checkpoint.url, registry_uri=served_checkpoint.url)
    found = {c: sorted((v.name, v.version, v.run_id) for v in c.search_model_versions(query)) for c in (direct, through)}
    assert found[through] == found[direct]
    assert {run_id for _, _, run_id in found[through]} == set(runs)


@pytest.mark.mlflow3(reason="the MLflow 2.22 installed here has no UI build to inject into")
@pytest.mark.parametrize("path", ["/", "/static-files/index.html"])
def test_head_of_the_rewritten_page_reports_the_rewritten_length(path, served_checkpoint):
    got = requests.get(served_checkpoint.url + path, timeout=30)
    head = requests.head(served_checkpoint.url + path, timeout=30)
    assert got.status_code == head.status_code == 200
    assert b"checkpoint" in got.content.lower()  # the panel was injected
    assert int(head.headers["Content-Length"]) == len(got.content) == int(got.headers["Content-Length"])
    assert head.content == b""


def test_the_limits_are_settings(mlflow_server, tmp_path):
    """An operator's CHECKPOINT_LIMIT_REQUEST_* reach `checkpoint serve`'s workers."""
    env = {"CHECKPOINT_LIMIT_REQUEST_LINE": "4000", "CHECKPOINT_LIMIT_REQUEST_FIELDS": "50"}
    with checkpoint_process(mlflow_server.url, tmp_path / "checkpoint", **env) as served:
        assert send_head(served.url, head_with_line(4000)).status == 200
        refused = send_head(served.url, head_with_line(4001))
        assert refused.status == 414 and "(4000 bytes)" in json.loads(refused.body)["message"]
        assert send_head(served.url, head_with_fields(50)).status == 200
        assert send_head(served.url, head_with_fields(51)).status == 431
