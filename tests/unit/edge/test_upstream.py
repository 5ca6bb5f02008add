"""The pool to MLflow, without MLflow: the request target sent as given, stale and suspect
connections never reused, and which calls may be tried again after which failure."""

from __future__ import annotations

import pytest
import urllib3
from urllib3.exceptions import LocationValueError, MaxRetryError, ReadTimeoutError
from urllib3.util.url import _encode_target

from checkpoint.edge import upstream


class Recorder:
    """The pool method the mix-in wraps: records the target it is finally given."""

    def _make_request(self, conn, method, url, *args, **kwargs):
        return url


class ExactPool(upstream._ExactTarget, Recorder):
    def urlopen(self, method, url, **kwargs):
        return self._make_request(None, method, _encode_target(url))  # what urllib3's urlopen does


@pytest.mark.parametrize("target", ["/a%2fb", "/x?q=%zz&q=1", "/sp ace", "/%"])
def test_the_target_goes_out_byte_for_byte(target):
    assert ExactPool().urlopen("GET", target) != target  # urllib3 alone would re-encode it
    assert upstream.send(ExactPool(), "GET", target) == target
    assert upstream._RAW_TARGET.get() is None  # and only for that one call


class Conn:
    is_connected = True  # urllib3 checks this before reusing a connection

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def pool():
    """A pool with one free slot taken, as after a call borrowed it (urllib3 fills the queue with
    ``None`` placeholders), so a connection handed back is kept."""
    made = upstream.make_pool("http", "127.0.0.1", 9, size=1, timeout=urllib3.Timeout(1.0))
    assert made.pool is not None and made.pool.get_nowait() is None
    yield made
    made.pool = None  # the fakes are not urllib3 connections: nothing to close


def test_a_connection_idle_too_long_is_closed_before_reuse(pool):
    conn = Conn()
    pool._put_conn(conn)
    assert pool._get_conn() is conn and conn.closed == 0  # fresh: reused as it is
    pool._put_conn(conn)
    conn._checkpoint_idle_since -= upstream._FreshConnections.IDLE_SECONDS + 0.1
    assert pool._get_conn() is conn and conn.closed == 1  # urllib3 reconnects it on the next call


def test_a_suspect_connection_is_closed_when_handed_back(pool):
    conn = Conn()

    class Response:
        connection = conn

    upstream.discard_when_released(Response())
    assert conn.closed == 0  # not yet: it may still carry the answer's body
    pool._put_conn(conn)
    assert conn.closed == 1 and conn._checkpoint_discard is False
    assert pool._get_conn() is conn and conn.closed == 1  # closed once: urllib3 reconnects it


@pytest.mark.parametrize(("scheme", "kind"), [("http", urllib3.HTTPConnectionPool), ("https", urllib3.HTTPSConnectionPool)])
def test_the_pool_matches_the_scheme_and_opens_nothing_yet(scheme, kind):
    made = upstream.make_pool(scheme, "127.0.0.1", 9, size=3, timeout=urllib3.Timeout(1.0))
    assert isinstance(made, kind) and made.num_connections == 0 and made.pool.maxsize == 3


def test_a_url_without_a_host_is_refused():
    with pytest.raises(LocationValueError):
        upstream.make_pool("http", None, None, size=1, timeout=urllib3.Timeout(1.0))


@pytest.mark.parametrize(
    ("method", "body", "reads"),
    [("GET", None, 1), ("HEAD", b"", 1), ("OPTIONS", None, 1), ("GET", b"x", 0), ("POST", None, 0), ("DELETE", None, 0)],
)
def test_only_a_bodiless_safe_call_is_re_sent_after_a_broken_read(method, body, reads):
    policy = upstream.retry_policy(method, body)
    assert policy.read == reads and policy.connect == 2 and policy.status == 0


def test_a_read_timeout_is_never_retried():
    with pytest.raises(MaxRetryError) as caught:
        upstream.retry_policy("GET", None).increment("GET", "/x", error=ReadTimeoutError(None, "/x", "slow"))
    assert isinstance(caught.value.reason, ReadTimeoutError)
