"""The lean upstream path: a small call to MLflow as one ``sendall`` and an ``httptools`` parse.

Profiled (benchmarks/README.md, issue #18 §2), urllib3 + ``http.client`` + ``email.parser`` took
57 % of the proxy's Python time on a small GET: a pool checkout with its ``Timeout`` clones, seven
validated ``putheader`` calls, a header parse through the e-mail package. For the calls most
traffic is made of (a request body of at most one chunk, already read, or none) this module does
the same exchange with less: the request head is built once as bytes and goes out with the body
in one ``sendall`` on a pooled keep-alive socket, and MLflow's answer is parsed by ``httptools``
(llhttp, C). An answer whose body fits in one chunk is read whole, so gunicorn sends its head and
body in one write (``wire.py``); a larger, chunked or close-delimited one streams.

The bytes MLflow receives are those urllib3 would send (same header order, the same
``Host``/``Accept-Encoding``/``User-Agent``/``Content-Length`` it adds: ``tests/unit/edge/test_lean.py``
compares them), with the same pool rules as ``upstream.py``: a connection idle longer than
``IDLE_SECONDS`` or found closed by MLflow is not reused, one an error answer may have left
half-closed is closed, and only a call that cannot have reached MLflow, or an idempotent one
without a body, is tried again. Failures are raised as the urllib3 exceptions ``Proxy.describe``
already maps to 502/504. Everything else (TLS upstream, streamed or chunked uploads, HEAD,
artifacts and the UI's static files, whose large bodies ``splice.py`` moves without copying, the
rewritten index page, a target or header ``http.client`` would refuse) takes urllib3 as before:
:meth:`LeanUpstream.takes` decides before anything is sent.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import time

import httptools
from urllib3.connection import _get_default_user_agent
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError, ReadTimeoutError

from checkpoint.edge.lean_bodies import AsResponse, LeanStream

log = logging.getLogger("checkpoint.proxy")  # the name operators filter the JSON logs on (the proxy's)

_LEAN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # HEAD and the rest: urllib3
_RETRY_READ = frozenset({"GET", "OPTIONS"})  # upstream._BODYLESS_SAFE, less HEAD (never lean)
_EXPECTS_BODY = frozenset({"PATCH", "POST", "PUT"})  # urllib3 sends "Content-Length: 0" for these
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
IDLE_SECONDS = 1.0  # as upstream._FreshConnections
_TRIES = 3  # urllib3's Retry(total=2): the first try and two more


class _Conn:
    """A pooled keep-alive socket, with a poller to see whether MLflow closed it meanwhile."""

    __slots__ = ("sock", "poll", "idle_since")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.poll = select.poll()
        self.poll.register(sock, select.POLLIN)
        self.idle_since = 0.0

    def dropped(self) -> bool:
        """Readable while idle: MLflow closed it (or said something unasked); never reuse it."""
        return bool(self.poll.poll(0))

    def close(self) -> None:
        self.sock.close()


class Answer:
    """MLflow's answer as ``httptools`` hands it over: status, reason, headers, body pieces."""

    __slots__ = (
        "conn",
        "parser",
        "reason",
        "headers",
        "pieces",
        "head_done",
        "complete",
        "messages",
        "to_eof",
        "acked",
        "keep_alive",
        "head_at",
    )

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.pieces: list[bytes] = []
        self.head_done = self.complete = self.to_eof = self.acked = self.keep_alive = False
        self.messages = 0
        self.head_at = 0.0  # perf_counter() when the head was in: the upstream-latency metric's end

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.messages += 1

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message ends

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    @property
    def status(self) -> int:
        return self.parser.get_status_code()

    def feed(self, data: bytes) -> None:
        """Parse the next bytes read; an interim (1xx) or second answer is not one this path takes."""
        self.parser.feed_data(data)
        if self.messages > 1 or (self.head_done and self.status < 200):
            raise httptools.HttpParserError("an interim or unasked answer")

    def length(self) -> int | None:
        for name, value in self.headers:
            if name.lower() == "content-length":
                return int(value) if value.isdigit() else None
        return None

    def framing(self) -> None:
        """After the head: note whether the body runs to the connection's end (no length, not chunked)."""
        if self.complete or self.length() is not None:
            return
        self.to_eof = not any(n.lower() == "transfer-encoding" for n, _ in self.headers)

    def recv(self, size: int) -> bytes:
        """The next bytes; the head's segment is ACKed first (see ``upstream.ack_now``)."""
        sock = self.conn.sock
        if self.head_done and not self.acked and _QUICKACK is not None:
            self.acked = True
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:  # pragma: no cover - a closed socket needs no ACK
                pass
        return sock.recv(size)

    def take(self) -> bytes:
        data = b"".join(self.pieces) if len(self.pieces) != 1 else self.pieces[0]
        self.pieces = []
        return data

    def reusable(self) -> bool:
        return self.complete and not self.to_eof and self.messages == 1 and self.keep_alive


