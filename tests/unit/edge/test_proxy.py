"""The proxy's pure pieces, without an upstream: header hygiene both ways, the request target as
sent, the Host policy, the request body, and what a transport failure is
answered with. (A Proxy opens no connection until it forwards a call.)"""

from __future__ import annotations

import io
import json

import pytest
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from checkpoint.edge.proxy import (
    HOP_BY_HOP,
    Proxy,
    UpstreamError,
    host_allowed,
    plain_error,
    request_target,
    wants_html,
)

PROXY = Proxy(
    "http://127.0.0.1:5001/mlflow/",
    read_timeout=7,
    chunk_size=1024,
    public_url="https://cp.example/",
    allowed_origins=("https://notebooks.example:443",),
)


def environ(**extra) -> dict:
    return {"REQUEST_METHOD": "GET", "REMOTE_ADDR": "10.1.2.3", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), **extra}


# -- request headers ---------------------------------------------------------------------------


def test_end_to_end_headers_pass_and_hop_by_hop_ones_do_not():
    sent = PROXY.request_headers(
        environ(
            HTTP_AUTHORIZATION="Basic x",
            HTTP_ACCEPT="application/json",
            HTTP_X_CUSTOM_THING="1",
            HTTP_CONNECTION="keep-alive, X-Secret-Hop",
            HTTP_X_SECRET_HOP="s",
            HTTP_KEEP_ALIVE="timeout=5",
            HTTP_TE="trailers",
            HTTP_UPGRADE="h2c",
            HTTP_PROXY_AUTHORIZATION="Basic p",
            HTTP_TRANSFER_ENCODING="chunked",
            HTTP_HOST="cp.example",
            HTTP_EXPECT="100-continue",
            HTTP_ORIGIN="https://cp.example",
            HTTP_CONTENT_LENGTH="3",
            HTTP_X_FORWARDED_PROTO="https",
            HTTP_X_FORWARDED_HOST="evil.example",
            CONTENT_TYPE="application/json",
        )
    )
    assert sent == {
        "Authorization": "Basic x",
        "Accept": "application/json",
        "X-Custom-Thing": "1",
        "Content-Type": "application/json",
        "X-Forwarded-For": "10.1.2.3",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "cp.example",
    }


def test_x_forwarded_for_is_appended_to():
    sent = PROXY.request_headers(environ(HTTP_X_FORWARDED_FOR="192.0.2.1"))
    assert sent["X-Forwarded-For"] == "192.0.2.1, 10.1.2.3"
    assert "X-Forwarded-Host" not in PROXY.request_headers(environ())


def test_the_hop_by_hop_list_is_rfc_9110s():
    assert {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization"} <= HOP_BY_HOP
    assert "authorization" not in HOP_BY_HOP and "content-type" not in HOP_BY_HOP


# -- response headers --------------------------------------------------------------------------


class Answer:
    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.headers = HTTPHeaderDict()
        for name, value in pairs:
            self.headers.add(name, value)


@pytest.mark.parametrize(
    ("location", "rewritten"),
    [
        ("http://127.0.0.1:5001/mlflow/#/models", "https://cp.example/#/models"),
        ("http://127.0.0.1:5001/mlflow/api/2.0/x?y=1", "https://cp.example/api/2.0/x?y=1"),
        ("http://127.0.0.1:5001", "https://cp.example"),
        ("http://127.0.0.1:50011/x", "http://127.0.0.1:50011/x"),  # another port: not the upstream
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
        ("/relative", "/relative"),
    ],
)
def test_redirects_to_the_upstream_point_back_at_checkpoint(location, rewritten):
    out = PROXY.response_headers(environ(), Answer(("Location", location)))
    assert out == [("Location", rewritten)]


def test_without_a_public_url_a_redirect_goes_to_the_origin_the_request_shows():
    proxy = Proxy("http://127.0.0.1:5001")
    out = proxy.response_headers(environ(HTTP_HOST="CP.internal:8080"), Answer(("Location", "http://127.0.0.1:5001/x")))
    assert out == [("Location", "http://cp.internal:8080/x")]


def test_response_hop_by_hop_and_server_headers_are_dropped_and_cookies_kept():
    answer = Answer(
        ("Connection", "close, X-Hop"),
        ("X-Hop", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Keep-Alive", "timeout=5"),
        ("Date", "today"),
        ("Server", "uvicorn"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Type", "application/json"),
    )
    assert PROXY.response_headers(environ(), answer) == [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Type", "application/json"),
    ]


# -- targets, origins, hosts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "target"),
    [
        ({"RAW_URI": "/api/2.0/mlflow/x?a=1&a=2"}, "/api/2.0/mlflow/x?a=1&a=2"),
        ({"REQUEST_URI": "/a%2Fb//c"}, "/a%2Fb//c"),  # byte-exact, as sent
        ({"RAW_URI": "http://host:5000/api/x?y"}, "/api/x?y"),  # absolute-form
        ({"RAW_URI": "https://host/api/x"}, "/api/x"),
        ({"RAW_URI": "api/x"}, "/api/x"),
        ({"PATH_INFO": "/a b/ü", "QUERY_STRING": "q=1"}, "/a%20b/%C3%BC?q=1"),
        ({"PATH_INFO": "/x"}, "/x"),
    ],
    ids=["raw", "request-uri", "absolute", "absolute-https", "no-slash", "rebuilt-from-path", "path-only"],
)
def test_request_target(env, target):
    if "PATH_INFO" in env:
        env = {**env, "PATH_INFO": env["PATH_INFO"].encode().decode("latin-1")}  # WSGI's latin-1 strings
    assert request_target(env) == target


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://cp.example", True),
        ("HTTPS://CP.EXAMPLE:443", True),  # default port dropped, case folded
        ("https://notebooks.example", True),
        ("http://cp.example", False),
        ("https://evil.example", False),
        ("null", False),
    ],
)
def test_origin_allowed(origin, allowed):
    assert PROXY.origin_allowed(environ(HTTP_HOST="cp.example"), origin) is allowed


