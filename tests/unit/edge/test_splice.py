"""The zero-copy body path's pure pieces over socket pairs: the pump moves exactly what it is
asked, byte for byte, and says which side failed and after how many bytes; the choice of path
falls back to the copy loops for anything but a gunicorn call with a length."""

from __future__ import annotations

import io
import logging
import os
import random
import socket
import sys
import threading

import pytest
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader

from checkpoint.edge import splice
from checkpoint.edge.bodies import Stream
from checkpoint.edge.splice import Bodies, Download, SinkError, SourceError, Upload, decide, pump

pytestmark = pytest.mark.skipif(not (sys.platform.startswith("linux") and hasattr(os, "splice")), reason="Linux os.splice")

DATA = random.Random(3).randbytes(3 * 1024 * 1024 + 11)


def _feed(sock: socket.socket, data: bytes, *, close: bool = True) -> threading.Thread:
    def run() -> None:
        try:
            sock.sendall(data)
            if close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the test is over and closed the pair; what was sent is what it checks
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _drain(sock: socket.socket, into: bytearray) -> threading.Thread:
    def run() -> None:
        try:
            while block := sock.recv(1 << 20):
                into.extend(block)
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def pairs():
    made = [socket.socketpair(), socket.socketpair()]
    yield made
    for a, b in made:
        a.close()
        b.close()


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["blocking", "with-timeout"])
def test_pump_moves_exactly_the_count_byte_for_byte(pairs, timeout):
    (feeder, source), (sink, reader) = pairs
    source.settimeout(timeout)  # a socket with a timeout is non-blocking underneath: EAGAIN, then poll
    sink.settimeout(timeout)
    _feed(feeder, DATA + b"next request", close=False)
    got = bytearray()
    drained = _drain(reader, got)
    assert pump(source, sink, len(DATA)) == len(DATA)
    sink.shutdown(socket.SHUT_WR)
    drained.join(10)
    assert bytes(got) == DATA
    assert source.recv(100) == b"next request"  # not one byte past the count was taken


def test_a_source_that_ends_early_is_a_source_error_with_what_moved(pairs):
    (feeder, source), (sink, reader) = pairs
    _feed(feeder, DATA[:100_000])
    got = bytearray()
    drained = _drain(reader, got)
    with pytest.raises(SourceError) as caught:
        pump(source, sink, len(DATA))
    assert caught.value.cause is None
    assert caught.value.moved == 100_000
    sink.shutdown(socket.SHUT_WR)
    drained.join(10)
    assert bytes(got) == DATA[:100_000]


def test_a_silent_source_times_out_as_its_recv_would(pairs):
    (_feeder, source), (sink, _reader) = pairs
    source.settimeout(0.05)
    with pytest.raises(SourceError) as caught:
        pump(source, sink, 10)
    assert isinstance(caught.value.cause, TimeoutError)
    assert caught.value.moved == 0


def test_a_closed_sink_is_a_sink_error(pairs):
    (feeder, source), (sink, reader) = pairs
    reader.close()
    _feed(feeder, DATA)
    with pytest.raises(SinkError) as caught:
        pump(source, sink, len(DATA))
    assert isinstance(caught.value.cause, BrokenPipeError | ConnectionResetError)


@pytest.mark.parametrize(
    ("mode", "url", "enabled", "why"),
    [
        ("auto", "http://mlflow:5000", True, "os.splice"),
        ("off", "http://mlflow:5000", False, "CHECKPOINT_ZERO_COPY=off"),
        ("auto", "https://mlflow:5000", False, "over TLS"),
    ],
)
def test_the_path_is_decided_once_and_said(mode, url, enabled, why, caplog):
    assert decide(mode, url)[0] is enabled
    with caplog.at_level(logging.INFO, logger="checkpoint.proxy"):
        bodies = Bodies.create(mode, url, 65536)
    assert bodies.splice is enabled
    (line,) = [r.getMessage() for r in caplog.records]
    assert ("zero-copy path" if enabled else "copy path") in line
    assert why in line


def test_without_splice_on_the_platform_the_copy_loops_are_used(monkeypatch):
    monkeypatch.delattr(os, "splice")
    assert decide("auto", "http://mlflow:5000") == (
        False,
        "os.splice is not available on this platform: bodies are copied through Python",
    )


class _Answer:
    """What the download path reads of gunicorn's Response."""

    def __init__(self, length: int, *, chunked: bool = False) -> None:
        self.chunked, self.response_length, self._omits_body, self.sent = chunked, length, False, 0


class _Upstream:
    """What the download path reads of urllib3's response."""

    def __init__(self, sock, length: int | None, *, chunked: bool = False) -> None:
        self._connection = type("Conn", (), {"sock": sock})()
        self._fp = type("Http", (), {"chunked": chunked, "length": length, "read1": None})()


