"""The body path, without an upstream: request bodies read whole or in chunks (through gunicorn's
fast reader when that is safe), a client that leaves early, the streamed answer's end, and the
drain that keeps a refused client's connection usable."""

from __future__ import annotations

import io
import socket

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader
from urllib3.exceptions import ProtocolError

from checkpoint.edge.bodies import Stream, body_reader, discard_input, read_chunks, read_exact

DATA = bytes(range(256)) * 10  # 2560 bytes


# -- request bodies ----------------------------------------------------------------------------


def test_a_small_body_is_read_exactly_and_the_rest_left():
    stream = io.BytesIO(DATA)
    assert read_exact(stream, 100) == DATA[:100]
    assert stream.read() == DATA[100:]


@pytest.mark.parametrize(
    ("size", "pieces"),
    [(2560, [1024, 1024, 512]), (1024, [1024]), (None, [1024, 1024, 512]), (100, [100])],
    ids=["length", "one-chunk", "to-the-end", "shorter-than-the-stream"],
)
def test_a_large_body_comes_in_chunks_never_past_its_length(size, pieces):
    chunks = list(read_chunks(io.BytesIO(DATA), 1024, size))
    assert [len(c) for c in chunks] == pieces
    assert b"".join(chunks) == DATA[: sum(pieces)]


@pytest.mark.parametrize(
    "read", [lambda s: read_exact(s, 10), lambda s: b"".join(read_chunks(s, 4, 10))], ids=["whole", "chunks"]
)
def test_a_client_that_leaves_early_aborts_the_call(read):
    with pytest.raises(ConnectionAbortedError, match="before sending its whole body"):
        read(io.BytesIO(b"short"))


@pytest.fixture
def gunicorn_body():
    """A gunicorn request body over a real (loopback) socket pair, as a worker hands it over."""
    ours, theirs = socket.socketpair()
    theirs.sendall(b"hello\nworld")
    unreader = SocketUnreader(ours)
    yield Body(LengthReader(unreader, 11)), unreader
    ours.close()
    theirs.close()


def test_gunicorns_body_is_read_through_its_reader_with_larger_socket_reads(gunicorn_body):
    body, unreader = gunicorn_body
    read = body_reader(body, 65536)
    assert read == body.reader.read and unreader.mxchunk == 65536
    assert read(11) == b"hello\nworld"


def test_a_body_that_holds_bytes_of_its_own_is_read_as_wsgi_says(gunicorn_body):
    body, unreader = gunicorn_body
    assert body.readline() == b"hello\n"  # reads ahead: "world" now sits in the Body's own buffer
    read = body_reader(body, 65536)
    assert read == body.read and unreader.mxchunk == 8192
    assert read(5) == b"world"


def test_any_other_stream_is_read_as_it_is():
    stream = io.BytesIO(DATA)
    assert body_reader(stream, 65536) == stream.read


# -- the streamed answer -----------------------------------------------------------------------


class Answer:
    """Enough of urllib3's response for a Stream: chunks (or a break), close, release."""

    def __init__(self, chunks, fail: Exception | None = None) -> None:
        self.chunks, self.fail = chunks, fail
        self.calls: list[str] = []

    def stream(self, amount, decode_content):
        assert decode_content is False  # bytes go out as MLflow encoded them
        yield from self.chunks
        if self.fail is not None:
            raise self.fail

    def close(self):
        self.calls.append("close")

    def release_conn(self):
        self.calls.append("release")


def test_a_whole_answer_streams_and_its_connection_goes_back_to_the_pool():
    answer = Answer([b"ab", b"", b"cd"])
    stream = Stream(answer, 2, "/x")
    assert list(stream) == [b"ab", b"cd"]
    stream.close()
    assert answer.calls == ["release"]


def test_a_half_read_answer_closes_its_connection():
    answer = Answer([b"ab", b"cd"])
    stream = Stream(answer, 2, "/x")
    assert next(iter(stream)) == b"ab"
    stream.close()  # the client went away
    assert answer.calls == ["close", "release"]


def test_a_break_mid_stream_aborts_the_client_connection(caplog):
    answer = Answer([b"ab"], fail=ProtocolError("Connection broken"))
    stream = Stream(answer, 2, "/big")
    chunks = iter(stream)
    assert next(chunks) == b"ab"
    with pytest.raises(ConnectionAbortedError, match="upstream answer for /big broke off"):
        next(chunks)
    stream.close()
    assert answer.calls == ["close", "release"]
    assert [(r.name, r.levelname) for r in caplog.records] == [("checkpoint.proxy", "ERROR")]


# -- draining ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "left"),
    [("5", b"-rest"), ("", b"hello-rest"), ("0", b"hello-rest"), (str(2 * 1024 * 1024), b"hello-rest")],
    ids=["small", "no-length", "empty", "too-large-to-wait-for"],
)
def test_a_small_unread_body_is_drained(length, left):
    stream = io.BytesIO(b"hello-rest")
    discard_input({"wsgi.input": stream, "CONTENT_LENGTH": length})
    assert stream.read() == left
