"""A loopback relay in front of the real MLflow that can hold one call, to crash Checkpoint mid-apply.

Checkpoint's ``CHECKPOINT_REGISTRY_URL`` points at the relay; every call is forwarded to MLflow
and answered as MLflow answered, except the one :meth:`Relay.hold` arms it for (say, the
``transition-stage`` POST of an apply), which is held until the relay stops:

* ``forward=False``: the call never reaches MLflow (Checkpoint dies before it was sent on);
* ``forward=True``: MLflow receives and performs it, but its answer is never passed back
  (Checkpoint dies after the write, before it learns the outcome).

The relay counts every call it forwarded, so a test can say how many writes reached MLflow.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

import urllib3
from werkzeug.http import is_hop_by_hop_header
from werkzeug.wrappers import Request, Response

from tests.support.serving import serve_in_thread


@dataclass
class _Hold:
    method: str
    path_end: str
    forward: bool
    arrived: threading.Event
    answered: threading.Event


class Relay:
    """An HTTP relay on 127.0.0.1 (a threaded werkzeug server); stop it with :meth:`stop`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.http = urllib3.PoolManager(maxsize=32, retries=False, timeout=urllib3.Timeout(connect=5, read=60))
        self.forwarded: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._hold: _Hold | None = None
        self._released = threading.Event()
        self._server, self._thread = serve_in_thread(self._app)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    # -- the test's controls --

    def hold(self, method: str, path_end: str, *, forward: bool) -> _Hold:
        """Hold the next ``method`` call whose path ends with ``path_end`` (once)."""
        hold = _Hold(method, path_end, forward, threading.Event(), threading.Event())
        with self._lock:
            self._hold = hold
        return hold

    def wait_held(self, hold: _Hold, timeout: float = 60.0) -> None:
        """Until the held call arrived (and, with ``forward``, MLflow answered it)."""
        done = hold.answered if hold.forward else hold.arrived
        assert done.wait(timeout), f"no {hold.method} …{hold.path_end} reached the relay within {timeout} s"

    def count(self, method: str, path_end: str) -> int:
        """How many ``method`` calls ending with ``path_end`` were forwarded to MLflow."""
        with self._lock:
            return sum(n for (m, p), n in self.forwarded.items() if m == method and p.endswith(path_end))

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._thread.join(timeout=10)
        self.http.clear()

    # -- relaying --

    def _take_hold(self, method: str, path: str) -> _Hold | None:
        with self._lock:
            hold = self._hold
            if hold is not None and hold.method == method and path.endswith(hold.path_end):
                self._hold = None
                return hold
        return None

    def _forward(self, request: Request) -> urllib3.BaseHTTPResponse:
        # The path as the client sent it (still percent-encoded), with its query.
        url = self.upstream + (request.environ.get("RAW_URI") or request.full_path.rstrip("?"))
        headers = {k: v for k, v in request.headers.items() if not is_hop_by_hop_header(k) and k.lower() != "host"}
        answer = self.http.request(
            request.method, url, body=request.get_data(), headers=headers, decode_content=False, redirect=False
        )
        with self._lock:
            self.forwarded[(request.method, request.path)] += 1
        return answer

    def _app(self, environ, start_response):
        request = Request(environ)
        hold = self._take_hold(request.method, request.path)
        if hold is not None:
            request.get_data()
            hold.arrived.set()
            if hold.forward:
                self._forward(request)
                hold.answered.set()
            # Never answered while the test runs: the caller is killed waiting. Bounded, so a
            # test that forgets to stop the relay does not leave a thread behind for long.
            self._released.wait(120)
            return Response("relay stopped", status=503)(environ, start_response)
        answer = self._forward(request)
        headers = [(k, v) for k, v in answer.headers.items() if not is_hop_by_hop_header(k)]
        return Response(answer.data, status=answer.status, headers=headers)(environ, start_response)
