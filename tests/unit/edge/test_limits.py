"""The request head limits: gunicorn's parser bounded as ProxyWorker installs it, and the refusal."""

from __future__ import annotations

import json

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import InvalidRequestLine, LimitRequestHeaders, LimitRequestLine
from gunicorn.http.parser import RequestParser

from checkpoint.edge.limits import FIELD_SIZE, FIELDS, HEADER_BYTES, REQUEST_LINE, HeadLimits
from checkpoint.settings import Settings


@pytest.fixture
def parse(monkeypatch):
    """Parse one request head as a worker with ``limits`` installed does (restored afterwards)."""
    monkeypatch.setattr(RequestParser, "mesg_class", RequestParser.mesg_class)

    def run(head: bytes, limits: HeadLimits = HeadLimits()):
        cfg = Config()
        limits.install(cfg)
        pieces = [head[i : i + 8192] for i in range(0, len(head), 8192)]
        return next(RequestParser(cfg, iter(pieces), ("127.0.0.1", 1)))

    return run


def line(length: int) -> bytes:
    pad = length - len("GET /?p= HTTP/1.1")
    return f"GET /?p={'a' * pad} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_defaults_are_the_settings_defaults():
    settings = Settings(registry_url="http://127.0.0.1:1", data_dir=".", database_url="sqlite://", secret_key="k")
    assert HeadLimits.of(settings) == HeadLimits() == HeadLimits(REQUEST_LINE, FIELDS, FIELD_SIZE)
    assert HeadLimits().header_bytes == HEADER_BYTES


def test_a_request_line_above_gunicorns_cap_parses_up_to_the_bound(parse):
    assert len(parse(line(REQUEST_LINE)).uri) > 8190  # gunicorn alone stops at 8,190
    with pytest.raises(LimitRequestLine):
        parse(line(REQUEST_LINE + 1))


def test_fields_are_bounded_by_count_size_and_in_all(parse):
    small = HeadLimits(line=4096, fields=10, field_size=2048)
    fields = "".join(f"X-{i}: v\r\n" for i in range(9))
    assert len(parse(f"GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode(), small).headers) == 10
    with pytest.raises(LimitRequestHeaders):
        parse(f"GET / HTTP/1.1\r\nHost: x\r\nX-9: v\r\n{fields}\r\n".encode(), small)
    with pytest.raises(LimitRequestHeaders):
        parse(f"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {'v' * 2048}\r\n\r\n".encode(), small)
    # Endless fields, each within the size, stop at the block bound instead of gunicorn's ~9 GB.
    many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 200_000) for i in range(8))  # 1.6 MB, each field 200 KB
    with pytest.raises(LimitRequestHeaders):
        parse(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")


def test_a_refusal_is_mlflows_json_error_shape():
    limits = HeadLimits()
    for exc, status in ((LimitRequestLine(300_000, REQUEST_LINE), b"414"), (LimitRequestHeaders("max buffer headers"), b"431")):
        answer = limits.refusal(exc)
        assert answer is not None
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == status and b"Content-Type: application/json" in head
        assert f"Content-Length: {len(body)}".encode() in head
        payload = json.loads(body)
        assert set(payload) == {"error_code", "message"} and payload["error_code"] == "BAD_REQUEST"
    assert limits.refusal(InvalidRequestLine("x")) is None  # anything else stays gunicorn's
