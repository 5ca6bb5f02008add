"""The lean upstream path (edge/lean.py) against a real MLflow, and a scripted raw-socket fake for
what MLflow will not do on demand: drop a kept-alive connection, answer without a length,
answer garbage. Which path served a call is counted on the in-process ``Proxy``."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests
from mlflow import MlflowClient

from checkpoint.edge.proxy import Proxy
from tests.support.proxy import checkpoint_process, raw_request
from tests.support.serving import served


class Counted:
    """The Proxy with its two transports counted."""

    def __init__(self, upstream_url: str, **options) -> None:
        self.waits: list[float] = []  # what the upstream-latency metric is given, per answered call
        self.proxy = Proxy(upstream_url, on_upstream=lambda environ, seconds: self.waits.append(seconds), **options)
        self.lean = 0
        self.urllib3 = 0
        assert self.proxy.lean is not None
        exchange, urlopen = self.proxy.lean.exchange, self.proxy.pool.urlopen

        def counted_exchange(*args, **kwargs):
            self.lean += 1
            return exchange(*args, **kwargs)

        def counted_urlopen(*args, **kwargs):
            self.urllib3 += 1
            return urlopen(*args, **kwargs)

        self.proxy.lean.exchange = counted_exchange  # type: ignore[method-assign]
        self.proxy.pool.urlopen = counted_urlopen  # type: ignore[method-assign]


# -- against the real MLflow ------------------------------------------------------------------


@pytest.fixture(scope="module")
def counted(mlflow_server) -> Iterator[tuple[Counted, str]]:
    proxy = Counted(mlflow_server.url)
    with served(proxy.proxy, close=False) as url:
        yield proxy, url


@pytest.fixture(scope="module")
def gunicorn_url(mlflow_server, tmp_path_factory) -> Iterator[str]:
    with checkpoint_process(mlflow_server.url, tmp_path_factory.mktemp("lean-served")) as process:
        yield process.url


@pytest.fixture(scope="module")
def content(mlflow_server) -> dict[str, str]:
    """An experiment, a run with params, metrics and tags, and a registered model with a version."""
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name = f"lean-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name)
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "alpha", "0.5")
    for step in range(5):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step, timestamp=1_700_000_000_000 + step)
    client.set_tag(run.info.run_id, "team", "lean")
    client.create_registered_model(name, description="the lean path")
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return {"experiment": experiment, "run": run.info.run_id, "model": name}


def calls(c: dict[str, str]) -> list[tuple[str, str, bytes | None]]:
    post = lambda payload: json.dumps(payload).encode()  # noqa: E731
    return [
        ("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={c['experiment']}", None),
        ("GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={c['model']}", None),
        ("GET", f"/api/2.0/mlflow/runs/get?run_id={c['run']}", None),
        ("GET", f"/api/2.0/mlflow/metrics/get-history?run_id={c['run']}&metric_key=loss", None),
        ("GET", f"/api/2.0/mlflow/registered-models/get?name={c['model']}", None),
        ("GET", f"/api/2.0/mlflow/model-versions/get?name={c['model']}&version=1", None),
        ("GET", "/api/2.0/mlflow/registered-models/search?max_results=3", None),
        ("GET", "/api/2.0/mlflow/runs/get?run_id=does-not-exist", None),  # a 404 in MLflow's shape
        ("GET", "/api/2.0/mlflow/experiments/get", None),  # a 400
        ("POST", "/api/2.0/mlflow/runs/search", post({"experiment_ids": [c["experiment"]]})),
        ("POST", "/api/2.0/mlflow/experiments/search", post({"max_results": 5})),
        ("GET", "/api/2.0/mlflow/no-such-endpoint", None),  # a 404 page
        ("GET", "/health", None),
        ("GET", "/version", None),
    ]


def comparable(answer) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers (less those a proxy rewrites: Date, Server, hop-by-hop), body."""
    skip = {"date", "server", "connection", "keep-alive", "transfer-encoding"}
    return answer.status, [(k.lower(), v) for k, v in answer.headers if k.lower() not in skip], answer.body


