"""`checkpoint serve`'s worker (``edge/serving.py``) lets a busy keep-alive connection keep the
thread that answered it. What that must never cost: a connection waiting for a thread while others
hold theirs, a pipelined request left unanswered (MLflow's uvicorn answers them; gunicorn's gthread
poller never sees bytes already read off the socket), an idle connection held past the keep-alive
or through a stop. One worker with two threads, in front of the fake upstream."""

from __future__ import annotations

import base64
import http.client
import json
import select
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow import MlflowClient

from tests.support.governed import make_model
from tests.support.proxy import CheckpointProcess, FakeUpstream, checkpoint_process

THREADS = 2


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.stop()


@pytest.fixture
def served(upstream, tmp_path) -> Iterator[CheckpointProcess]:
    with checkpoint_process(
        upstream.url, tmp_path / "served", CHECKPOINT_WORKERS="1", CHECKPOINT_THREADS=str(THREADS)
    ) as process:
        yield process


def _connect(served: CheckpointProcess) -> http.client.HTTPConnection:
    host, port = served.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.connect()
    return conn


def _echo(conn: http.client.HTTPConnection, marker: str) -> str:
    """One call on a kept-alive connection; the request line the upstream saw."""
    conn.request("GET", f"/echo/{marker}")
    answer = conn.getresponse()
    body = answer.read()
    assert answer.status == 200, body[:300]
    assert answer.getheader("Connection", "").lower() != "close"
    return json.loads(body)["request_line"]


def _state(conn: http.client.HTTPConnection) -> str:
    """'open' (nothing to read yet) or 'closed' (the server's FIN), without waiting."""
    assert conn.sock is not None
    if not select.select([conn.sock], [], [], 0)[0]:
        return "open"
    try:
        data = conn.sock.recv(1, socket.MSG_PEEK)
    except ConnectionError:
        return "closed"
    return "closed" if data == b"" else f"data {data!r}"


def _eof(conn: http.client.HTTPConnection, timeout: float) -> bool:
    """Whether the server closes this idle connection within ``timeout`` seconds."""
    assert conn.sock is not None
    conn.sock.settimeout(timeout)
    try:
        return conn.sock.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_a_new_connection_is_served_while_every_thread_keeps_an_idle_one(served):
    kept = [_connect(served) for _ in range(THREADS)]
    for i, conn in enumerate(kept):
        assert _echo(conn, f"kept-{i}") == f"GET /echo/kept-{i} HTTP/1.1"
    # Both threads now wait on an idle connection; a third client must not wait for them.
    newcomer = _connect(served)
    assert _echo(newcomer, "newcomer") == "GET /echo/newcomer HTTP/1.1"
    # It was served by a thread that gave its idle connection back, not by one that closed it:
    # both are still open and still served.
    assert [_state(conn) for conn in kept] == ["open", "open"]
    for i, conn in enumerate(kept):
        assert _echo(conn, f"again-{i}") == f"GET /echo/again-{i} HTTP/1.1"
    for conn in [*kept, newcomer]:
        conn.close()


def test_more_clients_than_threads_all_get_every_answer(served):
    clients, calls = 3 * THREADS + 1, 15

    def client(n: int) -> list[str]:
        conn = _connect(served)
        try:
            return [_echo(conn, f"c{n}-{i}") for i in range(calls)]
        finally:
            conn.close()

    with ThreadPoolExecutor(clients) as pool:
        lines = list(pool.map(client, range(clients)))
    assert lines == [[f"GET /echo/c{n}-{i} HTTP/1.1" for i in range(calls)] for n in range(clients)]


def test_pipelined_requests_are_all_answered(served):
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"".join(f"GET /echo/pipe-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for i in range(3)))
        reader = sock.makefile("rb")
        for i in range(3):  # the answers follow each other on the one connection, in order
            status = reader.readline()
            headers = dict(line.decode().split(":", 1) for line in iter(reader.readline, b"\r\n"))
            lengths = [int(value) for name, value in headers.items() if name.lower() == "content-length"]
            assert status.startswith(b"HTTP/1.1 200 "), status
            body = json.loads(reader.read(lengths[0]))
            assert body["request_line"] == f"GET /echo/pipe-{i} HTTP/1.1"


def test_an_idle_connection_is_closed_after_the_keepalive(served):
    conn = _connect(served)
    _echo(conn, "idle")
    # gunicorn's keepalive is 5 s (serving.default_options); the server closes, the client does not.
    assert _eof(conn, timeout=30)
    conn.close()


def test_sigterm_closes_idle_kept_connections_and_stops_at_once(served):
    kept = [_connect(served) for _ in range(THREADS)]
    for i, conn in enumerate(kept):
        _echo(conn, f"stop-{i}")
    served.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert [_eof(conn, timeout=30) for conn in kept] == [True, True]
    assert served.process.wait(timeout=30) == 0
    # Well inside graceful_timeout (60 s): idle connections are nothing to wait for.
    assert time.monotonic() - signalled < 15
    for conn in kept:
        conn.close()


def test_a_governed_call_pipelined_behind_a_harmless_one_is_still_gated(mlflow_server, tmp_path):
    """Pipelining is no way around the gate: each request of the batch is its own call to the app."""
    name, versions = make_model(mlflow_server.url, versions=1)
    body = json.dumps({"name": name, "alias": "champion", "version": versions[0]}).encode()
    auth = b"Authorization: Basic " + base64.b64encode(b"carol:x") + b"\r\n"
    search = b"GET /api/2.0/mlflow/registered-models/search HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + b"\r\n"
    alias = (
        b"POST /api/2.0/mlflow/registered-models/alias HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
        + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    with checkpoint_process(mlflow_server.url, tmp_path / "gated") as served:
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(search + alias)
            reader = sock.makefile("rb")
            answers = []
            for _ in range(2):
                status = reader.readline()
                headers = dict(line.decode().split(":", 1) for line in iter(reader.readline, b"\r\n"))
                length = next(int(v) for k, v in headers.items() if k.lower() == "content-length")
                answers.append((status, json.loads(reader.read(length))))
    (search_status, _), (alias_status, refusal) = answers
    assert search_status.startswith(b"HTTP/1.1 200 ")
    assert alias_status.startswith(b"HTTP/1.1 403 "), refusal
    assert refusal["checkpoint"]["action"] == "request_opened"
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    assert direct.get_registered_model(name).aliases == {}  # MLflow, read directly: nothing moved
