"""The proxy's side of the hop to MLflow: the connection pool, what may be re-sent, the socket.

urllib3's pool, bent in three places, each for an answer that would otherwise go wrong:

* the request target goes out byte for byte as the caller sent it (urllib3 would re-encode it,
  and MLflow would decode something else);
* a connection idle for a second, or one an error answer may have left half-closed, is not
  reused: a call sent on a connection MLflow is just closing is lost without an answer;
* only a call that cannot have reached MLflow, or an idempotent one without a body, is re-sent.

And after each answer's headers the socket is told to ACK at once (``TCP_QUICKACK``): stock
MLflow (multi-worker uvicorn) never sets ``TCP_NODELAY``, so without it a reused connection
waits ~40 ms for our delayed ACK before the body arrives.
"""

from __future__ import annotations

import contextvars
import socket
import time
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.exceptions import LocationValueError, MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

# urllib3 re-encodes a request target (``%2f`` → ``%2F``, a stray ``%`` → ``%25``...), which would
# change what MLflow decodes. The exact target rides along here and replaces urllib3's copy: set
# only around one ``urlopen`` (no redirects are followed, and a retry sends the same target), so
# every request urllib3 makes meanwhile is that one call. (Checking urllib3's copy against our
# own encoding of it cost a second ``_encode_target``, ~15 µs a call.)
_RAW_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar("raw_target", default=None)


if TYPE_CHECKING:  # the mix-ins below extend a pool class; say so to the type checker only
    _Pool = urllib3.HTTPConnectionPool
else:
    _Pool = object


class _ExactTarget(_Pool):
    """Pool mix-in: send the caller's request target byte for byte.

    A body that asks for it (``bind_connection``: a spliced upload, splice.py) is also told
    which connection it is about to be sent on."""

    def _make_request(self, conn, method, url, *args, **kwargs):
        raw = _RAW_TARGET.get()
        if raw is not None:
            url = raw
        bind = getattr(kwargs.get("body"), "bind_connection", None)
        if bind is not None:
            bind(conn)
        return super()._make_request(conn, method, url, *args, **kwargs)


class _FreshConnections(_Pool):
    """Pool mix-in: a connection idle longer than ``IDLE_SECONDS`` is closed, not reused.

    MLflow's servers close idle keep-alive connections (uvicorn after 5 s, gunicorn after 2 s).
    A call sent on one just as the server closes it is lost with no answer, and a call with a
    body cannot safely be sent twice: so such a connection is never picked. A loopback
    reconnect costs ~0.1 ms, far less than the answer it protects.
    """

    IDLE_SECONDS = 1.0

    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)
        idle_since = getattr(conn, "_checkpoint_idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since > self.IDLE_SECONDS:
            conn.close()  # urllib3 opens it again on the next request
        return conn

    def _put_conn(self, conn):
        if conn is not None:
            if getattr(conn, "_checkpoint_discard", False):
                conn._checkpoint_discard = False
                conn.close()  # see Proxy.forward: MLflow may have dropped it without a word
            conn._checkpoint_idle_since = time.monotonic()
        return super()._put_conn(conn)


class _HTTPPool(_FreshConnections, _ExactTarget, urllib3.HTTPConnectionPool):
    pass


class _HTTPSPool(_FreshConnections, _ExactTarget, urllib3.HTTPSConnectionPool):
    pass


def make_pool(
    scheme: str, host: str | None, port: int | None, *, size: int, timeout: urllib3.Timeout
) -> urllib3.HTTPConnectionPool:
    """A keep-alive pool to the MLflow server; it opens no connection until the first call."""
    if not host:
        raise LocationValueError("No host specified.")  # what urllib3's pool would say a line later
    pool_cls = _HTTPSPool if scheme == "https" else _HTTPPool
    options = [*urllib3.connection.HTTPConnection.default_socket_options]
    return pool_cls(host, port, maxsize=size, block=False, timeout=timeout, retries=False, socket_options=options)


def send(pool: urllib3.HTTPConnectionPool, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
    """``pool.urlopen`` with ``url`` sent exactly as given (see ``_ExactTarget``)."""
    token = _RAW_TARGET.set(url)
    try:
        return pool.urlopen(method, url, **kwargs)
    finally:
        _RAW_TARGET.reset(token)


def discard_when_released(response) -> None:
    """Close this answer's connection when it goes back to the pool (urllib3 hands it back by
    itself once the body is read, so closing it afterwards could close another call's)."""
    conn = getattr(response, "connection", None)
    if conn is not None:
        conn._checkpoint_discard = True


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def ack_now(response) -> None:
    """ACK the headers segment at once so an upstream without TCP_NODELAY sends the body."""
    if _QUICKACK is None:
        return
    conn = getattr(response, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:  # pragma: no cover - a closed socket needs no ACK
            pass


# -- what may be sent twice ---------------------------------------------------------------------


class _Retry(Retry):
    """Never re-send after a read timeout: the upstream got the call and is slow, not gone."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, ReadTimeoutError):
            raise MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


_BODYLESS_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _retry(read: int) -> Retry:
    return _Retry(
        total=2,
        connect=2,
        read=read,
        other=0,
        status=0,
        redirect=False,
        allowed_methods=_BODYLESS_SAFE,
        raise_on_redirect=False,
        raise_on_status=False,
    )


# Retry what cannot have reached MLflow (connection refused, reset before sending); re-send
# after a broken read only an idempotent call without a body.
_SAFE_RETRY = _retry(read=1)
_CONNECT_RETRY = _retry(read=0)


def retry_policy(method: str, body: object) -> Retry:
    """How often a call may be tried again, and after which failures."""
    return _SAFE_RETRY if method in _BODYLESS_SAFE and not body else _CONNECT_RETRY