def test_answers_are_byte_for_byte_mlflows_and_small_calls_go_lean(counted, content, mlflow_server):
    proxy, url = counted
    lean_before, urllib3_before, waits_before = proxy.lean, proxy.urllib3, len(proxy.waits)
    for method, target, body in calls(content):
        headers = [("Content-Type", "application/json")] if body is not None else []
        direct = raw_request(mlflow_server.url, method, target, headers, body)
        through = raw_request(url, method, target, headers, body)
        assert comparable(through) == comparable(direct), (method, target)
    assert proxy.lean - lean_before == len(calls(content)) and proxy.urllib3 == urllib3_before
    waits = proxy.waits[waits_before:]  # the metrics hook saw every call, with MLflow's time to its answer head
    assert len(waits) == len(calls(content)) and all(0 < wait < 10 for wait in waits)


def test_answers_through_checkpoint_serve_are_byte_for_byte_mlflows(gunicorn_url, content, mlflow_server):
    for method, target, body in calls(content):
        headers = [("Content-Type", "application/json")] if body is not None else []
        direct = raw_request(mlflow_server.url, method, target, headers, body)
        through = raw_request(gunicorn_url, method, target, headers, body)
        # Checkpoint adds its request id; werkzeug and gunicorn order their own headers differently.
        [request_id] = through.values("X-Request-Id")
        assert len(request_id) == 32 and int(request_id, 16) >= 0
        status, head, data = comparable(through)
        mine = (status, sorted(h for h in head if h[0] != "x-request-id"), data)
        status, head, data = comparable(direct)
        assert mine == (status, sorted(head), data), target


def test_the_real_client_works_through_the_lean_path(counted, content):
    proxy, url = counted
    before = proxy.lean
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    run = client.get_run(content["run"])
    assert run.data.params == {"alpha": "0.5"} and run.data.tags["team"] == "lean"
    assert [m.value for m in client.get_metric_history(content["run"], "loss")] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert client.get_model_version(content["model"], "1").run_id == content["run"]
    assert proxy.lean - before >= 3


def test_head_and_streamed_uploads_keep_urllib3(counted, content, mlflow_server):
    proxy, url = counted
    lean_before, urllib3_before = proxy.lean, proxy.urllib3
    target = f"/api/2.0/mlflow/registered-models/get?name={content['model']}"
    head, direct = raw_request(url, "HEAD", target), raw_request(mlflow_server.url, "HEAD", target)
    assert comparable(head) == comparable(direct) and head.body == b""
    big = b"x" * (proxy.proxy.chunk_size + 1)  # more than one chunk: streamed to MLflow
    refused = requests.post(f"{url}/api/2.0/mlflow/runs/search", data=big, timeout=10)
    assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert proxy.urllib3 - urllib3_before == 2 and proxy.lean == lean_before


# -- a scripted upstream -------------------------------------------------------------------------

# (connection no., request no. on it, request) → the answer, the answer and then close (a tuple), or None: drop.
Script = Callable[[int, int, bytes], "bytes | tuple[bytes, str] | None"]


