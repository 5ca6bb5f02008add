"""Upstream faults, beyond tests/integration/test_proxy_failures.py (which covers the proxy's answers on raw
HTTP): the real MLflow client's artifact download and upload through Checkpoint when MLflow
breaks off mid-stream (an error, never a silently short file), every promote-request row
untouched by proxied faults, and a governed call whose apply meets a refused, slow or dropped
MLflow: the request ends ``failed`` with the reason, never stuck in ``applying``, and a retry
against a healthy MLflow applies it exactly once. On SQLite and PostgreSQL where the store is
involved.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator

import pytest
import requests
from mlflow import MlflowClient
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

from checkpoint import create_app
from checkpoint.demo.mlflow_server import free_port
from checkpoint.services import services
from tests.support.governed import api, make_model, unique
from tests.support.hostile import database_dump, registry_state
from tests.support.proxy import FakeUpstream, Received, _Conn, checkpoint_in_thread, pattern
from tests.support.serving import close_app, served
from tests.support.stored import open_delete_alias

READ_TIMEOUT = 1.0
CLIENT_TIMEOUT = 8
FILE_SIZE = 4 * 1024 * 1024


class BrokenArtifactStore(FakeUpstream):
    """A fake MLflow whose artifact routes break the way a crashing server does: a download
    sends its headers and a quarter of the file, then closes; an upload is reset after 256 KiB.
    Listing says the path is a file, so the MLflow client goes on to download it."""

    def do_api(self, request: Received, conn: _Conn) -> bool:
        if request.method == "GET" and request.path.endswith("/mlflow-artifacts/artifacts"):
            self.read_body(request, conn)
            self.answer(conn, 200, [("Content-Type", "application/json")], json.dumps({"files": []}).encode())
            return True
        if request.method == "GET" and "/mlflow-artifacts/artifacts/" in request.path:
            self.read_body(request, conn)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {FILE_SIZE}\r\n\r\n"
            conn.send(head.encode() + pattern(FILE_SIZE)[: FILE_SIZE // 4])
            conn.sock.shutdown(socket.SHUT_RDWR)
            return False
        if request.method == "PUT":
            self.read_body(request, conn, limit=256 * 1024)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        return self.do_echo(request, conn)


@pytest.fixture(scope="module")
def broken_store() -> Iterator[BrokenArtifactStore]:
    fake = BrokenArtifactStore()
    yield fake
    fake.stop()


@pytest.fixture
def in_front_of_broken(broken_store, database_url, tmp_path) -> Iterator[tuple[str, object]]:
    """Checkpoint in front of the broken store, on SQLite and PostgreSQL, with a request in its
    database (written through the store, which needs no MLflow) so the dump has rows to compare."""
    application = create_app(
        {
            "registry_url": broken_store.url,
            "database_url": database_url,
            "data_dir": tmp_path,
            "upstream_read_timeout": READ_TIMEOUT,
        }
    )
    open_delete_alias(services(application).store)
    with served(application, close=False) as url:
        yield url, services(application).engine
    close_app(application)


@pytest.fixture
def quick_client(monkeypatch) -> None:
    """The MLflow client without its minutes of retries, so a failure shows at once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(CLIENT_TIMEOUT))


def test_mlflow_client_download_cut_off_is_an_error_not_a_short_file(in_front_of_broken, quick_client, tmp_path):
    url, engine = in_front_of_broken
    before = database_dump(engine)
    repo = HttpArtifactRepository(f"{url}/api/2.0/mlflow-artifacts/artifacts/0/{unique('run')}/artifacts")
    destination = tmp_path / "out"
    destination.mkdir()
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whichever error the client raises, it must raise
        repo.download_artifacts("model.bin", dst_path=str(destination))
    assert time.monotonic() - started < 20
    shown = f"{type(caught.value).__name__}: {caught.value}"
    assert any(word in shown.lower() for word in ("connection", "incomplete", "broken", "chunk", "read")), shown
    whole = [p for p in destination.rglob("*") if p.is_file() and p.stat().st_size == FILE_SIZE]
    assert not whole, "the client must not end up with a file of the announced size"
    assert database_dump(engine) == before


def test_mlflow_client_upload_reset_is_an_error(in_front_of_broken, broken_store, quick_client, tmp_path):
    url, engine = in_front_of_broken
    before = database_dump(engine)
    run = unique("run")
    local = tmp_path / "weights.bin"
    local.write_bytes(pattern(8 * 1024 * 1024, seed=3))
    repo = HttpArtifactRepository(f"{url}/api/2.0/mlflow-artifacts/artifacts/0/{run}/artifacts")
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the client reports it in its own words
        repo.log_artifact(str(local))
    shown = f"{type(caught.value).__name__}: {caught.value}"
    assert "502" in shown or "connection" in shown.lower() or "aborted" in shown.lower(), shown
    (seen,) = broken_store.wait_for(run, complete=False)
    assert 0 < len(seen.body) < local.stat().st_size
    assert database_dump(engine) == before


