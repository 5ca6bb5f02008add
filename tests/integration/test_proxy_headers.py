"""What the proxy does to a call on the wire: targets, headers, bodies, redirects, Origin.

A raw-socket fake upstream records each request exactly as it arrived; Checkpoint runs
for real in front of it, both as the werkzeug server the in-process fixtures use and as
`checkpoint serve` (gunicorn) the way production runs it.
"""

from __future__ import annotations

import email.utils
import json
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.support.proxy import (
    HTML_PAGE,
    SERVER_HEADER,
    SERVERS,
    body_bytes,
    body_bytes_grew,
    checkpoint_in_thread,
    checkpoint_process,
    pattern,
    raw_request,
    server_env,
    sha256,
)
from tests.support.waiting import poll

EVIL = "https://evil.example.com"
BLOCKED = b"Cross-origin request blocked"
WRITES = ["POST", "PUT", "PATCH", "DELETE"]


@pytest.fixture(scope="module", params=SERVERS)
def checkpoint(request, upstream, module_db, tmp_path_factory) -> Iterator[str]:
    """Checkpoint's URL, in front of the fake upstream, under each server it runs on (gunicorn
    with and without zero-copy bodies)."""
    data_dir = tmp_path_factory.mktemp(f"proxy-headers-{request.param}")
    if request.param == "werkzeug":
        with checkpoint_in_thread(upstream.url, data_dir, database_url=module_db) as url:
            yield url
    else:
        with checkpoint_process(upstream.url, data_dir, **server_env(request.param)) as served:
            yield served.url


@pytest.fixture
def make_checkpoint(upstream, module_db, tmp_path):
    """Checkpoint with extra settings (public_url, cors_allowed_origins, ...) for one test."""
    stack = []

    def make(registry_url: str | None = None, **config) -> str:
        context = checkpoint_in_thread(registry_url or upstream.url, tmp_path, database_url=module_db, **config)
        stack.append(context)
        return context.__enter__()

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


def marker() -> str:
    return uuid.uuid4().hex


def host_of(url: str) -> str:
    return url.split("://", 1)[1]


# -- the request line -------------------------------------------------------------------

ODD_TARGETS = {
    "repeated-keys": "/echo/{m}?a=1&a=2&a=&a&b=2&a=3",
    "encoded": "/echo/{m}?x=%2F%41+b%20c&y=%E2%9C%93&pct=100%25",
    "lower-case-hex": "/echo/{m}?x=%2f%3a%c3%a9",
    "stray-percent": "/echo/{m}?z=%zz&x=%2F&q=50%",
    "odd-separators": "/echo/{m}?k=v=w&&;semi=1&empty=&=noname&plus=a+b",
    "ui-filter": "/echo/{m}?filter=name%20LIKE%20'm%25'&star=*&tilde=~&bang=!&paren=(x)&colon=a:b&at=@&q=?",
    "brackets": "/echo/{m}?list[]=1&list[]=2",
    "odd-path": "/echo/{m}/a%2Fb//c/%7Euser/%41;p=1?q=%3F%26%3D",
    "empty-query": "/echo/{m}?",
    "no-query": "/echo/{m}",
}


@pytest.mark.parametrize("template", list(ODD_TARGETS.values()), ids=list(ODD_TARGETS))
def test_request_target_reaches_upstream_byte_exact(checkpoint, upstream, template):
    m = marker()
    target = template.format(m=m)
    answer = raw_request(checkpoint, "GET", target)
    assert answer.status == 200, answer.body
    (seen,) = upstream.wait_for(m)
    assert seen.target == target
    assert seen.request_line == f"GET {target} HTTP/1.1"


# -- request headers --------------------------------------------------------------------