class LeanUpstream:
    """Small calls to one plain-HTTP MLflow server: pooled sockets, one send, a C parser."""

    def __init__(
        self, host: str, port: int, *, connect_timeout: float, read_timeout: float, pool_size: int, chunk_size: int
    ) -> None:
        self.address = (host, port)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_size = pool_size
        self.chunk_size = chunk_size
        name = host.rstrip(".")  # as urllib3's HTTPConnection.host, then http.client's Host header
        name = f"[{name}]" if ":" in name else name
        self.host_header = name if port == 80 else f"{name}:{port}"
        self.user_agent = _get_default_user_agent()
        self._idle: list[_Conn] = []  # list.append/pop are atomic: the worker's threads share it

    @classmethod
    def for_upstream(cls, scheme: str, host: str | None, port: int | None, **options) -> LeanUpstream | None:
        """The lean path for this upstream, or None where only urllib3 goes (TLS, a non-ASCII host)."""
        if scheme != "http" or not host or not host.isascii():
            return None
        return cls(host, port or 80, **options)

    def takes(self, method: str, target: str, body: object, chunked: bool) -> bool:
        """Whether this call goes the lean way: a small whole body or none, a target http.client would send."""
        return (
            method in _LEAN_METHODS
            and not chunked
            and (body is None or type(body) is bytes)
            and "artifact" not in target  # artifacts and the UI's files may be large: splice.py moves those
            and "/static-files/" not in target
            and target.isascii()
            and target.isprintable()
            and " " not in target
        )

    # -- the request ---------------------------------------------------------------------

    def head(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> bytes | None:
        """The request head urllib3 would write (its order, its added headers); None if it would refuse one."""
        keys = {k.lower() for k in headers}
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        if "accept-encoding" not in keys:
            lines.append("Accept-Encoding: identity")
        if "content-length" not in keys and "transfer-encoding" not in keys:
            if body is not None:
                lines.append(f"Content-Length: {len(body)}")
            elif method in _EXPECTS_BODY:
                lines.append("Content-Length: 0")
        if "user-agent" not in keys:
            lines.append(f"User-Agent: {self.user_agent}")
        lines.extend([f"{k}: {v}" for k, v in headers.items()])
        text = "\r\n".join(lines)
        if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
            return None  # a line break inside a value: http.client refuses it, let it say so
        try:
            return text.encode("latin-1") + b"\r\n\r\n"
        except UnicodeEncodeError:
            return None

    # -- the pool ------------------------------------------------------------------------

    def _checkout(self) -> tuple[_Conn, bool]:
        """A kept-alive connection still good to use, else a new one; and whether it is new."""
        now = time.monotonic()
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                break
            if now - conn.idle_since > IDLE_SECONDS or conn.dropped():
                conn.close()
                continue
            return conn, False
        try:
            sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(f"Connection to {self.address[0]} timed out. ({exc})") from exc
        except OSError as exc:
            raise NewConnectionError(None, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # urllib3's default socket option
        # The read timeout is the kernel's (SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket), not
        # Python's: with a Python timeout every recv and send is a poll() and then the call, two
        # system calls and two GIL hand-overs. A kernel timeout surfaces as EAGAIN (BlockingIOError).
        sock.settimeout(None)
        if self.read_timeout:
            seconds = int(self.read_timeout)
            timeval = struct.pack("ll", seconds, int((self.read_timeout - seconds) * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return _Conn(sock), True

    def release(self, answer: Answer, keep: bool) -> None:
        """Hand a fully read answer's connection back, or close it."""
        conn = answer.conn
        if keep and answer.reusable() and len(self._idle) < self.pool_size:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    # -- the exchange --------------------------------------------------------------------

    def exchange(self, method: str, target: str, head: bytes, body: bytes | None) -> Answer:
        """Send the call, read the answer's head (and its body if it fits in one chunk).

        Raises urllib3's exceptions, tried again as urllib3's ``upstream.retry_policy`` says."""
        payload = head + body if body else head
        reads_left = 1 if method in _RETRY_READ and not body else 0
        for tries_left in range(_TRIES - 1, -1, -1):
            try:
                conn, _new = self._checkout()
            except (ConnectTimeoutError, NewConnectionError):
                if tries_left:
                    continue
                raise
            answer = Answer(conn)
            try:
                try:
                    conn.sock.sendall(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # as urllib3: MLflow may have answered (and closed) before reading it all
                self._read(answer)
                return answer
            except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: the kernel's timeout
                conn.close()
                raise ReadTimeoutError(None, target, f"Read timed out. (read timeout={self.read_timeout})") from exc  # type: ignore[arg-type]
            except (OSError, httptools.HttpParserError, ValueError) as exc:
                conn.close()
                if answer.head_done or not reads_left or not tries_left:
                    raise ProtocolError("Connection aborted.", exc) from exc
                reads_left -= 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, answer: Answer) -> None:
        """Read until the head is in, then the whole body if its length is at most one chunk."""
        while not answer.head_done:
            data = answer.recv(self.chunk_size)
            if not data:
                raise ConnectionResetError("the upstream closed the connection before answering")
            answer.feed(data)
        answer.head_at = time.perf_counter()
        answer.framing()
        length = answer.length()
        if answer.complete or length is None or length > self.chunk_size:
            return
        while not answer.complete:
            data = answer.recv(self.chunk_size)
            if not data:
                raise ConnectionResetError("the upstream closed the connection before the end of its answer")
            answer.feed(data)


def forward(proxy, upstream: LeanUpstream, environ: dict, start_response, method: str, url: str, head: bytes, body: bytes | None):
    """``Proxy.forward`` for a call :meth:`LeanUpstream.takes`: the same answers, errors and hooks."""
    started = time.perf_counter()
    try:
        answer = upstream.exchange(method, url, head, body)
    except (HTTPError, OSError) as exc:
        return proxy.fail(environ, start_response, proxy.describe(exc))
    if proxy.on_upstream is not None:
        proxy.on_upstream(environ, answer.head_at - started)
    code = answer.status
    reason = answer.reason.decode("latin-1")
    status = f"{code} {reason}".rstrip()
    out_headers = proxy.answer_headers(environ, answer.headers)
    # As Proxy.forward: an error answer to a call with a body may leave the connection half-closed.
    keep = code < 400 or body is None
    if answer.complete:
        data = answer.take()
        upstream.release(answer, keep)
        start_response(status, out_headers)
        return [data] if data else []
    start_response(status, out_headers)
    length = answer.length()
    bodies = getattr(proxy, "bodies", None)
    if length is not None and bodies is not None:  # spliced where splice.py can, else its copy loop
        return bodies.download(environ, AsResponse(upstream, answer, keep, length), length, url)
    return LeanStream(upstream, answer, keep, url, getattr(bodies, "count", None))
