"""The streaming forwarder between Checkpoint's callers and the MLflow server.

A plain WSGI application with no knowledge of promotions, so it can be tested and
tuned alone. What it does beyond a naive proxy, and why:

* bodies stream both ways in fixed-size chunks (artifacts are gigabytes), including
  chunked uploads without ``Content-Length`` (the copy loops: ``bodies.py``), or are moved
  between the sockets by the kernel where that is safe (``splice.py``);
* upstream connections are pooled and kept alive, and after each answer's headers the
  socket is told to ACK at once (``TCP_QUICKACK``): stock MLflow (multi-worker uvicorn)
  never sets ``TCP_NODELAY``, so without that a reused connection waits ~40 ms for our
  delayed ACK before the body arrives (the pool and the retry policy: ``upstream.py``);
* a small call (a body of at most one chunk, or none) to a plain-HTTP MLflow skips urllib3:
  one ``sendall`` on a pooled socket, the answer parsed by ``httptools``, the same bytes, rules
  and errors (``lean.py``; a third less CPU per call); everything else goes through urllib3;
* hop-by-hop headers (and those named in ``Connection``) are dropped, ``X-Forwarded-*``
  added, ``Host`` left to the upstream's own address so MLflow's host check passes;
* MLflow's cross-origin write protection is taken over for Checkpoint's public address,
  and the browser's ``Origin`` is not forwarded (MLflow would refuse it);
* an unreachable upstream is a 502, a slow one a 504, in MLflow's JSON error shape;
  only calls that cannot have reached MLflow, or idempotent bodiless ones, are retried;
* a failure mid-stream aborts the client connection instead of truncating silently.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from checkpoint.edge import lean
from checkpoint.edge.bodies import discard_input, read_exact
from checkpoint.edge.splice import Bodies, BodyCounter
from checkpoint.edge.upstream import ack_now, discard_when_released, make_pool, retry_policy, send
from checkpoint.urls import public_base, public_origin

log = logging.getLogger("checkpoint.proxy")  # the name operators filter the JSON logs on

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers Checkpoint sets itself or must not pass on.
_REQUEST_DROP = HOP_BY_HOP | {"host", "expect", "origin", "content-length", "x-forwarded-proto", "x-forwarded-host"}
# Response headers the WSGI server writes itself.
_RESPONSE_DROP = HOP_BY_HOP | {"date", "server"}
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class UpstreamError:
    """Why a call could not be completed; rendered by the caller's choice of renderer."""

    status: int
    error_code: str
    message: str


ErrorRenderer = Callable[[dict, UpstreamError], tuple[str, bytes]]


def plain_error(environ: dict, error: UpstreamError) -> tuple[str, bytes]:
    """MLflow's JSON error shape; the default when no HTML renderer is wired in."""
    import json

    return "application/json", json.dumps({"error_code": error.error_code, "message": error.message}).encode()


def wants_html(environ: dict) -> bool:
    """A person's browser navigating, as opposed to an API client or the UI's fetches."""
    path = environ.get("PATH_INFO", "")
    if path.startswith(("/api/", "/ajax-api/", "/graphql")) or "/mlflow-artifacts/" in path:
        return False
    return "text/html" in environ.get("HTTP_ACCEPT", "")


def request_target(environ: dict) -> str:
    """The path and query exactly as the client sent them (byte-exact, repeated keys kept)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if raw.startswith(("http://", "https://")):  # absolute-form request-target
            parts = urlsplit(raw)
            raw = parts.path + (f"?{parts.query}" if parts.query else "")
        return raw if raw.startswith("/") else "/" + raw
    path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
    query = environ.get("QUERY_STRING", "")
    return path + (f"?{query}" if query else "")


def host_allowed(host_header: str, public_url: str | None, allowed: Iterable[str]) -> bool:
    """See :func:`_host_allowed`; the answer for the few Host values a deployment sees is kept."""
    if isinstance(allowed, tuple):
        return _host_allowed_cached(host_header, public_url, allowed)
    return _host_allowed(host_header, public_url, allowed)


def _host_allowed(host_header: str, public_url: str | None, allowed: Iterable[str]) -> bool:
    """MLflow's DNS-rebinding defence, taken over for Checkpoint's own address.

    Behind Checkpoint MLflow only ever sees its own address, so Checkpoint must refuse a
    ``Host`` no person would type: allowed are IP literals and ``localhost`` (a rebinding
    attack needs a domain name), the public URL's host, and ``CHECKPOINT_ALLOWED_HOSTS``.
    """
    host = urlsplit(f"//{host_header.strip().lower()}").hostname or ""
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if host == "localhost" or (public_url and host == (urlsplit(public_url).hostname or "").lower()):
        return True
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in allowed)


# Parsing the Host (urlsplit, ipaddress) is most of the check's cost and its answer depends only
# on these arguments; bounded, so a client cycling through Host values only evicts entries.
_host_allowed_cached = functools.lru_cache(maxsize=256)(_host_allowed)


def _normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, with default ports dropped."""
    parts = urlsplit(origin.strip().lower())
    netloc = parts.netloc
    if (parts.scheme, parts.port) in (("http", 80), ("https", 443)):
        netloc = parts.hostname or netloc
    return f"{parts.scheme}://{netloc}"