def test_raw_download_cut_off_is_broken_and_leaves_every_stored_row_alone(in_front_of_broken):
    url, engine = in_front_of_broken
    before = database_dump(engine)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        _ = requests.get(f"{url}/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/f.bin", timeout=CLIENT_TIMEOUT).content
    assert database_dump(engine) == before


# -- governed calls and applies against a failing MLflow ---------------------------------------


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def hanging() -> Iterator[FakeUpstream]:
    """A fake MLflow whose every path under ``/slow`` or ``/drop`` hangs or hangs up."""
    fake = FakeUpstream()
    yield fake
    fake.stop()


def test_governed_call_with_mlflow_down_is_a_json_502_and_opens_nothing(database_url, tmp_path):
    dead = _dead_url()
    with checkpoint_in_thread(dead, tmp_path, database_url=database_url) as url:
        import sqlalchemy as sa

        engine = sa.create_engine(database_url)
        before = database_dump(engine)
        answer = requests.post(
            f"{url}/api/2.0/mlflow/model-versions/transition-stage",
            auth=("alice", "x"),
            json={"name": "m", "version": "1", "stage": "Staging"},
            timeout=CLIENT_TIMEOUT,
        )
        assert answer.status_code == 502, answer.text
        assert answer.headers["Content-Type"] == "application/json"
        payload = answer.json()
        assert set(payload) == {"error_code", "message"}
        assert payload["error_code"] == "TEMPORARILY_UNAVAILABLE" and dead in payload["message"]
        assert database_dump(engine) == before
        engine.dispose()


@pytest.mark.parametrize("fault", ["refused", "slow", "dropped"])
def test_apply_meeting_an_upstream_fault_ends_failed_then_retry_applies(fault, mlflow_server, database_url, hanging, tmp_path):
    """Two Checkpoints share one database: a healthy one opens the request; the approval lands on
    one whose MLflow is refused / silent past the read timeout / hangs up. The request must end
    ``failed`` with the reason, MLflow unchanged; a retry on the healthy one applies it."""
    name, (v1, v2) = make_model(mlflow_server.url)
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    client.set_registered_model_alias(name, "champion", v1)
    broken_url = {"refused": _dead_url(), "slow": f"{hanging.url}/slow", "dropped": f"{hanging.url}/drop"}[fault]
    healthy = create_app({"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path / "a"})
    broken = create_app(
        {
            "registry_url": broken_url,
            "database_url": database_url,
            "data_dir": tmp_path / "b",
            "upstream_read_timeout": READ_TIMEOUT,
        }
    )
    with served(healthy) as good, served(broken) as bad:
        opened = api(
            good,
            "POST",
            "/requests",
            user="alice",
            json={"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}},
        )
        assert opened.status_code == 201, opened.text
        request_id = opened.json()["id"]
        before = registry_state(mlflow_server.url, [name])

        started = time.monotonic()
        reviewed = api(bad, "POST", f"/requests/{request_id}/reviews", user="dave", json={"verdict": "approve"})
        assert time.monotonic() - started < 30, "an apply against a silent MLflow must give up at the read timeout"
        assert reviewed.status_code == 200, reviewed.text
        item = reviewed.json()
        assert item["state"] == "failed", item
        assert item["state_reason"] and ("MLflow" in item["state_reason"] or "unexpected" in item["state_reason"]), item
        assert item["apply_result"], item
        stored = api(good, "GET", f"/requests/{request_id}").json()
        assert stored["state"] == "failed"
        kinds = [e["kind"] for e in stored["events"]]
        assert "apply_failed" in kinds and kinds.index("applying") < kinds.index("apply_failed"), kinds
        assert registry_state(mlflow_server.url, [name]) == before, "a failed apply changed MLflow"

        retried = api(good, "POST", f"/requests/{request_id}/retry", user="dave")
        assert retried.status_code == 200, retried.text
        assert retried.json()["state"] == "applied", retried.json()
        assert client.get_model_version_by_alias(name, "champion").version == v2
        kinds = [e["kind"] for e in api(good, "GET", f"/requests/{request_id}").json()["events"]]
        assert kinds.count("applied") == 1 and kinds.count("applying") == 2