def _environ(client, answer=None, stream=None) -> dict:
    environ = {"gunicorn.socket": client, "wsgi.input": stream or io.BytesIO()}
    if answer is not None:
        environ[splice.RESPONSE_KEY] = answer
    return environ


def test_a_gunicorn_download_with_a_length_is_spliced_anything_else_copied(pairs):
    (client, _), (upstream, _) = pairs
    bodies = Bodies(True, 65536)
    n = 1 << 20
    assert isinstance(bodies.download(_environ(client, _Answer(n)), _Upstream(upstream, n), n, "/x"), Download)
    unusual = {
        "werkzeug": (_environ(None), _Upstream(upstream, n), n),
        "no-response": (_environ(client), _Upstream(upstream, n), n),
        "chunked-upstream": (_environ(client, _Answer(n)), _Upstream(upstream, None, chunked=True), None),
        "chunked-to-client": (_environ(client, _Answer(n, chunked=True)), _Upstream(upstream, n), n),
        "tls-upstream": (_environ(client, _Answer(n)), _Upstream(object(), n), n),
        "tls-client": (_environ(object(), _Answer(n)), _Upstream(upstream, n), n),
    }
    for name, (environ, response, length) in unusual.items():
        assert isinstance(bodies.download(environ, response, length, "/x"), Stream), name
    assert isinstance(Bodies(False, 65536).download(_environ(client, _Answer(n)), _Upstream(upstream, n), n, "/x"), Stream)


def test_a_gunicorn_upload_with_a_length_is_spliced_anything_else_copied(pairs):
    (client, _), _ = pairs
    unreader = SocketUnreader(client)
    n = 1 << 20
    bodies = Bodies(True, 65536)
    assert isinstance(bodies.upload(_environ(client, stream=Body(LengthReader(unreader, n))), n), Upload)
    assert not isinstance(bodies.upload(_environ(client, stream=Body(ChunkedReader({}, unreader))), None), Upload)
    assert not isinstance(bodies.upload(_environ(None, stream=Body(LengthReader(unreader, n))), n), Upload)
    assert not isinstance(Bodies(False, 65536).upload(_environ(client, stream=Body(LengthReader(unreader, n))), n), Upload)
    held = Body(LengthReader(unreader, n))
    held.buf.write(b"x")  # bytes read through the Body's own buffer: read as WSGI says
    assert not isinstance(bodies.upload(_environ(client, stream=held), n), Upload)


def test_an_upload_sends_what_gunicorn_holds_then_splices_the_rest_and_leaves_the_next_request(pairs):
    (client_peer, client), (upstream, mlflow) = pairs
    unreader = SocketUnreader(client)
    unreader.unread(DATA[:5000])  # read past the request head with it
    reader = LengthReader(unreader, len(DATA))
    counted = []
    upload = Bodies(True, 65536, lambda *args: counted.append(args)).upload(_environ(client, stream=Body(reader)), len(DATA))
    upload.bind_connection(type("Conn", (), {"sock": upstream})())
    _feed(client_peer, DATA[5000:] + b"GET /next", close=False)
    got = bytearray()
    drained = _drain(mlflow, got)
    for piece in upload:  # what urllib3 does with each piece
        upstream.sendall(piece)
    upstream.shutdown(socket.SHUT_WR)
    drained.join(10)
    assert bytes(got) == DATA
    assert reader.length == 0  # gunicorn knows the body is taken
    assert client.recv(100) == b"GET /next"
    assert counted == [("upload", "splice", len(DATA))]


def test_an_upload_over_a_connection_that_is_not_plain_tcp_is_copied(pairs):
    (client_peer, client), _ = pairs
    reader = LengthReader(SocketUnreader(client), 200_000)
    counted = []
    upload = Bodies(True, 65536, lambda *args: counted.append(args)).upload(_environ(client, stream=Body(reader)), 200_000)
    upload.bind_connection(type("Conn", (), {"sock": object()})())
    _feed(client_peer, DATA[:200_000], close=False)
    assert b"".join(upload) == DATA[:200_000]
    assert counted == [("upload", "copy", 200_000)]


def test_a_client_leaving_mid_upload_is_what_the_copy_loop_says(pairs):
    (client_peer, client), (upstream, mlflow) = pairs
    reader = LengthReader(SocketUnreader(client), len(DATA))
    upload = Bodies(True, 65536).upload(_environ(client, stream=Body(reader)), len(DATA))
    upload.bind_connection(type("Conn", (), {"sock": upstream})())
    _feed(client_peer, DATA[:70_000])
    _drain(mlflow, bytearray())
    with pytest.raises(ConnectionAbortedError, match="before sending its whole body"):
        list(upload)
    assert reader.length == len(DATA) - 70_000