@pytest.mark.parametrize(
    ("host", "public_url", "allowed", "expected"),
    [
        ("127.0.0.1:5000", None, (), True),
        ("[::1]:5000", None, (), True),
        ("LOCALHOST", None, (), True),
        ("cp.example", "https://CP.example", (), True),
        ("api.team.example:443", None, ("*.team.example",), True),
        ("attacker.example", None, ("*.team.example",), False),
        ("cp.example.attacker.net", "https://cp.example", (), False),
        ("", None, (), False),
        ("  ", None, (), False),
    ],
)
def test_host_allowed(host, public_url, allowed, expected):
    assert host_allowed(host, public_url, allowed) is expected


@pytest.mark.parametrize(
    ("path", "accept", "html"),
    [
        ("/", "text/html,application/xhtml+xml", True),
        ("/#/models", "*/*", False),
        ("/api/2.0/mlflow/x", "text/html", False),
        ("/ajax-api/2.0/mlflow/x", "text/html", False),
        ("/graphql", "text/html", False),
        ("/team/api/2.0/mlflow-artifacts/artifacts/x", "text/html", False),
    ],
)
def test_wants_html(path, accept, html):
    assert wants_html({"PATH_INFO": path, "HTTP_ACCEPT": accept}) is html


# -- the body and the failures -----------------------------------------------------------------


def test_a_small_body_is_read_whole_and_its_length_set():
    headers: dict[str, str] = {}
    env = environ(REQUEST_METHOD="POST", CONTENT_LENGTH="5", **{"wsgi.input": io.BytesIO(b"hello-and-more")})
    assert PROXY.request_body(env, headers) == (b"hello", False)
    assert headers == {"Content-Length": "5"} and env["checkpoint.body_read"]


def test_a_large_body_streams_in_chunks_and_a_chunked_one_stays_chunked():
    data = bytes(range(256)) * 10  # 2560 bytes, chunk size 1024
    body, chunked = PROXY.request_body(environ(CONTENT_LENGTH=str(len(data)), **{"wsgi.input": io.BytesIO(data)}), {})
    assert not chunked and b"".join(body) == data
    env = environ(REQUEST_METHOD="POST", HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": io.BytesIO(b"abc")})
    body, chunked = PROXY.request_body(env, {})
    assert chunked and b"".join(body) == b"abc"


def test_no_body_is_none_and_an_empty_one_is_empty():
    assert PROXY.request_body(environ(), {}) == (None, False)
    assert PROXY.request_body(environ(CONTENT_LENGTH="0"), {}) == (b"", False)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            ReadTimeoutError(None, "/x", "read timed out"),
            UpstreamError(
                504, "DEADLINE_EXCEEDED", "Checkpoint: the MLflow server at http://127.0.0.1:5001 did not answer within 7 s"
            ),
        ),
        (
            MaxRetryError(None, "/x", NewConnectionError(None, "refused")),
            UpstreamError(
                502, "TEMPORARILY_UNAVAILABLE", "Checkpoint could not reach the MLflow server at http://127.0.0.1:5001"
            ),
        ),
        (
            ConnectionRefusedError(),
            UpstreamError(
                502, "TEMPORARILY_UNAVAILABLE", "Checkpoint could not reach the MLflow server at http://127.0.0.1:5001"
            ),
        ),
        (
            ProtocolError("Connection aborted."),
            UpstreamError(
                502,
                "TEMPORARILY_UNAVAILABLE",
                "Checkpoint: the MLflow server at http://127.0.0.1:5001 closed the connection without a complete answer",
            ),
        ),
    ],
    ids=["read-timeout", "refused-after-retries", "refused", "cut-off"],
)
def test_a_transport_failure_is_described_for_the_caller(exc, expected):
    assert PROXY.describe(exc) == expected


def test_the_plain_error_is_mlflows_json_shape():
    content_type, body = plain_error({}, UpstreamError(502, "TEMPORARILY_UNAVAILABLE", "down"))
    assert content_type == "application/json"
    assert json.loads(body) == {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"}


def test_a_cross_origin_write_is_refused_before_forwarding():
    answered = []
    body = PROXY(
        environ(REQUEST_METHOD="POST", HTTP_HOST="cp.example", HTTP_ORIGIN="https://evil.example"),
        lambda status, headers: answered.append((status, headers)),
    )
    assert body == [b"Cross-origin request blocked"]
    assert answered == [("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "28")])]
