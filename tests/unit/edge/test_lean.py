"""The lean upstream path without a server: the request head urllib3 would send, byte for byte,
which calls it takes, and how it reads an answer's head."""

from __future__ import annotations

import httptools
import pytest
import urllib3

from checkpoint.edge import lean


class _Recorder:
    """Stands in for urllib3's socket: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent = b""

    def settimeout(self, _timeout) -> None:
        pass

    def sendall(self, data) -> None:
        self.sent += bytes(data)


def urllib3_bytes(method: str, target: str, headers: dict[str, str], body: bytes | None, port: int = 5000) -> bytes:
    """What urllib3 (as ``Proxy.forward`` calls it) writes for this call."""
    conn = urllib3.connection.HTTPConnection("127.0.0.1", port)
    recorder = _Recorder()
    conn.sock = recorder  # type: ignore[assignment]
    conn.request(method, target, body=body, headers=headers, chunked=False)
    return recorder.sent


def upstream(port: int = 5000, host: str = "127.0.0.1") -> lean.LeanUpstream:
    made = lean.LeanUpstream.for_upstream(
        "http", host, port, connect_timeout=1.0, read_timeout=1.0, pool_size=2, chunk_size=65536
    )
    assert made is not None
    return made


CALLS = [
    ("GET", "/api/2.0/mlflow/registered-models/search?max_results=5", {}, None),
    ("GET", "/ajax-api/2.0/x?a=%2f&a=1", {"User-Agent": "mlflow-python-client/3.17.2", "Accept": "*/*"}, None),
    ("GET", "/x", {"Accept-Encoding": "gzip, deflate", "X-Forwarded-For": "127.0.0.1"}, None),
    ("POST", "/api/2.0/mlflow/runs/search", {"Content-Type": "application/json", "Content-Length": "2"}, b"{}"),
    ("POST", "/api/2.0/mlflow/runs/create", {"Content-Type": "application/json"}, None),  # no body: Content-Length 0
    ("DELETE", "/api/2.0/mlflow/experiments/delete", {}, None),
    ("PATCH", "/api/2.0/mlflow/registered-models/update", {"Content-Length": "0"}, b""),
    ("OPTIONS", "/api/2.0/mlflow/runs/get", {"Origin-Ish": "caf\xe9"}, None),  # latin-1 value, as WSGI gives it
]


@pytest.mark.parametrize(("method", "target", "headers", "body"), CALLS)
def test_the_request_is_the_bytes_urllib3_would_send(method, target, headers, body):
    head = upstream().head(method, target, headers, body)
    assert head is not None
    assert head + (body or b"") == urllib3_bytes(method, target, headers, body)


def test_the_host_header_leaves_out_the_default_port_as_http_client_does():
    head = upstream(80, "mlflow.internal").head("GET", "/", {}, None)
    assert head is not None and b"\r\nHost: mlflow.internal\r\n" in head
    assert head == urllib3_bytes("GET", "/", {}, None, port=80).replace(b"127.0.0.1", b"mlflow.internal")


def test_a_line_break_inside_a_value_is_left_to_http_client_to_refuse():
    assert upstream().head("GET", "/", {"X-Evil": "a\r\nInjected: 1"}, None) is None
    assert upstream().head("GET", "/", {"X-Evil": "a\nInjected: 1"}, None) is None


@pytest.mark.parametrize(
    ("method", "target", "body", "chunked", "taken"),
    [
        ("GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", None, False, True),
        ("POST", "/api/2.0/mlflow/runs/log-batch", b"{}", False, True),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/x", iter([b"big"]), False, False),  # streamed upload
        ("POST", "/x", iter([b"a"]), True, False),  # chunked upload
        ("HEAD", "/x", None, False, False),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model.pkl", None, False, False),  # splice.py's
        ("GET", "/get-artifact?path=model.pkl&run_uuid=r", None, False, False),
        ("GET", "/static-files/static/js/main.js", None, False, False),  # the UI's bundles: megabytes
        ("TRACE", "/x", None, False, False),
        ("GET", "/caf\xe9", None, False, False),  # http.client would refuse it: its error, as before
        ("GET", "/a b", None, False, False),
        ("GET", "/a\x7f", None, False, False),
    ],
)
def test_only_small_ordinary_calls_take_the_lean_path(method, target, body, chunked, taken):
    assert upstream().takes(method, target, body, chunked) is taken


def test_tls_and_non_ascii_hosts_stay_with_urllib3():
    options = {"connect_timeout": 1.0, "read_timeout": 1.0, "pool_size": 1, "chunk_size": 1024}
    assert lean.LeanUpstream.for_upstream("https", "mlflow", 443, **options) is None
    assert lean.LeanUpstream.for_upstream("http", "bücher.example", 80, **options) is None
    made = lean.LeanUpstream.for_upstream("http", "mlflow", None, **options)
    assert made is not None and made.address == ("mlflow", 80)


def parsed(*pieces: bytes) -> lean.Answer:
    answer = lean.Answer(conn=None)  # type: ignore[arg-type]
    for piece in pieces:
        answer.feed(piece)
    return answer


def test_an_answer_keeps_its_headers_in_wire_order_and_its_reason():
    answer = parsed(
        b"HTTP/1.1 404 Not Fou",
        b"nd\r\nSet-Cookie: a=1\r\nContent-Type: application/json\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert (answer.status, answer.reason, answer.complete) == (404, b"Not Found", True)
    assert answer.headers == [
        ("Set-Cookie", "a=1"),
        ("Content-Type", "application/json"),
        ("Set-Cookie", "b=2"),
        ("Content-Length", "2"),
    ]
    assert answer.take() == b"{}" and answer.reusable()


def test_chunked_and_close_delimited_bodies_are_told_apart():
    chunked = parsed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    chunked.framing()
    assert not chunked.complete and not chunked.to_eof and chunked.take() == b"abc"
    chunked.feed(b"0\r\n\r\n")
    assert chunked.complete and chunked.reusable()
    to_eof = parsed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome")
    to_eof.framing()
    assert to_eof.to_eof and not to_eof.complete and to_eof.take() == b"some"
    to_eof.complete = True
    assert not to_eof.reusable()  # the body ended with the connection


def test_no_content_answers_are_complete_after_their_head():
    for status in (204, 304):
        answer = parsed(f"HTTP/1.1 {status} Whatever\r\nETag: x\r\n\r\n".encode())
        answer.framing()
        assert answer.complete and not answer.to_eof and answer.take() == b"" and answer.reusable()


def test_connection_close_and_http_1_0_answers_are_not_kept():
    assert not parsed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").reusable()
    assert not parsed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").reusable()


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # interim: not this path's
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",  # a second, unasked answer
        b"HTTQ/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
    ],
)
def test_malformed_or_unexpected_answers_are_parser_errors(wire):
    with pytest.raises(httptools.HttpParserError):
        parsed(wire)
