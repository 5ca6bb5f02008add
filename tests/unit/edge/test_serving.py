"""The worker's small parts: the pipelined-bytes check, the repeated-header mark. (The worker
itself runs under `checkpoint serve` in tests/integration/test_serving_worker.py.)"""

from __future__ import annotations

import socket
from types import SimpleNamespace

from gunicorn.http.unreader import SocketUnreader

from checkpoint.edge.serving import _buffered, repeated_keys


def test_bytes_left_in_the_parser_are_a_pipelined_request():
    left, right = socket.socketpair()
    try:
        unreader = SocketUnreader(left)
        conn = SimpleNamespace(parser=SimpleNamespace(unreader=unreader))
        assert not _buffered(conn)
        right.sendall(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        head = unreader.read(19)  # what the parser took for the first request
        assert head == b"GET /a HTTP/1.1\r\n\r\n"
        assert _buffered(conn)
        assert unreader.read() == b"GET /b HTTP/1.1\r\n\r\n"  # the check did not move the bytes
        assert not _buffered(conn)
    finally:
        left.close()
        right.close()


def test_a_connection_without_a_parser_holds_nothing():
    assert not _buffered(SimpleNamespace(parser=None))


def test_repeated_header_names_are_marked_by_their_wsgi_key():
    assert repeated_keys(["Host", "X-Forwarded-Groups", "x-forwarded-groups", "Accept"]) == {"HTTP_X_FORWARDED_GROUPS"}
    assert repeated_keys(["Host", "Accept"]) == frozenset()