class Scripted:
    """A raw HTTP/1.1 upstream answering what ``script`` says; counts connections and requests."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed = threading.Event()  # set each time it closes a connection itself
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock, self.connections), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        reader = sock.makefile("rb")
        with sock:
            for index in range(100):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(v) for k, v in _headers(head) if k == "content-length"), 0)
                request = head + reader.read(length)
                self.requests.append(request)
                answer = self.script(number, index, request)
                if answer is None:
                    break
                sock.sendall(answer if isinstance(answer, bytes) else answer[0])
                if not isinstance(answer, bytes):
                    break
            sock.shutdown(socket.SHUT_RDWR)
        self.closed.set()

    def stop(self) -> None:
        self.listener.close()


def _headers(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]


def ok(body: bytes = b'{"ok": true}', extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], tuple[Scripted, Counted, str]]]:
    made: list[tuple[Scripted, object]] = []

    def make(script: Script) -> tuple[Scripted, Counted, str]:
        fake = Scripted(script)
        proxy = Counted(fake.url, read_timeout=5.0)
        context = served(proxy.proxy, close=False)
        url = context.__enter__()
        made.append((fake, context))
        return fake, proxy, url

    yield make
    for fake, context in made:
        context.__exit__(None, None, None)  # type: ignore[attr-defined]
        fake.stop()


def test_a_kept_alive_connection_mlflow_closed_is_not_reused(scripted):
    fake, proxy, url = scripted(lambda conn, index, request: (ok(), "then close"))
    for method in ("GET", "POST", "GET"):
        fake.closed.clear()
        answer = requests.request(method, f"{url}/call", data=b"{}" if method == "POST" else None, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"ok": True}
        assert fake.closed.wait(5)  # it answered, then closed the kept-alive connection (as an idle timeout does)
    assert proxy.lean == 3 and fake.connections == 3 and len(fake.requests) == 3  # none lost, none sent twice


def test_a_dropped_call_is_resent_only_when_idempotent_and_bodiless(scripted):
    # Each connection answers its first request and drops its second without a word.
    fake, proxy, url = scripted(lambda conn, index, request: ok() if index == 0 else None)
    sent = lambda path: [r.split(b" ")[1] for r in fake.requests].count(path)  # noqa: E731
    assert requests.get(f"{url}/warm", timeout=10).status_code == 200  # connection 1 answers, stays kept
    get = requests.get(f"{url}/read", timeout=10)  # dropped on connection 1, sent again on a new one
    assert get.status_code == 200 and sent(b"/read") == 2 and fake.connections == 2
    post = requests.post(f"{url}/write", data=b"{}", timeout=10)  # dropped on connection 2: not sent again
    assert post.status_code == 502 and post.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert sent(b"/write") == 1 and proxy.lean == 3 and proxy.urllib3 == 0


def test_answers_without_a_length_arrive_whole(scripted):
    def script(conn: int, index: int, request: bytes) -> bytes | None:
        if b" /chunked " in request:
            pieces = [b"a" * 70_000, b"b" * 3, b"c"]
            chunks = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        if b" /large " in request:
            return ok(b"z" * 200_000)
        if b" /no-content " in request:
            return b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
        if b" /not-modified " in request:
            return b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\n'
        return None

    fake, proxy, url = scripted(script)
    chunked = requests.get(f"{url}/chunked", timeout=10)
    assert chunked.content == b"a" * 70_000 + b"bbbc"
    large = requests.get(f"{url}/large", timeout=10)
    assert large.content == b"z" * 200_000 and large.headers["Content-Length"] == "200000"
    for path, status in (("/no-content", 204), ("/not-modified", 304)):
        answer = requests.get(f"{url}{path}", timeout=10)
        assert answer.status_code == status and answer.content == b""
    assert proxy.lean == 4 and fake.connections == 1  # every one of them left the connection reusable


def test_an_answer_up_to_the_close_is_passed_on_and_the_connection_not_kept(scripted):
    def script(conn: int, index: int, request: bytes) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"until the end" * 10_000, "then close"

    fake, proxy, url = scripted(script)
    for _ in range(2):
        answer = requests.get(f"{url}/to-the-end", timeout=10)
        assert answer.status_code == 200 and answer.content == b"until the end" * 10_000
    assert fake.connections == 2 and proxy.lean == 2


@pytest.mark.parametrize(
    "garbage",
    [b"HTTQ/1.1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", b"\x00\x01\x02\r\n\r\n"],
)
def test_a_malformed_answer_is_a_502_and_a_get_is_tried_once_more(scripted, garbage):
    fake, proxy, url = scripted(lambda conn, index, request: garbage)
    answer = requests.get(f"{url}/bad", timeout=10)
    assert answer.status_code == 502 and answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "without a complete answer" in answer.json()["message"]
    assert len(fake.requests) == 2 and proxy.lean == 1
    post = requests.post(f"{url}/bad", data=b"{}", timeout=10)
    assert post.status_code == 502 and len(fake.requests) == 3  # never re-sent with a body