class Proxy:
    """Forward any WSGI call to the upstream MLflow server."""

    def __init__(
        self,
        registry_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        pool_size: int = 64,
        chunk_size: int = 64 * 1024,
        public_url: str | None = None,
        allowed_origins: Iterable[str] = (),
        render_error: ErrorRenderer = plain_error,
        on_upstream: Callable[[dict, float], None] | None = None,
        zero_copy: str = "auto",
        on_body: BodyCounter | None = None,
    ) -> None:
        parts = urlsplit(registry_url)
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path.rstrip("/")
        self.chunk_size = chunk_size
        self.public_url = public_url.rstrip("/") if public_url else None
        self.allowed_origins = frozenset(_normal_origin(o) for o in allowed_origins)
        self.render_error = render_error
        # Called with (environ, seconds until MLflow's answer headers) after each answered call.
        self.on_upstream = on_upstream
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.pool = make_pool(parts.scheme, parts.hostname, parts.port, size=pool_size, timeout=self.timeout)
        # How bodies over one chunk move (spliced or copied), told (direction, path, bytes) after each.
        self.bodies = Bodies.create(zero_copy, self.upstream, chunk_size, on_body)
        # Small calls to a plain-HTTP MLflow skip urllib3 (lean.py); None: everything goes through urllib3.
        self.lean = lean.LeanUpstream.for_upstream(
            parts.scheme,
            parts.hostname,
            parts.port,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            pool_size=pool_size,
            chunk_size=chunk_size,
        )

    # -- WSGI entry point -------------------------------------------------------------

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        origin = environ.get("HTTP_ORIGIN")
        if origin and method in STATE_CHANGING and not self.origin_allowed(environ, origin):
            body = b"Cross-origin request blocked"
            start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return self.forward(environ, start_response)

    def origin_allowed(self, environ: dict, origin: str) -> bool:
        """Same-origin writes and configured origins pass; everything else is refused as MLflow would."""
        normal = _normal_origin(origin)
        return normal == _normal_origin(public_origin(environ, self.public_url)) or normal in self.allowed_origins

    def forward(
        self,
        environ: dict,
        start_response,
        *,
        transform: Callable[[int, dict[str, str], bytes], tuple[dict[str, str], bytes]] | None = None,
    ) -> Iterable[bytes]:
        """Send the call upstream and stream the answer back.

        ``transform`` (used only for MLflow's index page) receives the whole, small,
        answer body and may rewrite it; every other answer streams untouched.
        """
        method = environ["REQUEST_METHOD"].upper()
        # A HEAD of a page this rewrites reports the rewritten length: asked upstream as a GET.
        head_only = method == "HEAD" and transform is not None
        if head_only:
            method = "GET"
        headers = self.request_headers(environ)
        body, chunked = self.request_body(environ, headers)
        url = self.base_path + request_target(environ)
        if self.lean is not None and transform is None and self.lean.takes(method, url, body, chunked):
            head = self.lean.head(method, url, headers, body)  # type: ignore[arg-type]
            if head is not None:
                return lean.forward(self, self.lean, environ, start_response, method, url, head, body)  # type: ignore[arg-type]
        started = time.perf_counter()
        try:
            response = send(
                self.pool,
                method,
                url,
                body=body,
                headers=headers,
                retries=retry_policy(method, body),
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                chunked=chunked,
                release_conn=False,
                timeout=self.timeout,
            )
        except (HTTPError, OSError) as exc:
            return self.fail(environ, start_response, self.describe(exc))
        if self.on_upstream is not None:
            self.on_upstream(environ, time.perf_counter() - started)
        ack_now(response)

        status = f"{response.status} {response.reason or ''}".rstrip()
        out_headers = self.response_headers(environ, response)
        # An error answer to a call with a body may come before MLflow read that body; uvicorn
        # (h11) then closes the connection without saying so, and the next call on it from the
        # pool would find it gone (a 502 for a call MLflow never saw). Such a connection is
        # closed instead of reused: errors are rare, a new connection costs ~0.1 ms on loopback.
        reusable = response.status < 400 or (body is None and not chunked)
        if not reusable:
            discard_when_released(response)
        if method == "HEAD" or response.status in (204, 304):
            response.release_conn()
            start_response(status, out_headers)
            return []
        length = response.headers.get("Content-Length")
        if transform is not None or (length is not None and length.isdigit() and int(length) <= self.chunk_size):
            try:
                data = response.read()
            except (HTTPError, OSError) as exc:
                response.close()
                response.release_conn()
                return self.fail(environ, start_response, self.describe(exc))
            response.release_conn()
            if transform is not None:
                header_map, data = transform(response.status, dict(out_headers), data)
                out_headers = [(k, v) for k, v in header_map.items() if k.lower() != "content-length"]
                out_headers.append(("Content-Length", str(len(data))))
            start_response(status, out_headers)
            return [] if head_only else [data]
        start_response(status, out_headers)
        return self.bodies.download(environ, response, int(length) if length is not None and length.isdigit() else None, url)

    # -- pieces -----------------------------------------------------------------------

    def request_headers(self, environ: dict) -> dict[str, str]:
        """The caller's end-to-end headers, plus X-Forwarded-*."""
        named = {h.strip().lower() for h in environ.get("HTTP_CONNECTION", "").split(",") if h.strip()}
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if not key.startswith("HTTP_"):
                continue
            name = key[5:].replace("_", "-").lower()
            if name in _REQUEST_DROP or name in named:
                continue
            headers[name.title()] = value
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        peer = environ.get("REMOTE_ADDR", "")
        prior = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        headers["X-Forwarded-Proto"] = environ.get("wsgi.url_scheme", "http")
        if environ.get("HTTP_HOST"):
            headers["X-Forwarded-Host"] = environ["HTTP_HOST"]
        return headers

    def request_body(self, environ: dict, headers: dict[str, str]) -> tuple[bytes | Iterable[bytes] | None, bool]:
        """A body to send upstream (bytes or a chunk iterator) and whether to chunk it."""
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH", "").strip()
        environ["checkpoint.body_read"] = True  # fail() must not wait for bytes already taken
        if length:
            size = int(length)
            headers["Content-Length"] = str(size)
            if size == 0:
                return b"", False
            if size <= self.chunk_size:
                return read_exact(stream, size), False
            return self.bodies.upload(environ, size), False
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() or (
            environ.get("wsgi.input_terminated") and environ["REQUEST_METHOD"].upper() in STATE_CHANGING
        ):
            return self.bodies.upload(environ, None), True
        return None, False

    def response_headers(self, environ: dict, response) -> list[tuple[str, str]]:
        """Upstream headers minus hop-by-hop ones, with redirects pointed back at Checkpoint."""
        return self.answer_headers(environ, response.headers.iteritems())

    def answer_headers(self, environ: dict, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """:meth:`response_headers` over (name, value) pairs in the order MLflow sent them."""
        pairs = list(pairs)
        connection = ",".join(v for n, v in pairs if n.lower() == "connection")
        named = {h.strip().lower() for h in connection.split(",") if h.strip()}
        out = []
        for name, value in pairs:
            lower = name.lower()
            if lower in _RESPONSE_DROP or lower in named:
                continue
            after = value[len(self.upstream) : len(self.upstream) + 1]
            if lower == "location" and value.startswith(self.upstream) and after in ("", "/", "?", "#"):
                rest = value[len(self.upstream) :]
                if self.base_path and rest.startswith(self.base_path):
                    rest = rest[len(self.base_path) :]
                value = public_base(environ, self.public_url) + rest
            out.append((name, value))
        return out

    def describe(self, exc: BaseException) -> UpstreamError:
        """Map a transport failure to the answer a caller should get."""
        reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
        if isinstance(reason, ReadTimeoutError):
            return UpstreamError(
                504,
                "DEADLINE_EXCEEDED",
                f"Checkpoint: the MLflow server at {self.upstream} did not answer within {self.timeout.read_timeout:g} s",
            )
        if isinstance(reason, NewConnectionError | ConnectTimeoutError | ConnectionRefusedError):
            # NewConnectionError subclasses ConnectTimeoutError, so test for it first.
            timed_out = isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError)
            what = "timed out connecting to" if timed_out else "could not reach"
            return UpstreamError(502, "TEMPORARILY_UNAVAILABLE", f"Checkpoint {what} the MLflow server at {self.upstream}")
        if isinstance(reason, ProtocolError | OSError | HTTPError):
            return UpstreamError(
                502,
                "TEMPORARILY_UNAVAILABLE",
                f"Checkpoint: the MLflow server at {self.upstream} closed the connection without a complete answer",
            )
        raise exc  # pragma: no cover - anything else is a bug, not an upstream failure

    def fail(self, environ: dict, start_response, error: UpstreamError) -> list[bytes]:
        """Answer with a JSON error for programs, a short page for people."""
        log.warning("upstream failure %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), error.message)
        if not environ.get("checkpoint.body_read"):
            discard_input(environ)
        content_type, body = self.render_error(environ, error)
        reason = {502: "Bad Gateway", 504: "Gateway Timeout"}.get(error.status, "Error")
        start_response(
            f"{error.status} {reason}",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
        )
        return [body]