def test_hop_by_hop_request_headers_are_dropped(checkpoint, upstream):
    m = marker()
    answer = raw_request(
        checkpoint,
        "GET",
        f"/echo/{m}",
        [
            ("Connection", "keep-alive, X-Hop-Named, x-hop-lower"),
            ("X-Hop-Named", "secret-1"),
            ("X-Hop-Lower", "secret-2"),
            ("Keep-Alive", "timeout=5, max=10"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
            ("Proxy-Connection", "keep-alive"),
            # end-to-end headers, which must arrive as sent
            ("Authorization", "Basic dXNlcjpwYXNz"),
            ("Cookie", "mlflow-request-header-X-Team=ml; session=abc"),
            ("User-Agent", "mlflow-python-client/3.17.2"),
            ("Accept", "application/json"),
            ("X-Mlflow-Workspace", "team-a"),
            ("X-Custom", "kept"),
        ],
    )
    assert answer.status == 200, answer.body
    (seen,) = upstream.wait_for(m)
    names = {k.lower() for k, _ in seen.headers}
    for hop in ("x-hop-named", "x-hop-lower", "keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection"):
        assert hop not in names, f"{hop} was forwarded: {seen.headers}"
    assert seen.header("Connection") in (None, "keep-alive"), seen.headers
    assert seen.header("Authorization") == "Basic dXNlcjpwYXNz"
    assert seen.header("Cookie") == "mlflow-request-header-X-Team=ml; session=abc"
    assert seen.header("User-Agent") == "mlflow-python-client/3.17.2"
    assert seen.header("Accept") == "application/json"
    assert seen.header("X-Mlflow-Workspace") == "team-a"
    assert seen.header("X-Custom") == "kept"


def test_host_is_the_upstreams_own(checkpoint, upstream):
    m = marker()
    answer = raw_request(checkpoint, "GET", f"/echo/{m}", [("Host", "localhost:8443")])
    assert answer.status == 200, answer.body
    (seen,) = upstream.wait_for(m)
    assert seen.values("Host") == [f"127.0.0.1:{upstream.port}"]


def test_dns_rebinding_host_is_refused_before_mlflow(checkpoint, upstream):
    """A Host no person types (a name not configured) is refused as MLflow would, and never forwarded."""
    m = marker()
    answer = raw_request(checkpoint, "GET", f"/echo/{m}", [("Host", "rebind.evil.example:5000")])
    assert answer.status == 403
    assert b"Invalid Host header - possible DNS rebinding attack detected" in answer.body
    assert upstream.requests_to(m) == []


@pytest.mark.parametrize(
    ("sent", "expected_xff"),
    [
        ([], "127.0.0.1"),
        ([("X-Forwarded-For", "203.0.113.7")], "203.0.113.7, 127.0.0.1"),
        ([("X-Forwarded-For", "203.0.113.7, 198.51.100.2")], "203.0.113.7, 198.51.100.2, 127.0.0.1"),
    ],
)
def test_forwarded_headers_are_added(checkpoint, upstream, sent, expected_xff):
    m = marker()
    spoofed = [("X-Forwarded-Host", "spoofed.example.com")]
    answer = raw_request(checkpoint, "GET", f"/echo/{m}", sent + spoofed)
    assert answer.status == 200, answer.body
    (seen,) = upstream.wait_for(m)
    assert seen.values("X-Forwarded-For") == [expected_xff]
    assert seen.values("X-Forwarded-Proto") == ["http"]
    assert seen.values("X-Forwarded-Host") == [host_of(checkpoint)]


# -- response headers -------------------------------------------------------------------


def test_hop_by_hop_response_headers_are_dropped(checkpoint):
    answer = raw_request(checkpoint, "GET", f"/hop/{marker()}")
    assert answer.status == 200
    assert answer.body == b"hop"
    names = {k.lower() for k, _ in answer.headers}
    for hop in ("x-resp-named", "keep-alive", "proxy-authenticate", "proxy-connection", "trailer"):
        assert hop not in names, f"{hop} reached the client: {answer.headers}"
    assert answer.values("X-End-To-End") == ["kept"]
    assert answer.values("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert answer.values("Content-Type") == ["text/plain"]


def test_date_and_server_are_not_duplicated(checkpoint):
    answer = raw_request(checkpoint, "GET", f"/echo/{marker()}")
    assert answer.status == 200
    dates, servers = answer.values("Date"), answer.values("Server")
    assert len(dates) == 1, answer.headers
    assert email.utils.parsedate_to_datetime(dates[0]) is not None
    assert len(servers) == 1, answer.headers
    assert servers != [SERVER_HEADER]


@pytest.mark.parametrize(
    ("status", "location", "expected"),
    [
        (302, "UPSTREAM/landing/{m}?x=1&x=2", "CHECKPOINT/landing/{m}?x=1&x=2"),
        (301, "UPSTREAM/", "CHECKPOINT/"),
        (303, "UPSTREAM/a%20b", "CHECKPOINT/a%20b"),
        (307, "UPSTREAM/api/2.0/mlflow/runs/create", "CHECKPOINT/api/2.0/mlflow/runs/create"),
        (308, "UPSTREAM/api/2.0/mlflow/registered-models/alias", "CHECKPOINT/api/2.0/mlflow/registered-models/alias"),
        (302, "/relative/{m}?x=1", "/relative/{m}?x=1"),
        (302, "relative-no-slash", "relative-no-slash"),
        (302, "https://elsewhere.example.org/x", "https://elsewhere.example.org/x"),
        # Another port that merely starts with the upstream's digits is another server.
        (302, "UPSTREAM0/lookalike", "UPSTREAM0/lookalike"),
        (302, "UPSTREAM.evil.example.com/x", "UPSTREAM.evil.example.com/x"),
    ],
)
def test_redirect_location(checkpoint, upstream, status, location, expected):
    m = marker()
    answer = requests.get(
        f"{checkpoint}/redirect/{m}",
        params={"status": status, "to": location.format(m=m)},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == status
    want = expected.format(m=m).replace("UPSTREAM", upstream.url).replace("CHECKPOINT", checkpoint)
    assert answer.headers["Location"] == want


def test_redirect_location_uses_public_url(make_checkpoint, upstream):
    url = make_checkpoint(public_url="https://checkpoint.example.com")
    answer = requests.get(
        f"{url}/redirect/{marker()}",
        params={"status": 308, "to": "UPSTREAM/api/2.0/mlflow/x?y=1"},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 308
    assert answer.headers["Location"] == "https://checkpoint.example.com/api/2.0/mlflow/x?y=1"


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [
        ("GET", 201, b"status 201 body"),
        ("GET", 204, b""),
        ("GET", 304, b""),
        ("GET", 404, b"status 404 body"),
        ("GET", 418, b"status 418 body"),
        ("POST", 500, b"status 500 body"),
        ("DELETE", 503, b"status 503 body"),
        ("HEAD", 200, b""),
    ],
)
def test_status_and_body_pass_through(checkpoint, method, status, body):
    answer = raw_request(checkpoint, method, f"/status/{status}/{marker()}", body=b"{}" if method != "GET" else None)
    assert answer.status == status
    assert answer.body == body
    assert answer.values("X-Status") == [str(status)]
    if method == "HEAD":
        assert answer.values("Content-Length") == [str(len(b"status 200 body"))]


# -- bodies -----------------------------------------------------------------------------


def _pieces(data: bytes) -> Iterator[bytes]:
    """``data`` in irregular pieces: single bytes, small, larger than the proxy's chunk."""
    sizes = [1, 7, 1, 65536, 3, 70000, 1 << 20]
    start, i = 0, 0
    while start < len(data):
        size = sizes[i % len(sizes)]
        yield data[start : start + size]
        start += size
        i += 1


def test_chunked_upload_without_content_length_arrives_complete(checkpoint, upstream):
    m = marker()
    data = pattern(3 * 1024 * 1024 + 12345, seed=11)
    answer = requests.put(
        f"{checkpoint}/echo/{m}/upload.bin",
        data=_pieces(data),
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    (seen,) = upstream.wait_for(m)
    assert seen.header("Content-Length") is None
    assert len(seen.body) == len(data)
    assert sha256(bytes(seen.body)) == sha256(data)
    assert answer.json()["body_sha256"] == sha256(data)


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 5 * 1024 * 1024 + 1])
def test_upload_with_content_length_arrives_byte_exact(checkpoint, upstream, size):
    m = marker()
    data = pattern(size, seed=size)
    answer = requests.put(
        f"{checkpoint}/echo/{m}/upload.bin",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    (seen,) = upstream.wait_for(m)
    assert seen.values("Content-Length") == [str(size)]
    assert not seen.chunked
    assert bytes(seen.body) == data


def test_expect_continue_upload_arrives_without_expect(checkpoint, upstream):
    """curl sends ``Expect: 100-continue`` with bodies over 1 MB; the server answers it, not MLflow."""
    m = marker()
    data = pattern(2 * 1024 * 1024, seed=3)
    answer = raw_request(
        checkpoint,
        "PUT",
        f"/echo/{m}/big.bin",
        [("Expect", "100-continue"), ("Content-Type", "application/octet-stream")],
        data,
    )
    assert answer.status == 200, answer.body
    (seen,) = upstream.wait_for(m)
    assert seen.header("Expect") is None
    assert sha256(bytes(seen.body)) == sha256(data)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_download_arrives_byte_exact(checkpoint, chunked):
    n = 3 * 1024 * 1024 + 7
    answer = requests.get(f"{checkpoint}/download/{marker()}", params={"n": n, "chunked": int(chunked)}, timeout=60)
    assert answer.status_code == 200
    assert len(answer.content) == n
    assert sha256(answer.content) == sha256(pattern(n))
    if not chunked:
        assert answer.headers["Content-Length"] == str(n)


# Which path each server moves a streamed body on: gunicorn splices a body with a length;
# werkzeug, CHECKPOINT_ZERO_COPY=off and every chunked body take the copy loops.
SPLICED = {"werkzeug": "copy", "gunicorn": "splice", "gunicorn-copy": "copy"}


def _moved_as(url: str, before: dict, expected: dict) -> dict:
    """What the body counters grew by, once they show ``expected`` (a worker counts a body as it ends)."""
    return poll(lambda: body_bytes_grew(before, body_bytes(url)), timeout=5, until=lambda grew: grew == expected)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_streamed_download_takes_the_expected_path(request, checkpoint, chunked):
    path = "copy" if chunked else SPLICED[request.node.callspec.params["checkpoint"]]
    n = 2 * 1024 * 1024 + 3
    before = body_bytes(checkpoint)
    answer = requests.get(f"{checkpoint}/download/{marker()}", params={"n": n, "chunked": int(chunked)}, timeout=60)
    assert answer.content == pattern(n)
    assert _moved_as(checkpoint, before, {("download", path): n}) == {("download", path): n}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_streamed_upload_takes_the_expected_path(request, checkpoint, upstream, chunked):
    path = "copy" if chunked else SPLICED[request.node.callspec.params["checkpoint"]]
    m, data = marker(), pattern(2 * 1024 * 1024 + 5, seed=21)
    before = body_bytes(checkpoint)
    answer = requests.put(f"{checkpoint}/echo/{m}", data=_pieces(data) if chunked else data, timeout=60)
    assert answer.json()["body_sha256"] == sha256(data)
    assert _moved_as(checkpoint, before, {("upload", path): len(data)}) == {("upload", path): len(data)}


def test_keep_alive_carries_calls_after_spliced_bodies(checkpoint, upstream):
    """One client connection, one upstream connection: bodies both ways, then small calls, all exact."""
    connections = upstream.connections
    with requests.Session() as session:
        for i in range(3):
            n = 1024 * 1024 + i
            assert session.get(f"{checkpoint}/download/{marker()}", params={"n": n}, timeout=60).content == pattern(n)
            data = pattern(1024 * 1024 + 17 * i, seed=i)
            assert session.put(f"{checkpoint}/echo/{marker()}", data=data, timeout=60).json()["body_sha256"] == sha256(data)
            assert session.get(f"{checkpoint}/echo/{marker()}", timeout=60).status_code == 200
    # Each worker opens at most one connection upstream for a session's sequential calls.
    assert upstream.connections - connections <= 2


def test_html_passes_untouched(checkpoint, upstream):
    answer = raw_request(checkpoint, "GET", f"/html/{marker()}/report.html", [("Accept", "text/html")])
    page = HTML_PAGE.replace("UPSTREAM", upstream.url).encode()
    assert answer.status == 200
    assert answer.body == page
    assert answer.values("Content-Length") == [str(len(page))]
    assert answer.values("Content-Type") == ["text/html; charset=utf-8"]
    assert answer.values("ETag") == ['"page-1"']


# -- Origin -----------------------------------------------------------------------------


def _write(url: str, method: str, path: str, origin: str | None, **extra: str) -> requests.Response:
    headers = {"Content-Type": "application/json", **extra}
    if origin is not None:
        headers["Origin"] = origin
    return requests.request(method, f"{url}{path}", data=json.dumps({"name": "m"}), headers=headers, timeout=30)


@pytest.mark.parametrize("method", WRITES)
@pytest.mark.parametrize(
    "origin",
    [EVIL, "null", "http://127.0.0.1:1", "https://127.0.0.1.evil.example.com"],
    ids=["foreign", "null", "other-port", "lookalike"],
)
def test_cross_origin_write_is_refused_before_the_upstream(checkpoint, upstream, method, origin):
    m = marker()
    answer = _write(checkpoint, method, f"/api/2.0/mlflow/registered-models/{m}", origin)
    assert answer.status_code == 403
    assert answer.content == BLOCKED
    # a later call does reach the upstream, and the refused one never did
    follow = requests.get(f"{checkpoint}/echo/{m}-after", timeout=30)
    assert follow.status_code == 200
    upstream.wait_for(f"{m}-after")
    assert [seen.path for seen in upstream.requests_to(m)] == [f"/echo/{m}-after"]


@pytest.mark.parametrize("method", WRITES)
def test_same_origin_write_reaches_upstream_without_origin(checkpoint, upstream, method):
    m = marker()
    answer = _write(checkpoint, method, f"/api/2.0/mlflow/registered-models/{m}", checkpoint)
    assert answer.status_code == 200, answer.text
    (seen,) = upstream.wait_for(m)
    assert seen.method == method
    assert seen.header("Origin") is None
    assert bytes(seen.body) == b'{"name": "m"}'


def test_same_origin_is_matched_case_insensitively(checkpoint, upstream):
    m = marker()
    answer = _write(checkpoint, "POST", f"/api/2.0/mlflow/x/{m}", checkpoint.replace("http://", "HTTP://"))
    assert answer.status_code == 200, answer.text
    (seen,) = upstream.wait_for(m)
    assert seen.header("Origin") is None


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_read_with_foreign_origin_is_not_blocked(checkpoint, upstream, method):
    m = marker()
    answer = requests.request(method, f"{checkpoint}/echo/{m}", headers={"Origin": EVIL}, timeout=30)
    assert answer.status_code == 200
    (seen,) = upstream.wait_for(m)
    assert seen.method == method


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://checkpoint.example.com", True),
        ("https://checkpoint.example.com:443", True),
        ("HTTPS://Checkpoint.Example.com", True),
        ("http://checkpoint.example.com", False),
        ("https://checkpoint.example.com:8443", False),
        (EVIL, False),
    ],
)
def test_public_url_is_the_same_origin(make_checkpoint, upstream, origin, allowed):
    url = make_checkpoint(public_url="https://checkpoint.example.com")
    m = marker()
    answer = _write(url, "POST", f"/api/2.0/mlflow/x/{m}", origin)
    if allowed:
        assert answer.status_code == 200, answer.text
        (seen,) = upstream.wait_for(m)
        assert seen.header("Origin") is None
    else:
        assert (answer.status_code, answer.content) == (403, BLOCKED)
        assert upstream.requests_to(m) == []


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://notebooks.example.com", True),
        ("https://NOTEBOOKS.example.com:443", True),
        ("http://localhost:8888", True),
        ("https://notebooks.example.com.evil.example.com", False),
        ("http://localhost:8889", False),
        (EVIL, False),
    ],
)
def test_configured_cors_origins_may_write(make_checkpoint, upstream, origin, allowed):
    url = make_checkpoint(cors_allowed_origins=("https://notebooks.example.com", "http://localhost:8888"))
    m = marker()
    answer = _write(url, "DELETE", f"/api/2.0/mlflow/x/{m}", origin)
    if allowed:
        assert answer.status_code == 200, answer.text
        (seen,) = upstream.wait_for(m)
        assert seen.header("Origin") is None
    else:
        assert (answer.status_code, answer.content) == (403, BLOCKED)
        assert upstream.requests_to(m) == []


