"""Zero-copy bodies: artifact bytes moved between the two sockets by the kernel (``os.splice``).

The copy loops in ``bodies.py`` pull every chunk of an artifact into Python and write it out
again: measured, that held 1 GiB downloads near 90 % of direct. Here the bytes go socket →
pipe → socket with ``os.splice`` (Linux), never entering the process, for the bodies where
that is safe: a plain-HTTP/1.1 body with a ``Content-Length`` larger than one chunk, between
gunicorn's client socket and MLflow's plain TCP socket. Everything else (chunked bodies, TLS on
either side, the werkzeug server, another platform, ``CHECKPOINT_ZERO_COPY=off``) goes through
the copy loops, chosen per call; :func:`decide` says once at start which path is in use and why.

What must stay exactly as the loops do it:

* **download**: gunicorn writes the answer's head (its keep-alive decision) and the first piece,
  which may already sit in http.client's buffer; only then is the rest spliced from the raw
  socket, and gunicorn's ``sent`` (the access log's bytes) is moved on by what was spliced.
  A complete answer closes http.client's response, which is how it marks a connection free for
  the next call; a broken one closes the connection, never handing it back half read.
* **upload**: urllib3 sends the request head, then iterates the body (:class:`Upload`): the
  bytes gunicorn already read past the request head go first, the rest is spliced from the
  client's socket, and gunicorn's length reader is told they were taken.
* failures raise what the loops raise at the same point: MLflow breaking off a download aborts
  the client's connection; a client leaving mid-upload is ``ConnectionAbortedError``; the
  sockets' own errors and timeouts (a socket with a timeout is non-blocking underneath, so
  waits are ``poll`` with that timeout) are the ones ``send``/``recv`` would raise.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from checkpoint.edge.bodies import Stream, read_chunks

log = logging.getLogger("checkpoint.proxy")  # the name operators filter the JSON logs on (the proxy's)

# Where serving.ProxyWorker leaves gunicorn's Response for the call (the WSGI start_response the
# proxy sees is wrapped, so it cannot reach it the way wire.one_write does).
RESPONSE_KEY = "checkpoint.gunicorn_response"
MODES = ("auto", "off")
# A pipe this large moves a MiB per pair of splices (the default 64 KiB pipe: 16 times as many).
PIPE_SIZE = 1024 * 1024
# The first read of a download's body takes all http.client buffered (its buffer is 8 KiB).
DRAIN = 256 * 1024
_MOVE = getattr(os, "SPLICE_F_MOVE", 0)
_MORE = getattr(os, "SPLICE_F_MORE", 0)
_SETPIPE = getattr(fcntl, "F_SETPIPE_SZ", None)

BodyCounter = Callable[[str, str, int], None]  # (direction, path, bytes) after each streamed body


def decide(mode: str, registry_url: str) -> tuple[bool, str]:
    """Whether this process splices bodies, and the reason to log."""
    if mode == "off":
        return False, "CHECKPOINT_ZERO_COPY=off: bodies are copied through Python"
    if not (sys.platform.startswith("linux") and hasattr(os, "splice")):
        return False, "os.splice is not available on this platform: bodies are copied through Python"
    if registry_url.startswith("https:"):
        return False, "the MLflow server is reached over TLS: bodies are copied through Python"
    return True, (
        "os.splice moves Content-Length bodies over one chunk between the sockets; "
        "chunked, TLS and non-gunicorn calls are copied through Python"
    )


class SideError(Exception):
    """One side of a splice failed; ``moved`` bytes reached the other side before it did."""

    def __init__(self, cause: BaseException | None, moved: int) -> None:
        super().__init__(str(cause) if cause else "connection closed early")
        self.cause = cause
        self.moved = moved


class SourceError(SideError):
    """Reading failed, timed out (``cause`` a TimeoutError) or met the end early (``cause`` None)."""


class SinkError(SideError):
    """Writing failed or timed out."""


def _wait(fd: int, event: int, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def _timeout(sock: socket.socket) -> float | None:
    return sock.gettimeout()


def pump(source: socket.socket, sink: socket.socket, count: int) -> int:
    """Move exactly ``count`` bytes from ``source`` to ``sink`` through a private pipe.

    Each socket's own timeout applies to each wait on it (as to its ``recv``/``send``).
    Raises :class:`SourceError` or :class:`SinkError` with what had been moved."""
    src, dst = source.fileno(), sink.fileno()
    src_timeout, dst_timeout = _timeout(source), _timeout(sink)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        size = 64 * 1024
        if _SETPIPE is not None:
            try:
                size = fcntl.fcntl(write_end, _SETPIPE, PIPE_SIZE)
            except OSError:  # pragma: no cover - a lowered fs.pipe-max-size: the default pipe
                pass
        moved = 0
        while moved < count:
            try:
                got = os.splice(src, write_end, min(size, count - moved), flags=_MOVE)
            except BlockingIOError:
                if not _wait(src, select.POLLIN, src_timeout):
                    raise SourceError(TimeoutError("timed out"), moved) from None
                continue
            except OSError as exc:
                raise SourceError(exc, moved) from exc
            if got == 0:
                raise SourceError(None, moved)
            more = _MORE if moved + got < count else 0
            while got:
                try:
                    put = os.splice(read_end, dst, got, flags=_MOVE | more)
                except BlockingIOError:
                    if not _wait(dst, select.POLLOUT, dst_timeout):
                        raise SinkError(TimeoutError("timed out"), moved) from None
                    continue
                except OSError as exc:
                    raise SinkError(exc, moved) from exc
                if put == 0:  # pragma: no cover - a socket takes at least one byte or fails
                    raise SinkError(None, moved)
                got -= put
                moved += put
        return moved
    finally:
        os.close(read_end)
        os.close(write_end)


def plain_socket(sock) -> socket.socket | None:
    """``sock`` if it is a plain TCP socket (not TLS, not a wrapper), else None."""
    return sock if type(sock) is socket.socket and sock.fileno() >= 0 else None


@dataclass
class Bodies:
    """Picks, per call, how a streamed body moves: spliced, or through the copy loops."""

    splice: bool
    chunk_size: int
    count: BodyCounter | None = None

    @classmethod
    def create(cls, mode: str, registry_url: str, chunk_size: int, count: BodyCounter | None = None) -> Bodies:
        enabled, why = decide(mode, registry_url)
        log.info("artifact bodies: %s path (%s)", "zero-copy" if enabled else "copy", why)
        return cls(enabled, chunk_size, count)

    def download(self, environ: dict, response, length: int | None, url: str) -> Iterable[bytes]:
        """The WSGI body of an answer larger than one chunk (its head already given to gunicorn)."""
        if self.splice and length is not None:
            client = plain_socket(environ.get("gunicorn.socket"))
            answer = environ.get(RESPONSE_KEY)
            http = getattr(response, "_fp", None)
            upstream = plain_socket(getattr(getattr(response, "_connection", None), "sock", None))
            if (
                client is not None
                and upstream is not None
                and answer is not None
                and not getattr(answer, "chunked", True)
                and getattr(answer, "response_length", None) == length
                and not getattr(answer, "_omits_body", True)
                and not getattr(http, "chunked", True)
                and getattr(http, "length", None) == length
                and hasattr(http, "read1")
            ):
                return Download(response, http, answer, client, upstream, length, url, self.count)
        return Stream(response, self.chunk_size, url, self.count)

    def upload(self, environ: dict, size: int | None) -> Iterable[bytes]:
        """The body urllib3 sends for an upload larger than one chunk (``size`` None: to the end)."""
        stream = environ["wsgi.input"]
        if self.splice and size is not None:
            client = plain_socket(environ.get("gunicorn.socket"))
            reader = getattr(stream, "reader", None)
            unreader = getattr(reader, "unreader", None)
            held = getattr(stream, "buf", None)
            if (
                client is not None
                and type(stream).__module__ == "gunicorn.http.body"
                and type(reader).__name__ == "LengthReader"
                and getattr(reader, "length", None) == size
                and getattr(unreader, "sock", None) is client
                and held is not None
                and held.tell() == 0
            ):
                return Upload(stream, reader, unreader, client, size, self.chunk_size, self.count)
        return copied(stream, self.chunk_size, size, self.count)


def copied(stream, chunk_size: int, size: int | None, count: BodyCounter | None) -> Iterator[bytes]:
    """The copy loop for an upload, counted."""
    sent = 0
    try:
        for data in read_chunks(stream, chunk_size, size):
            sent += len(data)
            yield data
    finally:
        if count is not None:
            count("upload", "copy", sent)


class Download:
    """A streamed answer's WSGI body: gunicorn sends the head and first piece, splice the rest."""

    def __init__(self, response, http, answer, client, upstream, length: int, url: str, count) -> None:
        self.response, self.http, self.answer = response, http, answer
        self.client, self.upstream = client, upstream
        self.length, self.url, self.count = length, url, count
        self.complete = False

    def _broke(self, exc: BaseException | None) -> ConnectionAbortedError:
        # Headers are already out: the only honest signal left is to abort the connection.
        log.error("upstream stream for %s broke off: %s", self.url, exc or "connection closed early")
        return ConnectionAbortedError(f"upstream answer for {self.url} broke off: {exc}")

    def __iter__(self) -> Iterator[bytes]:
        try:
            first = self.http.read1(min(self.length, DRAIN))
        except OSError as exc:
            raise self._broke(exc) from exc
        if not first:
            raise self._broke(None)
        yield first  # gunicorn writes the head, then this, and counts it
        moved = 0
        try:
            moved = pump(self.upstream, self.client, self.length - len(first))
        except SourceError as exc:
            moved = exc.moved
            raise self._broke(exc.cause) from exc.cause
        except SinkError as exc:
            moved = exc.moved
            raise (exc.cause or ConnectionAbortedError("client connection closed")) from None
        finally:
            self.answer.sent += moved
            if self.count is not None:
                self.count("download", "splice", len(first) + moved)
        self.complete = True

    def close(self) -> None:
        if self.complete:
            self.http.close()  # read to its end: http.client lets the connection carry the next call
        else:
            self.response.close()  # never hand a half-read connection back to the pool
        self.response.release_conn()


