"""The one-send answer puts exactly gunicorn's bytes on the wire, in fewer sends."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from gunicorn.http.wsgi import Response

from checkpoint.edge import wire


class Socket:
    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))


def answer(cls, method: str, status: str, headers: list, pieces: list[bytes], version=(1, 1)) -> Socket:
    sock = Socket()
    req = SimpleNamespace(method=method, version=version, should_close=lambda: False)
    response = Response(req, sock, SimpleNamespace())
    if cls is wire.OneWriteResponse:
        wire.one_write(response.start_response)
        assert type(response) is wire.OneWriteResponse
    response.start_response(status, list(headers))
    for piece in pieces:
        response.write(piece)
    response.close()
    return sock


CASES = {
    "small JSON": ("GET", "200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")], [b"{}"]),
    "two pieces": ("GET", "200 OK", [("Content-Length", "6")], [b"abc", b"def"]),
    "longer than declared": ("GET", "200 OK", [("Content-Length", "2")], [b"abcdef"]),
    "chunked": ("GET", "200 OK", [("Content-Type", "text/plain")], [b"abc", b"def"]),
    "HEAD": ("HEAD", "200 OK", [("Content-Length", "10")], [b""]),
    "304": ("GET", "304 Not Modified", [("ETag", '"x"')], []),
    "no body": ("GET", "200 OK", [("Content-Length", "0")], [b""]),
    "large first piece": ("GET", "200 OK", [("Content-Length", str(wire.SMALL + 1))], [b"x" * (wire.SMALL + 1)]),
    "HTTP/1.0": ("GET", "200 OK", [("Content-Type", "text/plain")], [b"abc"]),
}


@pytest.mark.parametrize("case", CASES)
def test_the_same_bytes_as_gunicorn_sends(case, monkeypatch):
    monkeypatch.setattr("gunicorn.util.http_date", lambda *a: "Thu, 03 Dec 2026 22:00:00 GMT")
    method, status, headers, pieces = CASES[case]
    version = (1, 0) if case == "HTTP/1.0" else (1, 1)
    stock = answer(Response, method, status, headers, pieces, version)
    ours = answer(wire.OneWriteResponse, method, status, headers, pieces, version)
    assert b"".join(ours.sends) == b"".join(stock.sends)
    if case in ("small JSON", "two pieces", "HTTP/1.0"):
        assert len(ours.sends) == len(stock.sends) - 1  # the head rode with the first piece
        assert ours.sends[0] == stock.sends[0] + stock.sends[1]
    else:
        assert len(ours.sends) == len(stock.sends)


def test_another_kind_of_answer_is_left_alone():
    class Other(Response):
        pass

    response = Other(SimpleNamespace(method="GET", version=(1, 1), should_close=lambda: False), Socket(), SimpleNamespace())
    wire.one_write(response.start_response)
    wire.one_write(lambda *a: None)
    assert type(response) is Other