def test_dns_rebinding_cannot_pass_as_same_origin(checkpoint, upstream):
    """A page on rebind.evil.example whose name now resolves to Checkpoint's address sends
    Host and Origin both naming the attacker's domain. MLflow refuses such a Host itself,
    but behind Checkpoint it only ever sees Checkpoint's ``Host: 127.0.0.1:<port>``, so
    Checkpoint has to refuse it, or the write goes through."""
    m = marker()
    port = checkpoint.rsplit(":", 1)[1]
    answer = _write(
        checkpoint,
        "POST",
        f"/api/2.0/mlflow/registered-models/{m}",
        f"http://rebind.evil.example:{port}",
        Host=f"rebind.evil.example:{port}",
    )
    assert answer.status_code == 403
    assert upstream.requests_to(m) == []


# -- against the real MLflow server -----------------------------------------------------


def _create_experiment(url: str, name: str, origin: str) -> requests.Response:
    return requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": name}, headers={"Origin": origin}, timeout=30)


def test_mlflow_same_origin_write_through_public_url(make_checkpoint, mlflow_server):
    public = "https://checkpoint.example.com"
    url = make_checkpoint(mlflow_server.url, public_url=public)
    name = f"origin-{marker()}"
    direct = _create_experiment(mlflow_server.url, name, public)
    assert direct.status_code == 403, "MLflow itself must refuse this Origin, or the test proves nothing"
    answer = _create_experiment(url, name, public)
    assert answer.status_code == 200, answer.text
    experiment_id = answer.json()["experiment_id"]
    got = requests.get(f"{url}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id}, timeout=30)
    assert got.json()["experiment"]["name"] == name


def test_mlflow_cross_origin_write_refused_as_mlflow_refuses_it(make_checkpoint, mlflow_server):
    url = make_checkpoint(mlflow_server.url, public_url="https://checkpoint.example.com")
    name = f"origin-{marker()}"
    direct = _create_experiment(mlflow_server.url, name, EVIL)
    through = _create_experiment(url, name, EVIL)
    assert direct.status_code == 403
    assert (through.status_code, through.text) == (direct.status_code, direct.text)
    assert through.headers["Content-Type"].split(";")[0] == direct.headers["Content-Type"].split(";")[0]
    missing = requests.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, timeout=30)
    assert missing.status_code == 404