class Upload:
    """An upload's body for urllib3: bytes gunicorn holds, then the rest spliced to MLflow.

    urllib3 iterates it after sending the request head; the pool hands over the connection
    first (``bind_connection``, upstream.py). A connection that is not plain TCP gets the
    copy loop instead."""

    def __init__(self, stream, reader, unreader, client, size: int, chunk_size: int, count) -> None:
        self.stream, self.reader, self.unreader, self.client = stream, reader, unreader, client
        self.size, self.chunk_size, self.count = size, chunk_size, count
        self.connection = None

    def bind_connection(self, connection) -> None:
        self.connection = connection

    def __iter__(self) -> Iterator[bytes]:
        upstream = plain_socket(getattr(self.connection, "sock", None))
        if upstream is None:
            yield from copied(self.stream, self.chunk_size, self.size, self.count)
            return
        self.unreader.buf.seek(0, os.SEEK_END)
        held = min(self.unreader.buf.tell(), self.reader.length)
        first = self.reader.read(held) if held else b""  # from gunicorn's buffer: no socket read
        if first:
            yield first  # urllib3 sends it
        moved = 0
        try:
            moved = pump(self.client, upstream, self.reader.length)
        except SourceError as exc:
            moved = exc.moved
            if exc.cause is None:
                raise ConnectionAbortedError("client closed the connection before sending its whole body") from None
            raise exc.cause from None
        except SinkError as exc:
            moved = exc.moved
            raise (exc.cause or BrokenPipeError("upstream connection closed")) from None
        finally:
            self.reader.length -= moved  # gunicorn must not wait for bytes already taken
            if self.count is not None:
                self.count("upload", "splice", len(first) + moved)
