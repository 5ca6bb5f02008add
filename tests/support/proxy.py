"""Helpers for the proxy's tests: a raw-socket fake upstream and ways to serve Checkpoint.

The fake upstream is a tiny HTTP/1.1 server on 127.0.0.1 that records every request
exactly as it arrived (request line, headers in order, body after de-chunking) and
answers according to the first segment of the path, so one instance can play a well
behaved server, a slow one, or one that breaks off mid-answer:

    /echo/...                 200 JSON describing the request (the default for any other path)
    /redirect/...?status=&to= a redirect; ``UPSTREAM`` in ``to`` becomes the upstream's own URL
    /html/...                 a fixed HTML page that mentions the upstream's absolute URL
    /hop/...                  an answer carrying hop-by-hop headers and two Set-Cookie
    /status/<code>/...        that status with a small body (none for HEAD, 204, 304)
    /download/...?n=&chunked= n deterministic bytes, with Content-Length or chunked
    /slow/...                 reads the request and never answers (until the upstream stops)
    /truncate/...?n=          Content-Length n, half the body, then closes
    /truncate-chunked/...     three chunks of a chunked body, then closes
    /drop/...                 reads the whole request, then closes without answering
    /abort-upload/...         reads 256 KiB of the body, then resets the connection
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from checkpoint import create_app
from checkpoint.demo.mlflow_server import free_port, wait_http
from tests.support.databases import migrated_sqlite
from tests.support.serving import served
from tests.support.waiting import poll

SERVER_HEADER = "fake-upstream/1.0"
HTML_PAGE = (
    '<!doctype html><html><head><title>Report</title><script src="UPSTREAM/static/x.js"></script>'
    '</head><body><a href="UPSTREAM/api/2.0/mlflow/experiments/search">abs</a>'
    '<a href="/relative">rel</a></body></html>'
)


def pattern(n: int, seed: int = 7) -> bytes:
    """``n`` deterministic pseudo-random bytes (each call with the same arguments agrees)."""
    return random.Random(seed).randbytes(n)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the fake upstream ------------------------------------------------------------------


@dataclass
class Received:
    """One request as the fake upstream saw it."""

    request_line: str
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)
    body_complete: bool = False

    @property
    def method(self) -> str:
        return self.request_line.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        found = self.values(name)
        assert len(found) <= 1, f"{name} sent {len(found)} times: {found}"
        return found[0] if found else None

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.header("Transfer-Encoding") or "").lower()


class _Conn:
    """One accepted connection: a buffered reader plus the raw socket for writing."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class FakeUpstream:
    """A raw HTTP/1.1 server on loopback; see the module docstring for its paths."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self.connections = 0
        self.stopping = threading.Event()
        self._cond = threading.Condition()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="fake-upstream", daemon=True)
        self._acceptor.start()

    # -- looking at what arrived --

    def requests_to(self, marker: str) -> list[Received]:
        """Every request whose path contains ``marker`` (tests use a fresh uuid each)."""
        with self._cond:
            return [r for r in self.received if marker in r.path]

    def wait_for(self, marker: str, *, count: int = 1, complete: bool = True, timeout: float = 15.0) -> list[Received]:
        """Block until ``count`` requests for ``marker`` arrived (with their whole body)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.received if marker in r.path]
                if len(found) >= count and (not complete or all(r.body_complete for r in found)):
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"upstream saw {len(found)} request(s) for {marker} within {timeout} s"
                self._cond.wait(left)

    # -- serving --

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(30)
            with self._cond:
                self.connections += 1
                self._socks.add(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        try:
            for _ in range(10_000):
                request = self._read_head(conn)
                if request is None:
                    return
                if not self._dispatch(request, conn):
                    return
        except (OSError, ValueError):
            return
        finally:
            with self._cond:
                self._socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _read_head(self, conn: _Conn) -> Received | None:
        line = conn.reader.readline(65536)
        if not line:
            return None
        headers = []
        for _ in range(500):
            raw = conn.reader.readline(65536)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        request = Received(line.decode("latin-1").rstrip("\r\n"), headers)
        with self._cond:
            self.received.append(request)
            self._cond.notify_all()
        return request

    def read_body(self, request: Received, conn: _Conn, limit: int | None = None) -> bytes:
        """Read (up to ``limit`` bytes of) the request body, recording it as it comes."""

        def take(data: bytes) -> None:
            with self._cond:
                request.body += data
                self._cond.notify_all()

        if request.chunked:
            for _ in range(10_000_000):
                size_line = conn.reader.readline(1024)
                if not size_line:
                    raise ConnectionError("chunked body cut off")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while conn.reader.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                take(conn.reader.read(size))
                conn.reader.readline(8)
                if limit is not None and len(request.body) >= limit:
                    return bytes(request.body)
        else:
            remaining = int(request.header("Content-Length") or 0)
            while remaining > 0:
                data = conn.reader.read1(min(remaining, 1 << 20, limit - len(request.body) if limit else 1 << 20))
                if not data:
                    raise ConnectionError("body cut off")
                take(data)
                remaining -= len(data)
                if limit is not None and len(request.body) >= limit:
                    return bytes(request.body)
        with self._cond:
            request.body_complete = True
            self._cond.notify_all()
        return bytes(request.body)

    def _dispatch(self, request: Received, conn: _Conn) -> bool:
        segment = request.path.lstrip("/").split("/", 1)[0]
        handler = getattr(self, "do_" + segment.replace("-", "_"), None) or self.do_echo
        return handler(request, conn)

    # -- answers --

    def answer(
        self,
        conn: _Conn,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        head: bool = False,
        length: bool = True,
    ) -> None:
        reason = http.client.responses.get(status, "Whatever")
        lines = [f"HTTP/1.1 {status} {reason}"]
        given = {k.lower() for k, _ in headers or []}
        if "date" not in given:
            lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if "server" not in given:
            lines.append(f"Server: {SERVER_HEADER}")
        lines += [f"{k}: {v}" for k, v in headers or []]
        if length and "content-length" not in given and status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}")
        conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body))

    def do_echo(self, request: Received, conn: _Conn) -> bool:
        body = self.read_body(request, conn)
        report = {
            "request_line": request.request_line,
            "headers": request.headers,
            "body_length": len(body),
            "body_sha256": sha256(body),
        }
        self.answer(conn, 200, [("Content-Type", "application/json")], json.dumps(report).encode())
        return True

    def do_redirect(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        query = request.query
        location = query["to"][0].replace("UPSTREAM", self.url)
        self.answer(conn, int(query.get("status", ["302"])[0]), [("Location", location)], b"moved")
        return True

    def do_html(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        page = HTML_PAGE.replace("UPSTREAM", self.url).encode()
        self.answer(conn, 200, [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"page-1"')], page)
        return True

    def do_hop(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        headers = [
            ("Connection", "keep-alive, X-Resp-Named"),
            ("Keep-Alive", "timeout=30, max=100"),
            ("X-Resp-Named", "must-not-pass"),
            ("Proxy-Authenticate", 'Basic realm="upstream"'),
            ("Proxy-Connection", "keep-alive"),
            ("Trailer", "X-Checksum"),
            ("X-End-To-End", "kept"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Path=/"),
            ("Content-Type", "text/plain"),
        ]
        self.answer(conn, 200, headers, b"hop")
        return True

    def do_status(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        status = int(request.path.split("/")[2])
        head = request.method == "HEAD"
        body = b"" if status in (204, 304) else f"status {status} body".encode()
        self.answer(conn, status, [("Content-Type", "text/plain"), ("X-Status", str(status))], body, head=head)
        return True

    def do_download(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        n = int(request.query["n"][0])
        data = pattern(n)
        if request.query.get("chunked") == ["1"]:
            self.answer(conn, 200, [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")], length=False)
            step = 100_003  # odd-sized chunks, so no boundary lines up with the proxy's
            for start in range(0, n, step):
                piece = data[start : start + step]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            self.answer(conn, 200, [("Content-Type", "application/octet-stream")], data)
        return True

    def do_slow(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        self.stopping.wait(60)
        return False

    def do_truncate(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        n = int(request.query["n"][0])
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
        conn.send(head.encode() + pattern(n)[: n // 2])
        conn.sock.shutdown(socket.SHUT_RDWR)
        return False

    def do_truncate_chunked(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            piece = pattern(100_000)
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.sock.shutdown(socket.SHUT_RDWR)
        return False

    def do_drop(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn)
        conn.sock.shutdown(socket.SHUT_RDWR)
        return False

    def do_abort_upload(self, request: Received, conn: _Conn) -> bool:
        self.read_body(request, conn, limit=256 * 1024)
        # SO_LINGER 0: close with a reset, as a crashing server would.
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    # -- stopping --

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self._acceptor.join(timeout=5)
        with self._cond:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)


# -- raw HTTP from the client side ------------------------------------------------------


@dataclass
class RawAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def raw_request(
    base_url: str,
    method: str,
    target: str,
    headers: list[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    timeout: float = 30,
) -> RawAnswer:
    """Send exactly this request line and these headers (nothing added but Host unless given)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        skip_host = any(k.lower() == "host" for k, _ in headers)
        conn.putrequest(method, target, skip_host=skip_host, skip_accept_encoding=True)
        for key, value in headers:
            conn.putheader(key, value)
        if body is not None and not any(k.lower() == "content-length" for k, _ in headers):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return RawAnswer(response.status, list(response.getheaders()), data)
    finally:
        conn.close()


# -- serving Checkpoint ------------------------------------------------------------------


@contextmanager
def checkpoint_in_thread(registry_url: str, data_dir: Path, **config) -> Iterator[str]:
    """``create_app`` served by werkzeug in a thread on a free port; yields its URL."""
    database_url = config.pop("database_url", None) or migrated_sqlite(data_dir)
    application = create_app({"registry_url": registry_url, "database_url": database_url, "data_dir": data_dir, **config})
    with served(application) as url:
        yield url


@dataclass
class CheckpointProcess:
    """`checkpoint serve` (gunicorn) as a subprocess."""

    url: str
    process: subprocess.Popen
    data_dir: Path
    log_path: Path
    access_log: Path

    def access_lines(self, needle: str, *, timeout: float = 15.0) -> list[str]:
        """Access-log lines containing ``needle``; waits for the first one to be written."""

        def lines() -> list[str]:
            text = self.access_log.read_text() if self.access_log.exists() else ""
            return [line for line in text.splitlines() if needle in line]

        return poll(lines, timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def checkpoint_process(registry_url: str, data_dir: Path, **env: str) -> Iterator[CheckpointProcess]:
    """Run `checkpoint serve` exactly as production does, in front of ``registry_url``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / "checkpoint.log"
    access_log = data_dir / "access.log"
    full_env = {
        **os.environ,
        "CHECKPOINT_REGISTRY_URL": registry_url,
        "CHECKPOINT_DATA_DIR": str(data_dir),
        "CHECKPOINT_WORKERS": "2",
        "CHECKPOINT_ACCESS_LOG": str(access_log),
        **env,
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "checkpoint.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/checkpoint/healthz", timeout=60, process=process, log=log_path)
        yield CheckpointProcess(url, process, data_dir, log_path, access_log)
    finally:
        # SIGINT is gunicorn's quick shutdown: the tests are over, nothing is in flight, and
        # SIGTERM makes a gthread worker that ever kept a connection alive sit out the whole
        # graceful_timeout (60 s) before it exits.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# -- which body path a call took -------------------------------------------------------------

# The servers the proxy's body tests run under: werkzeug (copy loops only), gunicorn with
# zero-copy bodies (CHECKPOINT_ZERO_COPY=auto) and gunicorn with the copy loops (=off).
SERVERS = ["werkzeug", "gunicorn", "gunicorn-copy"]


def server_env(kind: str) -> dict[str, str]:
    """The extra environment of `checkpoint serve` for one of :data:`SERVERS`."""
    return {"CHECKPOINT_ZERO_COPY": "off"} if kind == "gunicorn-copy" else {}


def body_bytes(url: str) -> dict[tuple[str, str], float]:
    """``checkpoint_proxy_body_bytes_total`` by (direction, path), read from Checkpoint's metrics."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    answer = requests.get(f"{url}/checkpoint/metrics", timeout=10)
    answer.raise_for_status()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            if s.name == "checkpoint_proxy_body_bytes_total":
                found[(s.labels["direction"], s.labels["path"])] = s.value
    return found


def body_bytes_grew(before: dict, after: dict) -> dict[tuple[str, str], float]:
    """What each (direction, path) counted between two :func:`body_bytes` reads."""
    return {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}
